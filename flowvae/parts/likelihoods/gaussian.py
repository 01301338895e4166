"""A Gaussian density on dequantized pixels."""

from __future__ import annotations

from typing import Sequence

import pyro.distributions as dist
from torch import Tensor
from torch.nn import functional as F

from flowvae.parts.likelihoods._base import LIKELIHOODS, DensityLikelihood

__all__ = ["GaussianLikelihood"]


@LIKELIHOODS.register("gaussian")
class GaussianLikelihood(DensityLikelihood):
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
