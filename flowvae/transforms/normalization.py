"""Activation normalisation with data-dependent initialisation."""

from __future__ import annotations

from typing import Optional

import torch
from nflows.transforms.normalization import ActNorm as _NflowsActNorm
from torch import Tensor

from flowvae.validation import check_init_batch


class ActNorm(_NflowsActNorm):
    """nflows' ActNorm (per-channel ``y = exp(log_scale) * x + shift``, data -> noise) whose
    data-dependent initialisation survives a batch of one and constant channels, and whose
    forward pass reads no tensor on the host once it is initialised (so it runs on any device,
    ``meta`` included, without a host synchronisation per call).

    On the first forward pass in training mode, ``log_scale`` and ``shift`` are set so that the
    outputs have zero mean and unit variance per channel. Coupling flows without such a
    normalisation often diverge to NaN (normflows#73, rosinality/glow-pytorch#25). The
    ``initialized`` buffer (in the state dict) is written in place, on the module's device.

    Args:
        features: channels (images ``(B, C, H, W)``) or features (vectors ``(B, D)``).
        eps: added to the standard deviation at initialisation.

    Example:
        >>> import torch
        >>> norm = ActNorm(3)
        >>> y, logabsdet = norm(5 + 2 * torch.randn(500, 3))
        >>> round(y.std().item(), 1), logabsdet.shape, bool(norm.initialized)
        (1.0, torch.Size([500]), True)
    """

    def __init__(self, features: int, eps: float = 1e-6):
        super().__init__(features)
        self.eps = eps
        # the host's copy of the buffer (None: unknown, after loading a state dict): reading a
        # device tensor's truth in every forward pass would synchronise with the device
        self._known_initialized: Optional[bool] = False

    def forward(self, inputs: Tensor, context: Optional[Tensor] = None):
        if inputs.dim() not in (2, 4):
            raise ValueError(f"expected a 2D or 4D input, got shape {tuple(inputs.shape)}")
        if self.training and not self._known_initialized:
            if self._known_initialized is None and bool(self.initialized):  # read once
                self._known_initialized = True
            else:
                self._initialize(inputs)
        scale, shift = self._broadcastable_scale_shift(inputs)
        outputs = scale * inputs + shift
        positions = inputs.shape[2] * inputs.shape[3] if inputs.dim() == 4 else 1
        logabsdet = positions * self.log_scale.sum() * outputs.new_ones(inputs.shape[0])
        return outputs, logabsdet

    def _initialize(self, inputs: Tensor) -> None:
        check_init_batch(type(self).__name__, inputs)  # else NaN scale and shift, silently
        if inputs.dim() == 4:
            inputs = inputs.transpose(0, 1).reshape(inputs.shape[1], -1).t()
        with torch.no_grad():
            std = inputs.std(dim=0, unbiased=False) + self.eps
            self.log_scale.copy_(-torch.log(std))
            self.shift.copy_(-inputs.mean(dim=0) / std)
            self.initialized.fill_(True)
        self._known_initialized = True

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # the loaded flag may be either: read the buffer, once, in the next training pass
        self._known_initialized = None
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
