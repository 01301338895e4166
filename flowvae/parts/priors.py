"""Priors ``p(z)`` of a VAE, registered in :data:`PRIORS`: ``forward(like)`` returns the
distribution over ``latent_shape`` (``like``: a tensor whose dtype and device it takes)."""

from __future__ import annotations

from typing import Sequence

import pyro.distributions as dist
import torch
from torch import Tensor, nn

from flowvae.distributions import FlowDistribution
from flowvae.parts.registry import Registry
from flowvae.transforms import ConditionalRealNVP

__all__ = ["PRIORS", "FlowPrior", "StandardNormalPrior"]

#: priors by name: ``VAE(prior="normal")``
PRIORS = Registry("prior")


@PRIORS.register("normal")
class StandardNormalPrior(nn.Module):
    """``p(z) = Normal(0, I)`` over ``latent_shape``."""

    def __init__(self, latent_shape: Sequence[int]):
        super().__init__()
        self.latent_shape = tuple(latent_shape)

    def forward(self, like: Tensor):
        zero = like.new_zeros(self.latent_shape)
        return dist.Normal(zero, 1.0).to_event(len(self.latent_shape))


@PRIORS.register("flow")
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
