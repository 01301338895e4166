"""The base of the likelihood parts ``p(x|z)`` of a VAE, their registry
:data:`LIKELIHOODS`, and the dequantization they share.

A likelihood declares what it needs as class data, which the VAE, ``SequentialVAE`` and the
CLI read instead of its name:

* ``discrete``: ``log_prob`` is a probability mass of 8-bit images (``True``) or a density of
  dequantized pixels (``False``, bits/dim add ``D log 256``);
* ``needs_context``: its constructor takes ``context_features``, the latent's size, and ``z``
  conditions its own network (VAPNEV's flow);
* ``dequantizes``: it takes ``dequantization="uniform" | "variational"``;
* ``flow_options``: the :class:`~flowvae.transforms.ConditionalRealNVP` arguments it passes on
  to its flow (the CLI's ``--flow-channels`` and friends apply to it);
* ``takes_data_levels``: its constructor takes ``data_levels``, the number of grey levels of
  the ``uint8`` images it is given (a dataset's ``levels``: 256 for 8-bit, 2 for binary), which
  the CLI and the examples set from the dataset; it never guesses from a batch's values;
* ``out_channels`` (set by the constructor): channels of the decoder output it reads.
"""

from __future__ import annotations

from typing import Sequence, Tuple

import pyro
import pyro.distributions as dist
import torch
from torch import Tensor, nn

from flowvae.data.pixels import dequantize
from flowvae.parts.registry import Registry

__all__ = ["DEQUANTIZATION", "DEQUANTIZATIONS", "LIKELIHOODS", "DensityLikelihood", "Likelihood",
           "VariationalDequantizer"]

#: likelihoods by name: ``VAE(likelihood="bernoulli")``; every module of
#: :mod:`flowvae.parts.likelihoods` adds its own
LIKELIHOODS = Registry("likelihood")


class Likelihood(nn.Module):
    """The base of a VAE's likelihood part ``p(x|z)`` (``forward(decoder_output, z)`` returns
    the distribution): how raw ``uint8`` images become the observation, the encoder's input
    and a picture, and the Pyro sample sites the likelihood adds to the model and the guide
    besides ``x`` (none here; variational dequantization adds one)."""

    #: whether log_prob is a probability mass (True) or a density on [0, 1]^D (False)
    discrete = True
    #: whether the constructor takes ``context_features`` (z conditions the likelihood's net)
    needs_context = False
    #: whether the constructor takes ``dequantization``
    dequantizes = False
    #: ConditionalRealNVP arguments the constructor passes on to a flow
    flow_options: Tuple[str, ...] = ()
    #: whether the constructor takes ``data_levels`` (the grey levels of its uint8 images)
    takes_data_levels = False

    def __init__(self, shape: Sequence[int]):
        super().__init__()
        self.shape = tuple(int(s) for s in shape)

    def preprocess(self, x: Tensor) -> Tensor:
        """Raw ``uint8`` images to the observation ``x`` that the model and guide take."""
        return x.float()

    def observation(self, x: Tensor) -> Tensor:
        """In the model: the value this likelihood scores for the observation ``x`` (``x``
        itself, unless the likelihood has sample sites of its own, e.g. dequantization)."""
        return x

    def guide(self, x: Tensor) -> None:
        """In the guide: the likelihood's own latent sites given ``x`` (none by default)."""

    def encoder_input(self, x: Tensor) -> Tensor:
        """The observation to the encoder's input, roughly in ``[-1, 1]``."""
        return x / 127.5 - 1

    def to_image(self, x: Tensor) -> Tensor:
        """An observation (or a sample of this likelihood) as an image in ``[0, 1]``."""
        return x.clamp(0, 1)


#: the sample site of the dequantization noise ``u`` (``dequantization="variational"``)
DEQUANTIZATION = "dequantization"
DEQUANTIZATIONS = ("uniform", "variational")


class DensityLikelihood(Likelihood):
    """A density on dequantized pixels ``x~ = (x + u) / 256``, from a location and a log-scale
    image emitted by the decoder.

    ``dequantization="uniform"``: ``u ~ U[0, 1)^D`` drawn by :meth:`preprocess`.
    ``"variational"`` (Flow++, Ho et al. 2019): ``u`` is a latent with a uniform prior and
    the learned posterior ``q(u|x)`` of :class:`VariationalDequantizer` (site
    ``"dequantization"``); :meth:`preprocess` keeps the bins' corners ``x / 256`` and the
    model scores ``x + u / 256``. Either way the ELBO bounds ``log P(x) + D log 256`` of the
    8-bit image; the variational one is tighter where the density is not flat within a bin."""

    discrete = False
    dequantizes = True

    def __init__(self, shape: Sequence[int], dequantization: str = "uniform"):
        super().__init__(shape)
        if dequantization not in DEQUANTIZATIONS:
            raise ValueError(f"dequantization must be one of {DEQUANTIZATIONS}, "
                             f"got {dequantization!r}")
        self.out_channels = 2 * self.shape[0]
        self.dequantizer = (VariationalDequantizer(self.shape)
                            if dequantization == "variational" else None)

    def preprocess(self, x: Tensor) -> Tensor:
        return dequantize(x) if self.dequantizer is None else x.float() / 256

    def encoder_input(self, x: Tensor) -> Tensor:
        return 2 * x - 1

    def observation(self, x: Tensor) -> Tensor:
        if self.dequantizer is None:
            return x
        uniform = dist.Uniform(x.new_zeros(()), x.new_ones(())).expand(x.shape[-3:])
        u = pyro.sample(DEQUANTIZATION, uniform.to_event(3))
        return (x + u / 256).clamp(max=1 - torch.finfo(x.dtype).eps / 2)

    def guide(self, x: Tensor) -> None:
        if self.dequantizer is not None:
            pyro.sample(DEQUANTIZATION, self.dequantizer(x))



class VariationalDequantizer(nn.Module):
    r"""``q(u|x)`` over the dequantization noise ``u in (0, 1)^D`` of the images ``x``: a
    logit-normal per pixel, ``u = sigmoid(e)``, ``e ~ N(m(x), s(x))``, whose location and
    log-scale images come from a small convolutional network on ``x`` (each pixel's noise
    sees its 7x7 neighbourhood). The last layer starts at zero, so ``q`` starts as the
    logit-normal ``(0, 1)``, a hump on ``(0, 1)``.

    Example:
        >>> import torch
        >>> q = VariationalDequantizer((1, 4, 4))
        >>> u = q(torch.rand(2, 1, 4, 4)).sample()
        >>> u.shape, bool(((u > 0) & (u < 1)).all())
        (torch.Size([2, 1, 4, 4]), True)
    """

    def __init__(self, shape: Sequence[int], hidden: int = 16):
        super().__init__()
        c = shape[0]
        self.net = nn.Sequential(
            nn.Conv2d(c, hidden, 3, padding=1), nn.ReLU(),
            nn.Conv2d(hidden, hidden, 3, padding=1), nn.ReLU(),
            nn.Conv2d(hidden, 2 * c, 3, padding=1),
        )
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, x: Tensor):
        """``q(u|x)`` for observations ``x`` (bin corners in ``[0, 1)``), event dims 3."""
        params = self.net(2 * x.reshape(-1, *x.shape[-3:]) - 1)
        loc, log_scale = params.reshape(*x.shape[:-3], *params.shape[-3:]).chunk(2, dim=-3)
        base = dist.Normal(loc, log_scale.exp())
        return dist.TransformedDistribution(base, [dist.transforms.SigmoidTransform()]).to_event(3)
