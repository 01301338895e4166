"""The pluggable parts of a :class:`~flowvae.models.vae.VAE`.

* guide families turn an encoder output into ``q(z|x)``;
* priors give ``p(z)``;
* likelihoods turn a decoder output (and ``z``) into ``p(x|z)``, and say how raw ``uint8``
  images become the observation (``preprocess``) and the encoder input (``encoder_input``).

Each part declares the network width it needs (``num_params`` / ``out_channels``) so that the VAE
sizes its encoder and decoder from it. Parts with parameters are ``nn.Module`` s.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple, Union

import pyro
import pyro.distributions as dist
import torch
from nflows.transforms.base import CompositeTransform
from torch import Tensor, nn
from torch.nn import functional as F

from flowvae.data.pixels import dequantize
from flowvae.distributions import AR1Normal, DiscretizedLogisticMixture, FlowDistribution
from flowvae.models.flow_posterior import PlanarGuide
from flowvae.models.likelihood import Likelihood
from flowvae.models.pixelcnn import PixelCNNLikelihood
from flowvae.transforms import ConditionalRealNVP, LogitTransform


def _as_shape(shape: Union[int, Sequence[int]]) -> Tuple[int, ...]:
    return (int(shape),) if isinstance(shape, int) else tuple(int(s) for s in shape)


# ---------------------------------------------------------------------------- guide families
class DiagonalNormalGuide(nn.Module):
    """``q(z|x) = Normal(mu, exp(log_sigma))`` over a latent of any shape; params ``2 * |z|``.

    ``max_log_scale`` (default ``None``: unbounded) softly bounds ``log_sigma`` above,
    ``max - softplus(max - raw)``: without a KL term (Zhao et al.'s unregularized objective)
    nothing else stops the encoder's ``exp``-parameterised scale from running away."""

    def __init__(self, latent_shape: Union[int, Sequence[int]],
                 max_log_scale: Optional[float] = None):
        super().__init__()
        self.latent_shape = _as_shape(latent_shape)
        self.num_params = 2 * math.prod(self.latent_shape)
        self.max_log_scale = max_log_scale

    def forward(self, params: Tensor):
        loc, log_scale = params.view(*params.shape[:-1], 2, *self.latent_shape).unbind(-1 - len(
            self.latent_shape))
        if self.max_log_scale is not None:
            log_scale = self.max_log_scale - F.softplus(self.max_log_scale - log_scale)
        return dist.Normal(loc, log_scale.exp()).to_event(len(self.latent_shape))


class AR1Guide(nn.Module):
    """``q(z|x) = AR1Normal(mu, sigma, rho)`` (rho-VAE): ``d`` means, one log-scale and one
    pre-tanh correlation per sample (``per_dim_scale=True``: ``d`` log-scales)."""

    def __init__(self, latent_dim: int, per_dim_scale: bool = False):
        super().__init__()
        self.latent_shape = (latent_dim,)
        self.scales = latent_dim if per_dim_scale else 1
        self.num_params = latent_dim + self.scales + 1

    def forward(self, params: Tensor):
        d = self.latent_shape[0]
        loc, log_scale, raw_rho = params.split([d, self.scales, 1], dim=-1)
        return AR1Normal(loc, log_scale.exp(), torch.tanh(raw_rho.squeeze(-1)))


class FlowGuide(nn.Module):
    """``q(z|x)``: ``z_0 ~ Normal(mu, sigma)`` pushed through the inverse of a vector
    :class:`ConditionalRealNVP` conditioned on encoder features ``h`` (amortised).

    ``actnorm=True`` puts an :class:`~flowvae.transforms.ActNorm` before every coupling; the
    flow only samples, so they are initialised by :class:`~flowvae.FlowDistribution`'s first
    draw in training mode (the model's ``initialize``, or the first SVI step)."""

    def __init__(self, latent_dim: int, context_features: int = 32, num_couplings: int = 4,
                 hidden_features: int = 128, actnorm: bool = False):
        super().__init__()
        self.latent_shape = (latent_dim,)
        self.context_features = context_features
        self.num_params = 2 * latent_dim + context_features
        self.flow = ConditionalRealNVP((latent_dim,), context_features,
                                       num_couplings=num_couplings,
                                       hidden_features=hidden_features, actnorm=actnorm)

    def forward(self, params: Tensor):
        d = self.latent_shape[0]
        loc, log_scale, h = params.split([d, d, self.context_features], dim=-1)
        return FlowDistribution(self.flow, loc, log_scale.exp(), context=h)


class DeltaGuide(nn.Module):
    """``q(z|x) = delta(mu(x))``: a deterministic encoder (the ELBO becomes the MAP objective
    ``log p(x|z) + log p(z)`` at ``z = mu(x)``); no sampling noise, e.g. for exact
    reproducibility checks."""

    def __init__(self, latent_shape: Union[int, Sequence[int]]):
        super().__init__()
        self.latent_shape = _as_shape(latent_shape)
        self.num_params = math.prod(self.latent_shape)

    def forward(self, params: Tensor):
        loc = params.view(*params.shape[:-1], *self.latent_shape)
        return dist.Delta(loc, event_dim=len(self.latent_shape))


GUIDES = {"normal": DiagonalNormalGuide, "ar1": AR1Guide, "flow": FlowGuide, "delta": DeltaGuide}
GUIDES["planar"] = PlanarGuide  # amortised planar flow posterior (rNVP report)


# ---------------------------------------------------------------------------- priors
class StandardNormalPrior(nn.Module):
    """``p(z) = Normal(0, I)`` over ``latent_shape``."""

    def __init__(self, latent_shape: Sequence[int]):
        super().__init__()
        self.latent_shape = tuple(latent_shape)

    def forward(self, like: Tensor):
        zero = like.new_zeros(self.latent_shape)
        return dist.Normal(zero, 1.0).to_event(len(self.latent_shape))


class FlowPrior(nn.Module):
    """``p(z)``: a standard Normal pushed through an unconditional :class:`ConditionalRealNVP`
    (srVAE's RealNVP prior); ``latent_shape`` a vector ``(d,)`` or a tensor ``(C, H, W)``."""

    def __init__(self, latent_shape: Sequence[int], **flow_kwargs):
        super().__init__()
        self.latent_shape = tuple(latent_shape)
        self.flow = ConditionalRealNVP(self.latent_shape, None, **flow_kwargs)

    def forward(self, like: Tensor):
        zero = like.new_zeros(self.latent_shape)
        return FlowDistribution(self.flow, zero, torch.ones_like(zero))


PRIORS = {"normal": StandardNormalPrior, "flow": FlowPrior}


# ---------------------------------------------------------------------------- likelihoods
#: the sample site of the dequantization noise ``u`` (``dequantization="variational"``)
DEQUANTIZATION = "dequantization"
DEQUANTIZATIONS = ("uniform", "variational")


class BernoulliLikelihood(Likelihood):
    """``p(x|z) = Bernoulli(logits)`` on binary images; grey images are binarized dynamically
    (a fresh ``Bernoulli(x / 255)`` draw per batch)."""

    def __init__(self, shape: Sequence[int]):
        super().__init__(shape)
        self.out_channels = self.shape[0]

    def preprocess(self, x: Tensor) -> Tensor:
        x = x.float()
        return x if x.max() <= 1 else torch.bernoulli(x / 255)

    def encoder_input(self, x: Tensor) -> Tensor:
        return 2 * x - 1

    def forward(self, params: Tensor, z: Tensor):
        return dist.Bernoulli(logits=params).to_event(3)


class _DensityLikelihood(Likelihood):
    """A density on dequantized pixels ``x~ = (x + u) / 256``, from a location and a log-scale
    image emitted by the decoder.

    ``dequantization="uniform"``: ``u ~ U[0, 1)^D`` drawn by :meth:`preprocess`.
    ``"variational"`` (Flow++, Ho et al. 2019): ``u`` is a latent with a uniform prior and
    the learned posterior ``q(u|x)`` of :class:`VariationalDequantizer` (site
    ``"dequantization"``); :meth:`preprocess` keeps the bins' corners ``x / 256`` and the
    model scores ``x + u / 256``. Either way the ELBO bounds ``log P(x) + D log 256`` of the
    8-bit image; the variational one is tighter where the density is not flat within a bin."""

    discrete = False

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


class GaussianLikelihood(_DensityLikelihood):
    """``p(x~|z) = Normal(mu, sigma)`` on dequantized pixels ``x~ in [0, 1)``, with the
    log-scale softly bounded below by ``min_log_scale``."""

    def __init__(self, shape: Sequence[int], min_log_scale: float = -7.0,
                 dequantization: str = "uniform"):
        super().__init__(shape, dequantization)
        self.min_log_scale = min_log_scale

    def forward(self, params: Tensor, z: Tensor):
        loc, log_scale = params.chunk(2, dim=-3)
        log_scale = self.min_log_scale + F.softplus(log_scale - self.min_log_scale)
        return dist.Normal(loc, log_scale.exp()).to_event(3)


class LogisticMixtureLikelihood(Likelihood):
    """``p(x|z)``: a :class:`DiscretizedLogisticMixture` with ``num_mixtures`` components on
    8-bit pixels (channel coupling when ``C = 3``)."""

    def __init__(self, shape: Sequence[int], num_mixtures: int = 5):
        super().__init__(shape)
        c = self.shape[0]
        self.k = num_mixtures
        self.split = [num_mixtures, num_mixtures * c, num_mixtures * c,
                      num_mixtures * (c * (c - 1) // 2)]
        self.out_channels = sum(self.split)

    def forward(self, params: Tensor, z: Tensor):
        c, h, w = self.shape
        logits, loc, log_scale, coeffs = params.split(self.split, dim=-3)
        batch = params.shape[:-3]
        loc = loc.reshape(*batch, self.k, c, h, w)
        log_scale = log_scale.reshape(*batch, self.k, c, h, w)
        coeffs = torch.tanh(coeffs.reshape(*batch, self.k, -1, h, w)) if c > 1 else None
        return DiscretizedLogisticMixture(logits, loc, log_scale, coeffs)

    def to_image(self, x: Tensor) -> Tensor:
        return x / 255


class FlowLikelihood(_DensityLikelihood):
    """VAPNEV's ``p(x~|z)``: ``log N(f_z(x~); mu_v(z), sigma_v(z)) + log|det df_z/dx~|`` with
    ``f_z`` the :class:`LogitTransform` followed by a :class:`ConditionalRealNVP` conditioned on
    ``z``; the decoder emits ``mu_v`` and ``log sigma_v`` as images of ``x``'s shape.

    The flow puts an :class:`~flowvae.transforms.ActNorm` before every coupling unless
    ``actnorm=False`` is given: RealNVP normalises its layers (with batch normalisation), and
    without a normalisation the flow learns far more slowly (measured on MNIST, 6000 images,
    3 epochs: 2.30 bits/dim without, 1.83 with, test ELBO; ``docs/papers/vapnev.md``)."""

    def __init__(self, shape: Sequence[int], context_features: Optional[int],
                 alpha: float = 0.05, dequantization: str = "uniform", **flow_kwargs):
        super().__init__(shape, dequantization)
        flow_kwargs.setdefault("actnorm", True)
        self.flow = ConditionalRealNVP(self.shape, context_features, **flow_kwargs)
        self.transform = CompositeTransform([LogitTransform(alpha), self.flow])

    def forward(self, params: Tensor, z: Tensor):
        loc, log_scale = params.chunk(2, dim=-3)
        context = z if self.flow.context_features is not None else None
        return FlowDistribution(self.transform, loc, log_scale.exp(), context,
                                event_shape=self.shape)


LIKELIHOODS = {
    "bernoulli": BernoulliLikelihood,
    "gaussian": GaussianLikelihood,
    "logistic": LogisticMixtureLikelihood,
    "flow": FlowLikelihood,
}
LIKELIHOODS["pixelcnn"] = PixelCNNLikelihood  # autoregressive decoder (Zhao et al.)
