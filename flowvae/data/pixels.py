"""Pixel preprocessing: dequantization, scaling to the unit interval, binarization.

Datasets store images as ``uint8`` tensors with values in ``{0, ..., levels - 1}`` (``levels = 256``
for 8-bit data, ``2`` for binarized data). Models turn them into floats with these functions, on
the device and with the dtype they choose; the logit transform with its log-det lives in
:mod:`flowvae.transforms.preprocess`.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

__all__ = ["BINARIZE_MODES", "binarize", "dequantize", "to_unit"]

BINARIZE_MODES = ("dynamic", "threshold")
"""Accepted values of ``binarize=``: a fresh Bernoulli draw, or a fixed threshold at one half."""


def _float_dtype(dtype: Optional[torch.dtype]) -> torch.dtype:
    dtype = torch.get_default_dtype() if dtype is None else dtype
    if not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating-point dtype, got {dtype}")
    return dtype


def dequantize(
    x: Tensor,
    *,
    levels: int = 256,
    generator: Optional[torch.Generator] = None,
    dtype: Optional[torch.dtype] = None,
) -> Tensor:
    """Uniform dequantization ``x~ = (x + u) / levels``, ``u ~ U[0, 1)`` elementwise.

    A density on ``x~`` then lower-bounds the probability of the discrete ``x``, so
    ``-log p(x~) / D + log(levels)`` nats per dimension is the comparable bits/dim numerator.
    Rounding can carry ``(levels - 1 + u) / levels`` up to exactly 1 in low precision (float32
    does so for ``u`` within ``2**-17`` of 1); such values are set to the largest float below 1,
    so that the result is always in ``[0, 1)`` and a later logit stays finite.

    Args:
        x: integer-valued tensor of any shape with values in ``{0, ..., levels - 1}``, usually
            ``uint8`` images ``(B, C, H, W)``.
        levels: number of intensity levels (256 for 8-bit data).
        generator: random generator for ``u`` (on ``x``'s device); the global one if None.
        dtype: floating dtype of the result; torch's default dtype if None.

    Returns:
        Tensor of ``x``'s shape and device with values in ``[0, 1)``.

    Example:
        >>> x = torch.tensor([0, 17, 255], dtype=torch.uint8)
        >>> y = dequantize(x)
        >>> bool(((y >= 0) & (y < 1)).all()), torch.floor(y * 256).long().tolist()
        (True, [0, 17, 255])
    """
    dtype = _float_dtype(dtype)
    u = torch.rand(x.shape, generator=generator, dtype=dtype, device=x.device)
    y = (x.to(dtype) + u) / levels
    below_one = 1.0 - torch.finfo(dtype).eps / 2
    return y.clamp_(max=below_one)


def to_unit(x: Tensor, *, levels: int = 256, dtype: Optional[torch.dtype] = None) -> Tensor:
    """Scale integer levels to ``[0, 1]``: ``x / (levels - 1)``, so 0 -> 0 and 255 -> 1.

    Use ``levels=2`` for binarized data (values stay 0 and 1), e.g. as Bernoulli targets.

    Args:
        x: integer-valued tensor with values in ``{0, ..., levels - 1}``.
        levels: number of intensity levels (256 for 8-bit data).
        dtype: floating dtype of the result; torch's default dtype if None.

    Returns:
        Tensor of ``x``'s shape and device with values in ``[0, 1]``.

    Example:
        >>> to_unit(torch.tensor([0, 51, 255], dtype=torch.uint8)).tolist()
        [0.0, 0.2, 1.0]
    """
    dtype = _float_dtype(dtype)
    return x.to(dtype) / (levels - 1)


def binarize(
    x: Tensor,
    *,
    mode: str,
    levels: int = 256,
    generator: Optional[torch.Generator] = None,
) -> Tensor:
    """Binarize grey levels to ``uint8`` values in {0, 1}.

    ``mode="dynamic"`` draws ``Bernoulli(x / (levels - 1))`` independently per pixel (a new
    binarization on every call, as in dynamically binarized MNIST); ``mode="threshold"`` keeps
    the pixels with ``x / (levels - 1) > 1/2`` (for 8-bit data: ``x >= 128``).

    Args:
        x: integer-valued tensor with values in ``{0, ..., levels - 1}``.
        mode: ``"dynamic"`` or ``"threshold"``.
        levels: number of intensity levels of ``x``.
        generator: random generator for ``mode="dynamic"``; the global one if None.

    Returns:
        ``uint8`` tensor of ``x``'s shape and device.

    Example:
        >>> binarize(torch.tensor([0, 127, 128, 255], dtype=torch.uint8), mode="threshold")
        tensor([0, 0, 1, 1], dtype=torch.uint8)
    """
    if mode == "dynamic":
        probs = x.to(torch.float32) / (levels - 1)
        return torch.bernoulli(probs, generator=generator).to(torch.uint8)
    if mode == "threshold":
        # Integer comparison: 2x > levels - 1 is x / (levels - 1) > 1/2 without rounding.
        return (2 * x.to(torch.int64) > levels - 1).to(torch.uint8)
    raise ValueError(f"unknown binarize mode {mode!r}; expected one of {BINARIZE_MODES}")
