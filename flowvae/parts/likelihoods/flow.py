"""VAPNEV's flow likelihood: a conditional RealNVP on logit pixels."""

from __future__ import annotations

from typing import Optional, Sequence

from nflows.transforms.base import CompositeTransform
from torch import Tensor

from flowvae.choices import FLOW_OPTIONS
from flowvae.distributions import FlowDistribution
from flowvae.parts.likelihoods._base import LIKELIHOODS, DensityLikelihood
from flowvae.transforms import ConditionalRealNVP, LogitTransform

__all__ = ["FlowLikelihood"]


@LIKELIHOODS.register("flow")
class FlowLikelihood(DensityLikelihood):
    """VAPNEV's ``p(x~|z)``: ``log N(f_z(x~); mu_v(z), sigma_v(z)) + log|det df_z/dx~|`` with
    ``f_z`` the :class:`LogitTransform` followed by a :class:`ConditionalRealNVP` conditioned on
    ``z``; the decoder emits ``mu_v`` and ``log sigma_v`` as images of ``x``'s shape.

    Args:
        shape: image shape ``(C, H, W)``.
        context_features: the width of ``z`` (set by the VAE, which reads ``needs_context``),
            or ``None`` for an unconditional flow (:class:`~flowvae.models.FlowDensity`).
        alpha: the logit transform's margin.
        dequantization: ``"uniform"`` or ``"variational"`` (:class:`DensityLikelihood`).
        conditional: ``False`` leaves ``z`` out of the flow (VAPNEV's ablation).
        actnorm: an :class:`~flowvae.transforms.ActNorm` before every coupling (default on):
            RealNVP normalises its layers (with batch normalisation), and without a
            normalisation the flow learns far more slowly (measured on MNIST, 6000 images,
            3 epochs: 2.30 bits/dim without, 1.83 with, test ELBO; ``docs/papers/vapnev.md``).
        flow_options: the other :class:`ConditionalRealNVP` options, passed to it unchanged
            (the image flow's in :data:`flowvae.choices.FLOW_OPTIONS`)."""

    needs_context = True
    flow_options = tuple(FLOW_OPTIONS["image"])

    def __init__(self, shape: Sequence[int], context_features: Optional[int],
                 alpha: float = 0.05, dequantization: str = "uniform", conditional: bool = True,
                 actnorm: bool = True, **flow_options):
        super().__init__(shape, dequantization)
        self.flow = ConditionalRealNVP(self.shape, context_features if conditional else None,
                                       actnorm=actnorm, **flow_options)
        self.transform = CompositeTransform([LogitTransform(alpha), self.flow])

    def forward(self, params: Tensor, z: Tensor):
        loc, log_scale = params.chunk(2, dim=-3)
        context = z if self.flow.context_features is not None else None
        return FlowDistribution(self.transform, loc, log_scale.exp(), context,
                                event_shape=self.shape)
