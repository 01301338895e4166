"""The discretized logistic mixture likelihood of 8-bit pixels (PixelCNN++)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from flowvae.distributions import DiscretizedLogisticMixture
from flowvae.parts.likelihoods._base import LIKELIHOODS, Likelihood

__all__ = ["LogisticMixtureLikelihood"]


@LIKELIHOODS.register("logistic")
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
