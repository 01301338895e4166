r"""The sequential VAE of Zhao, Song and Ermon (sec. 3.2, app. C.1).

Step ``t = 1 .. T`` has its own encoder ``q_t(z_t|x)`` and its own decoder, which reads ``z_t``
and the previous step's output ``h_{t-1}`` (the decoder's parameters of ``p_{t-1}``, e.g. the
Bernoulli logits) and combines them through a gated shortcut:

.. math::

    h_1 = g_1(z_1), \qquad
    h_t = a_t \odot h_{t-1} + (1 - a_t) \odot g_t\big(z_t, h_{t-1}\big), \quad
    a_t = \sigma(\alpha_t) \in (0, 1),

with ``alpha_t`` a learned vector (one entry per channel of ``h``; :class:`GatedShortcut`), and
``p_t(x_t | z_{1:t}) = p(x | h_t)`` from the chosen likelihood. Every step reconstructs the
*same* ``x``; all steps are trained jointly by the sum of the per-step objectives

.. math::

    \sum_{t=1}^T \Big( \mathbb{E}_{q}\big[\log p_t(x \mid z_{1:t})\big]
        - R\big(q_t(z_t|x)\big) \Big),

which :class:`pyro.infer.Trace_ELBO` computes with ``R = KL(q_t || N(0, I))`` (the paper's
choice) and :class:`~flowvae.infer.GeneralizedELBO` with any ``R``
(``latent_site=model.latent_sites``). Sampling is ancestral from noise: ``z_t ~ N(0, I)`` for
every ``t``, ``h_1 .. h_T`` in turn, and ``x ~ p(x | h_T)``.

By Zhao et al.'s Proposition 5 the posterior variance ``E_{q(z_{1:t})} Var_{q(x|z_{1:t})}[x_i]``
cannot grow with ``t``; :meth:`SequentialVAE.posterior_variance` estimates it per step.

References:
    Zhao, S., Song, J. and Ermon, S. Towards deeper understanding of variational autoencoding
    models. 2017.
"""

from __future__ import annotations

import math
from typing import List, Optional, Sequence

import pyro
import torch
from pyro.nn.module import pyro_method, to_pyro_module_
from torch import Tensor, nn

from flowvae.models.base import PyroModel
from flowvae.models.vae import batch_size_of
from flowvae.nn import ConvDecoder, ConvEncoder, MLPDecoder, MLPEncoder
from flowvae.parts import GUIDES, LIKELIHOODS, StandardNormalPrior

DATA_PLATE = "data"
NETWORKS = {"mlp": (MLPEncoder, MLPDecoder), "conv": (ConvEncoder, ConvDecoder)}


class GatedShortcut(nn.Module):
    """``a * prev + (1 - a) * new`` with ``a = sigmoid(alpha)`` in ``(0, 1)``, one learned
    ``alpha`` per channel of ``(*batch, channels, H, W)`` inputs.

    Example:
        >>> import torch
        >>> gate = GatedShortcut(2, init=0.0)
        >>> gate(torch.ones(1, 2, 3, 3), torch.zeros(1, 2, 3, 3)).unique().tolist()
        [0.5]
    """

    def __init__(self, channels: int, init: float = 0.0):
        super().__init__()
        self.logit = nn.Parameter(torch.full((channels,), float(init)))

    @property
    def gate(self) -> Tensor:
        return torch.sigmoid(self.logit)

    def forward(self, prev: Tensor, new: Tensor) -> Tensor:
        a = self.gate.view(-1, *(1 for _ in prev.shape[prev.dim() - 2:]))
        return a * prev + (1 - a) * new


def latent_site(step: int) -> str:
    """The name of step ``step``'s latent site (steps count from 1): ``"z_1"``, ``"z_2"``..."""
    return f"z_{step}"


def observed_site(step: int) -> str:
    """The name of step ``step``'s observed site: ``"x_1"``, ``"x_2"``..."""
    return f"x_{step}"


class SequentialVAE(PyroModel):
    r"""A ``T``-step sequential VAE (module docstring) as a Pyro model/guide pair.

    ``model(x)``: for ``t = 1 .. T``, ``z_t ~ N(0, I)`` and ``x_t ~ p_t(x | z_{1:t})`` observed
    against the same ``x``; ``guide(x)``: ``z_t ~ q_t(z_t | x)``; sites ``z_1 .. z_T``,
    ``x_1 .. x_T`` inside ``pyro.plate("data", B, dim=-1)``; ``model(batch_size=B)``
    generates: every ``x_t`` is drawn, and the last, ``(B, C, H, W)``, is returned. ``x`` is
    the preprocessed observation (:meth:`preprocess`). With ``steps=1`` this is a plain VAE.
    The ELBO that :func:`flowvae.train.fit` reports is the sum of the ``T`` per-step
    objectives (its bits/dim is not a likelihood bound of one model of ``x``).

    Args:
        shape: image shape ``(C, H, W)``.
        steps: ``T``.
        latent_dim: size of each ``z_t``.
        likelihood: a name in ``LIKELIHOODS`` (``"bernoulli"``, ``"gaussian"``, ...): the
            family of every ``p_t``.
        network: ``"mlp"`` or ``"conv"`` encoders and decoders.
        hidden: width of the MLPs, or base channels of the conv nets.
        feature_dim: size of the features each decoder ``t > 1`` extracts from ``h_{t-1}``.
        guide: a name in ``GUIDES`` for every ``q_t`` (e.g. ``"normal"``).
        gate_init: initial ``alpha_t`` (``a_t = sigmoid(gate_init)``).
        likelihood_kwargs, network_kwargs: passed to the likelihood and the networks.

    Example:
        >>> import torch
        >>> from pyro.infer import SVI, Trace_ELBO
        >>> from pyro.optim import Adam
        >>> model = SequentialVAE((1, 8, 8), steps=3, latent_dim=2, hidden=16)
        >>> x = model.preprocess(torch.randint(0, 256, (4, 1, 8, 8), dtype=torch.uint8))
        >>> svi = SVI(model.model, model.guide, Adam({"lr": 1e-3}), Trace_ELBO())
        >>> loss = svi.step(x)
        >>> model.latent_sites
        ('z_1', 'z_2', 'z_3')
        >>> [tuple(s.shape) for s in model.generate(5)]
        [(5, 1, 8, 8), (5, 1, 8, 8), (5, 1, 8, 8)]
        >>> model.gates.shape  # a_2, a_3, one per channel of h
        torch.Size([2, 1])
    """

    def __init__(
        self,
        shape: Sequence[int],
        steps: int = 3,
        latent_dim: int = 8,
        likelihood: str = "bernoulli",
        network: str = "mlp",
        hidden: int = 256,
        feature_dim: int = 32,
        guide: str = "normal",
        gate_init: float = 0.0,
        likelihood_kwargs: Optional[dict] = None,
        network_kwargs: Optional[dict] = None,
        name: Optional[str] = None,
    ):
        super().__init__(name)
        likelihood_cls = LIKELIHOODS.get_class(likelihood)
        if network not in NETWORKS:
            raise ValueError(f"network must be one of {tuple(NETWORKS)}, got {network!r}")
        guide_cls = GUIDES.get_class(guide)
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        self.shape = tuple(int(s) for s in shape)
        if len(self.shape) != 3:
            raise ValueError(f"shape must be (C, H, W), got {self.shape}")
        self.steps = steps
        self.latent_dim = latent_dim
        lik_kwargs = dict(likelihood_kwargs or {})
        if likelihood_cls.needs_context:  # z conditions the likelihood's own network
            lik_kwargs.setdefault("context_features", latent_dim)
        self.p_x = likelihood_cls(self.shape, **lik_kwargs)
        self.p_z = StandardNormalPrior((latent_dim,))
        self.q = nn.ModuleList(guide_cls(latent_dim) for _ in range(steps))
        decoded = (self.p_x.out_channels, *self.shape[1:])
        self.params_shape = decoded
        encoder, decoder = NETWORKS[network]
        kw = network_kwargs or {}
        self.encoders = nn.ModuleList(encoder(self.shape, q.num_params, hidden, **kw)
                                      for q in self.q)
        self.features = nn.ModuleList(encoder(decoded, feature_dim, hidden, **kw)
                                      for _ in range(steps - 1))
        self.decoders = nn.ModuleList(
            decoder(latent_dim + (feature_dim if t else 0), decoded, hidden, **kw)
            for t in range(steps))
        self.shortcuts = nn.ModuleList(GatedShortcut(decoded[0], gate_init)
                                       for _ in range(steps - 1))
        to_pyro_module_(self)

    # ------------------------------------------------------------------ Pyro program
    @property
    def latent_sites(self) -> tuple:
        """``("z_1", ..., "z_T")``, e.g. for ``GeneralizedELBO(latent_site=...)``."""
        return tuple(latent_site(t + 1) for t in range(self.steps))

    @property
    def gates(self) -> Tensor:
        """``a_2 .. a_T`` in ``(0, 1)``: ``(T - 1, channels of h)``."""
        gates = [shortcut.gate for shortcut in self.shortcuts]
        return torch.stack(gates) if gates else next(self.parameters()).new_zeros(
            0, self.params_shape[0])

    @property
    def num_dims(self) -> int:
        return math.prod(self.shape)

    def preprocess(self, x: Tensor) -> Tensor:
        """``uint8`` images ``(B, C, H, W)`` to the observation ``model`` / ``guide`` take."""
        if x.dim() != 4 or tuple(x.shape[1:]) != self.shape:
            raise ValueError(f"expected images of shape (B, {', '.join(map(str, self.shape))}),"
                             f" got {tuple(x.shape)}")
        if x.dtype != torch.uint8:
            raise ValueError(f"expected uint8 images in 0..255, got dtype {x.dtype}")
        return self.p_x.preprocess(x)

    def decode_step(self, t: int, z: Tensor, prev: Optional[Tensor]) -> Tensor:
        """``h_t`` from ``z_t`` and ``h_{t-1}`` (``t`` counts from 0 here; ``prev=None`` at 0)."""
        if t == 0:
            return self.decoders[0](z)
        feature = self.features[t - 1](prev)
        new = self.decoders[t](torch.cat([z, feature.expand(*z.shape[:-1], -1)], -1))
        return self.shortcuts[t - 1](prev, new)

    def decode(self, zs: Sequence[Tensor]) -> List[Tensor]:
        """``[h_1, ..., h_t]`` from ``[z_1, ..., z_t]`` (any ``t <= T``)."""
        hs: List[Tensor] = []
        for t, z in enumerate(zs):
            hs.append(self.decode_step(t, z, hs[-1] if hs else None))
        return hs

    @pyro_method
    def model(self, x: Optional[Tensor] = None, batch_size: Optional[int] = None) -> Tensor:
        like = next(self.parameters()) if x is None else x
        with pyro.plate(DATA_PLATE, batch_size_of(x, batch_size), dim=-1):
            h = None
            for t in range(self.steps):
                z = pyro.sample(latent_site(t + 1), self.p_z(like))
                h = self.decode_step(t, z, h)
                sample = pyro.sample(observed_site(t + 1), self.p_x(h, z), obs=x)
        return sample

    @pyro_method
    def guide(self, x: Tensor, batch_size: Optional[int] = None) -> None:
        features = self.p_x.encoder_input(x)
        with pyro.plate(DATA_PLATE, batch_size_of(x, batch_size), dim=-1):
            for t in range(self.steps):
                pyro.sample(latent_site(t + 1), self.q[t](self.encoders[t](features)))

    # ------------------------------------------------------------------ helpers
    def posteriors(self, x: Tensor) -> list:
        """``[q_1(z_1|x), ..., q_T(z_T|x)]`` for a preprocessed batch."""
        features = self.p_x.encoder_input(x)
        return [q(encoder(features)) for q, encoder in zip(self.q, self.encoders)]

    def to_image(self, x: Tensor) -> Tensor:
        """An observation (or a sample of ``p_t``) as an image in ``[0, 1]``."""
        return self.p_x.to_image(x)

    def _images(self, hs: Sequence[Tensor], zs: Sequence[Tensor], mean: bool) -> List[Tensor]:
        images = []
        for h, z in zip(hs, zs):
            d = self.p_x(h, z)
            images.append(self.to_image(d.mean if mean else d.sample()))
        return images

    @torch.no_grad()
    def generate(self, n: int, mean: bool = False, temperature: float = 1.0) -> List[Tensor]:
        """Ancestral samples from noise: ``z_t ~ N(0, temperature^2 I)`` for all ``t``; returns
        the ``T`` images ``x ~ p_t(x | z_{1:t})`` (or their means, ``mean=True``), each
        ``(n, C, H, W)`` in ``[0, 1]``; the last is the model's sample."""
        like = next(self.parameters())
        zs = [self.p_z(like).sample((n,)) * temperature for _ in range(self.steps)]
        return self._images(self.decode(zs), zs, mean)

    @torch.no_grad()
    def reconstruct(self, x: Tensor, mean: bool = False) -> List[Tensor]:
        """``z_t ~ q_t(z_t|x)`` and the ``T`` reconstructions ``p_t(x | z_{1:t})`` (samples, or
        means with ``mean=True``) of a preprocessed batch, as images in ``[0, 1]``."""
        zs = [q.sample() for q in self.posteriors(x)]
        return self._images(self.decode(zs), zs, mean)

    @torch.no_grad()
    def posterior_variance(self, x: Tensor, target: Optional[Tensor] = None,
                           num_samples: int = 1) -> Tensor:
        r"""Per step ``t``, the per-pixel posterior variance of Proposition 5,
        ``(1/D) sum_i E_{q(z_{1:t})} Var_{q(x|z_{1:t})}[x_i]``, estimated on this batch by the
        mean squared error of the decoder's mean, ``mean_{x, i} E_q (x_i - E_{p_t}[x_i])^2``:
        the optimal decoder's mean is ``E_q[x | z_{1:t}]`` (Proposition 4), so the estimate is
        exact for an optimal decoder and an upper bound otherwise.

        Args:
            x: preprocessed observations ``(B, C, H, W)`` for the encoders.
            target: the images whose variance is measured, in ``[0, 1]`` (default
                ``to_image(x)``; e.g. the grey images ``x / 255`` behind binarized ones, whose
                conditional mean the Bernoulli mean also estimates).
            num_samples: draws of ``z ~ q`` per data point.

        Returns:
            ``(T,)`` tensor of per-pixel variances, one per step.
        """
        target = self.to_image(x) if target is None else target
        total = x.new_zeros(self.steps)
        for _ in range(num_samples):
            means = self.reconstruct(x, mean=True)
            total += torch.stack([(target - m).pow(2).mean() for m in means])
        return total / num_samples
