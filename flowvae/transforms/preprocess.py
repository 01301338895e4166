"""Pixel preprocessing with exact log-determinants."""

from __future__ import annotations

import math
from typing import Optional

import torch
from nflows.transforms.base import InputOutsideDomain, Transform
from torch import Tensor
from torch.nn import functional as F


class LogitTransform(Transform):
    r"""Dequantized pixels in ``[0, 1]`` to logit space (data -> noise, as in nflows).

    ``y = logit(s)``, ``s = alpha + (1 - 2 alpha) x``, with
    ``log|dy/dx| = sum log((1 - 2 alpha) / (s (1 - s)))`` over the event, shape ``(B,)``.
    A flow on ``y`` plus this transform gives the density of the dequantized image ``x``, from
    which bits/dim of the 8-bit image follow (``DESIGN.md`` section 2).

    The bijection's domain is ``(-alpha / (1 - 2 alpha), (1 - alpha) / (1 - 2 alpha))``, a
    little wider than ``[0, 1]``, so that every output of ``inverse`` can be scored again.

    Args:
        alpha: the margin that keeps the logit finite at 0 and 1 (RealNVP: 0.05).

    Example:
        >>> import torch
        >>> t = LogitTransform(alpha=0.05)
        >>> x = torch.rand(2, 1, 4, 4)
        >>> y, logabsdet = t(x)
        >>> torch.allclose(t.inverse(y)[0], x, atol=1e-6), logabsdet.shape
        (True, torch.Size([2]))
    """

    def __init__(self, alpha: float = 0.05):
        super().__init__()
        if not 0 <= alpha < 0.5:
            raise ValueError(f"alpha must be in [0, 0.5), got {alpha}")
        self.alpha = alpha

    def forward(self, inputs: Tensor, context: Optional[Tensor] = None):
        s = self.alpha + (1 - 2 * self.alpha) * inputs
        if s.min() <= 0 or s.max() >= 1:
            low, high = -self.alpha / (1 - 2 * self.alpha), (1 - self.alpha) / (1 - 2 * self.alpha)
            raise InputOutsideDomain(
                f"LogitTransform(alpha={self.alpha}) is defined on ({low:.4g}, {high:.4g}), "
                f"got inputs in [{inputs.min().item():.4g}, {inputs.max().item():.4g}]"
            )
        outputs = torch.log(s) - torch.log1p(-s)
        logabsdet = math.log(1 - 2 * self.alpha) - torch.log(s) - torch.log1p(-s)
        return outputs, logabsdet.flatten(1).sum(1)

    def inverse(self, inputs: Tensor, context: Optional[Tensor] = None):
        s = torch.sigmoid(inputs)
        outputs = (s - self.alpha) / (1 - 2 * self.alpha)
        # log s + log(1 - s) = -softplus(-y) - softplus(y), stable for large |y|
        logabsdet = -F.softplus(-inputs) - F.softplus(inputs) - math.log(1 - 2 * self.alpha)
        return outputs, logabsdet.flatten(1).sum(1)
