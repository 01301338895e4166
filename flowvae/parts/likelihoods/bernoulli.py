"""The Bernoulli likelihood of binary images (grey images binarized dynamically)."""

from __future__ import annotations

from typing import Sequence

import pyro.distributions as dist
import torch
from torch import Tensor

from flowvae.parts.likelihoods._base import LIKELIHOODS, Likelihood
from flowvae.validation import check_int

__all__ = ["BernoulliLikelihood"]


@LIKELIHOODS.register("bernoulli")
class BernoulliLikelihood(Likelihood):
    """``p(x|z) = Bernoulli(logits)`` on binary images; grey images are binarized dynamically
    (a fresh ``Bernoulli(x / (data_levels - 1))`` draw per batch).

    Args:
        shape: image shape ``(C, H, W)``.
        data_levels: grey levels of the ``uint8`` images given (the dataset's ``levels``):
            2 takes them as binary ``{0, 1}``, more binarizes them. Declared, never guessed
            from a batch: a dark 8-bit batch of 0s and 1s is still 8-bit.
    """

    takes_data_levels = True

    def __init__(self, shape: Sequence[int], data_levels: int = 256):
        super().__init__(shape)
        self.data_levels = check_int(type(self).__name__, "data_levels", data_levels, minimum=2)
        self.out_channels = self.shape[0]

    def preprocess(self, x: Tensor) -> Tensor:
        x = x.float()
        return x if self.data_levels == 2 else torch.bernoulli(x / (self.data_levels - 1))

    def encoder_input(self, x: Tensor) -> Tensor:
        return 2 * x - 1

    def forward(self, params: Tensor, z: Tensor):
        return dist.Bernoulli(logits=params).to_event(3)
