"""Guide families ``q(z|x)`` of a VAE: each turns an encoder output into a distribution.

Each class is registered in :data:`GUIDES` by its decorator and declares what it needs:
``num_params`` (the encoder's output size, set by the constructor), ``tensor_latent`` (whether
it takes a latent of any shape, or only a vector). Parts with parameters are ``nn.Module`` s.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple, Union

import pyro.distributions as dist
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from flowvae.choices import FLOW_OPTIONS
from flowvae.distributions import AR1Normal, FlowDistribution
from flowvae.parts.registry import Registry
from flowvae.transforms import ConditionalRealNVP

__all__ = ["GUIDES", "AR1Guide", "DeltaGuide", "DiagonalNormalGuide", "FlowGuide"]

#: guide families by name: ``VAE(guide="normal")``
GUIDES = Registry("guide")
_VECTOR = FLOW_OPTIONS["vector"]  # the flow guide's defaults are the vector flow's


def _as_shape(shape: Union[int, Sequence[int]]) -> Tuple[int, ...]:
    return (int(shape),) if isinstance(shape, int) else tuple(int(s) for s in shape)


@GUIDES.register("normal")
class DiagonalNormalGuide(nn.Module):
    """``q(z|x) = Normal(mu, exp(log_sigma))`` over a latent of any shape; params ``2 * |z|``.

    ``max_log_scale`` (default ``None``: unbounded) softly bounds ``log_sigma`` above,
    ``max - softplus(max - raw)``: without a KL term (Zhao et al.'s unregularized objective)
    nothing else stops the encoder's ``exp``-parameterised scale from running away."""

    tensor_latent = True  # any latent shape

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


@GUIDES.register("ar1")
class AR1Guide(nn.Module):
    """``q(z|x) = AR1Normal(mu, sigma, rho)`` (rho-VAE): ``d`` means, one log-scale and one
    pre-tanh correlation per sample (``per_dim_scale=True``: ``d`` log-scales)."""

    tensor_latent = False

    def __init__(self, latent_dim: int, per_dim_scale: bool = False):
        super().__init__()
        self.latent_shape = (latent_dim,)
        self.scales = latent_dim if per_dim_scale else 1
        self.num_params = latent_dim + self.scales + 1

    def forward(self, params: Tensor):
        d = self.latent_shape[0]
        loc, log_scale, raw_rho = params.split([d, self.scales, 1], dim=-1)
        return AR1Normal(loc, log_scale.exp(), torch.tanh(raw_rho.squeeze(-1)))


@GUIDES.register("flow")
class FlowGuide(nn.Module):
    """``q(z|x)``: ``z_0 ~ Normal(mu, sigma)`` pushed through the inverse of a vector
    :class:`ConditionalRealNVP` conditioned on encoder features ``h`` (amortised).

    ``actnorm=True`` puts an :class:`~flowvae.transforms.ActNorm` before every coupling; the
    flow only samples, so they are initialised by :class:`~flowvae.FlowDistribution`'s first
    draw in training mode (the model's ``initialize``, or the first SVI step)."""

    tensor_latent = False

    def __init__(self, latent_dim: int, context_features: int = 32,
                 num_couplings: int = _VECTOR["num_couplings"],
                 hidden_features: int = _VECTOR["hidden_features"],
                 actnorm: bool = _VECTOR["actnorm"]):
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


@GUIDES.register("delta")
class DeltaGuide(nn.Module):
    """``q(z|x) = delta(mu(x))``: a deterministic encoder (the ELBO becomes the MAP objective
    ``log p(x|z) + log p(z)`` at ``z = mu(x)``); no sampling noise, e.g. for exact
    reproducibility checks."""

    tensor_latent = False  # as VAE has always allowed: vector latents

    def __init__(self, latent_shape: Union[int, Sequence[int]]):
        super().__init__()
        self.latent_shape = _as_shape(latent_shape)
        self.num_params = math.prod(self.latent_shape)

    def forward(self, params: Tensor):
        loc = params.view(*params.shape[:-1], *self.latent_shape)
        return dist.Delta(loc, event_dim=len(self.latent_shape))
