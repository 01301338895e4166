"""Activation normalisation with data-dependent initialisation."""

from __future__ import annotations

import torch
from nflows.transforms.normalization import ActNorm as _NflowsActNorm


class ActNorm(_NflowsActNorm):
    """nflows' ActNorm (per-channel ``y = exp(log_scale) * x + shift``, data -> noise) whose
    data-dependent initialisation survives a batch of one and constant channels.

    On the first forward pass in training mode, ``log_scale`` and ``shift`` are set so that the
    outputs have zero mean and unit variance per channel. Coupling flows without such a
    normalisation often diverge to NaN (normflows#73, rosinality/glow-pytorch#25).

    Args:
        features: channels (images ``(B, C, H, W)``) or features (vectors ``(B, D)``).
        eps: added to the standard deviation at initialisation.

    Example:
        >>> import torch
        >>> norm = ActNorm(3)
        >>> y, logabsdet = norm(5 + 2 * torch.randn(500, 3))
        >>> round(y.std().item(), 1), logabsdet.shape
        (1.0, torch.Size([500]))
    """

    def __init__(self, features: int, eps: float = 1e-6):
        super().__init__(features)
        self.eps = eps

    def _initialize(self, inputs: torch.Tensor) -> None:
        if inputs.dim() == 4:
            inputs = inputs.transpose(0, 1).reshape(inputs.shape[1], -1).t()
        with torch.no_grad():
            std = inputs.std(dim=0, unbiased=False) + self.eps
            self.log_scale.data = -torch.log(std)
            self.shift.data = -inputs.mean(dim=0) / std
            self.initialized.data = torch.tensor(True, dtype=torch.bool)
