"""The multi-scale architecture of RealNVP (Dinh et al. 2017, section 3.6): the 2x2 squeeze and
one level of the flow, which factors out half of the channels."""

from __future__ import annotations

from typing import Optional

import torch
from nflows.transforms.base import Transform
from torch import Tensor

__all__ = ["Scale", "squeeze", "unsqueeze"]


def squeeze(x: Tensor) -> Tensor:
    """Space-to-depth by 2: ``(B, C, H, W) -> (B, 4C, H/2, W/2)``.

    Output channel ``(2 i + j) C + c`` holds pixel ``(2 h + i, 2 w + j)`` of input channel ``c``,
    so the first ``2C`` channels are the top sub-pixel row of every 2x2 block.
    """
    if x.dim() != 4 or x.shape[2] % 2 or x.shape[3] % 2:
        raise ValueError(f"squeeze: expected (B, C, H, W) with even H and W, got {tuple(x.shape)}")
    b, c, h, w = x.shape
    x = x.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 3, 5, 1, 2, 4)
    return x.reshape(b, 4 * c, h // 2, w // 2)


def unsqueeze(x: Tensor) -> Tensor:
    """Inverse of :func:`squeeze`: ``(B, 4C, H, W) -> (B, C, 2H, 2W)``."""
    if x.dim() != 4 or x.shape[1] % 4:
        raise ValueError(
            f"unsqueeze: expected (B, 4C, H, W) with channels divisible by 4, got {tuple(x.shape)}"
        )
    b, c4, h, w = x.shape
    c = c4 // 4
    x = x.reshape(b, 2, 2, c, h, w).permute(0, 3, 4, 1, 5, 2)
    return x.reshape(b, c, 2 * h, 2 * w)


class Scale(Transform):
    """One level of the multi-scale flow: ``before`` (couplings at this resolution), a squeeze,
    ``after`` (couplings on the squeezed image), half the channels factored out, ``rest`` (the
    next levels) on the other half; the factored half is put back in place, so that the output
    has the input's shape ``(B, C, H, W)`` and ``logabsdet`` is ``(B,)``. Data -> noise."""

    def __init__(self, before: Transform, after: Transform, rest: Transform):
        super().__init__()
        self.before, self.after, self.rest = before, after, rest

    def forward(self, inputs: Tensor, context: Optional[Tensor] = None):
        x, logdet = self.before(inputs, context)
        x, logdet_after = self.after(squeeze(x), context)
        factored, x = x.chunk(2, dim=1)
        x, logdet_rest = self.rest(x, context)
        return unsqueeze(torch.cat([factored, x], dim=1)), logdet + logdet_after + logdet_rest

    def inverse(self, inputs: Tensor, context: Optional[Tensor] = None):
        factored, x = squeeze(inputs).chunk(2, dim=1)
        x, logdet_rest = self.rest.inverse(x, context)
        x, logdet_after = self.after.inverse(torch.cat([factored, x], dim=1), context)
        x, logdet = self.before.inverse(unsqueeze(x), context)
        return x, logdet + logdet_after + logdet_rest
