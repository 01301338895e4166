"""Pixel preprocessing with exact log-determinants."""

from __future__ import annotations

import math
from typing import Optional

import torch
from nflows.transforms.base import InputOutsideDomain, Transform
from pyro.distributions import is_validation_enabled
from torch import Tensor
from torch.nn import functional as F

from flowvae.validation import check_floating


class LogitTransform(Transform):
    r"""Dequantized pixels in ``[0, 1]`` to logit space (data -> noise, as in nflows).

    ``y = logit(s)``, ``s = alpha + (1 - 2 alpha) x``, with
    ``log|dy/dx| = sum log((1 - 2 alpha) / (s (1 - s)))`` over the event, shape ``(B,)``.
    A flow on ``y`` plus this transform gives the density of the dequantized image ``x``, from
    which bits/dim of the 8-bit image follow (``DESIGN.md`` section 2).

    The bijection's domain is ``(low, high) = (-alpha / (1 - 2 alpha), (1 - alpha) /
    (1 - 2 alpha))``, a little wider than ``[0, 1]``. It is computed from the distances to the
    ends, ``y = log(x - low) - log(high - x)`` and ``x = low + sigmoid(y) / (1 - 2 alpha)``
    (or ``high - sigmoid(-y) / (1 - 2 alpha)`` for ``y > 0``), so that nothing cancels near
    either end. Past about ``y = 16.7`` or ``y = -19.5`` in float32 (alpha 0.05) ``inverse`` returns
    an end of the domain exactly; ``forward`` scores an end as the largest logit the dtype
    resolves there (a distance to the end of a quarter of the end's float spacing), so that
    every output of ``inverse`` can be scored again, with a finite log-determinant. With
    Pyro's validation on (``pyro.enable_validation``, the default), inputs outside
    ``[low, high]`` or NaN raise ``InputOutsideDomain``; with it off, ``forward`` reads no
    value on the host (no device synchronisation) and such inputs give NaN.

    Args:
        alpha: the margin that keeps the logit finite at 0 and 1 (RealNVP: 0.05).

    Example:
        >>> import torch
        >>> t = LogitTransform(alpha=0.05)
        >>> x = torch.rand(2, 1, 4, 4)
        >>> y, logabsdet = t(x)
        >>> torch.allclose(t.inverse(y)[0], x, atol=1e-6), logabsdet.shape
        (True, torch.Size([2]))
        >>> saturated = t.inverse(torch.full((1, 3), 1e3))[0]  # exactly the end, `high`
        >>> y, logabsdet = t(saturated)  # scored again, a quarter-spacing inside the end
        >>> round(y.max().item(), 2), bool(logabsdet.isfinite().all())
        (17.38, True)
    """

    def __init__(self, alpha: float = 0.05):
        super().__init__()
        if not 0 <= alpha < 0.5:
            raise ValueError(f"alpha must be in [0, 0.5), got {alpha}")
        self.alpha = alpha
        self.width = 1 / (1 - 2 * alpha)  # high - low
        self.low, self.high = -alpha * self.width, (1 - alpha) * self.width

    def forward(self, inputs: Tensor, context: Optional[Tensor] = None):
        check_floating(type(self).__name__, "inputs", inputs)  # before finfo reads the dtype
        if is_validation_enabled():
            self._check_domain(inputs)
        finfo = torch.finfo(inputs.dtype)
        from_low, to_high = inputs - self.low, self.high - inputs
        # an end itself is where inverse saturates: score it a quarter-spacing inside
        from_low = from_low.masked_fill(from_low == 0, max(abs(self.low) * finfo.eps / 4,
                                                           finfo.tiny))
        to_high = to_high.masked_fill(to_high == 0, self.high * finfo.eps / 4)
        log_low, log_high = torch.log(from_low), torch.log(to_high)
        outputs = log_low - log_high
        logabsdet = math.log(self.width) - log_low - log_high
        return outputs, logabsdet.flatten(1).sum(1)

    def inverse(self, inputs: Tensor, context: Optional[Tensor] = None):
        check_floating(type(self).__name__, "inputs", inputs)
        # from the nearer end, so that the sigmoid never rounds to 1
        outputs = torch.where(inputs < 0, self.low + self.width * torch.sigmoid(inputs),
                              self.high - self.width * torch.sigmoid(-inputs))
        # log s + log(1 - s) = -softplus(-y) - softplus(y), stable for large |y|
        logabsdet = -F.softplus(-inputs) - F.softplus(inputs) + math.log(self.width)
        return outputs, logabsdet.flatten(1).sum(1)

    def _check_domain(self, inputs: Tensor) -> None:
        if not ((inputs >= self.low) & (inputs <= self.high)).all():
            raise InputOutsideDomain(
                f"LogitTransform(alpha={self.alpha}) is defined on [{self.low:.4g}, "
                f"{self.high:.4g}], got inputs in [{inputs.min().item():.4g}, "
                f"{inputs.max().item():.4g}]"
                + (" and NaN" if inputs.isnan().any() else "")
            )
