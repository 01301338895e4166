"""The Bernoulli likelihood of binary images (grey images binarized dynamically)."""

from __future__ import annotations

from typing import Sequence

import pyro.distributions as dist
import torch
from torch import Tensor

from flowvae.parts.likelihoods._base import LIKELIHOODS, Likelihood

__all__ = ["BernoulliLikelihood"]


@LIKELIHOODS.register("bernoulli")
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
