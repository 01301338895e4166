"""Partitions of a coupling layer: which part ``x_A`` of the input stays unchanged and conditions
the affine map of the other part ``x_B``.

A partition is a small module with ``split(x) -> (x_A, x_B)``, ``merge(x_A, y_B) -> y`` and the
sizes the coupling builds its conditioner from (``in_channels``, ``out_channels``, ``size``) and
its log-scale bound from (``scale_shape``); ``restrict(shift, log_scale)`` may confine the affine
parameters to ``x_B`` (the masked checkerboard). :class:`~flowvae.transforms.AffineCoupling`
does the math with any partition and never asks which kind it has: a new partition is a new
class and one entry of :data:`PARTITIONS` (``docs/api/transforms.md`` shows one).
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple, Type

import torch
from torch import Tensor, nn

__all__ = ["CHECKERBOARDS", "PARTITIONS", "ChannelSplit", "CheckerboardMask", "Partition",
           "SqueezedCheckerboard", "make_partition"]


class Partition(nn.Module):
    """The base of the partitions of a ``(C, H, W)`` image or a ``(D,)`` vector.

    Subclasses set, in their constructor, ``in_channels`` (channels of ``x_A``: the
    conditioner's input), ``out_channels`` (twice the channels of ``x_B``: its shift and
    log-scale), ``size`` (the ``(H, W)`` the conditioner runs at, ``None`` for vectors) and
    ``scale_shape`` (the shape of the coupling's learned log-scale bound), and implement
    :meth:`split` and :meth:`merge`.

    Args:
        shape: the event shape, ``(C, H, W)`` or ``(D,)``.
        parity: 0 or 1, which of the two parts stays unchanged.

    Class data: ``checkerboard`` (whether a multi-scale flow may use it for its checkerboard
    stages, by name in :data:`CHECKERBOARDS`) and ``halvings`` (how often it halves ``H`` and
    ``W`` itself, on top of the flow's squeezes).
    """

    checkerboard = False
    halvings = 0
    in_channels: int
    out_channels: int
    size: Optional[Tuple[int, int]]
    scale_shape: Tuple[int, ...]

    def __init__(self, shape: Sequence[int], parity: int = 0):
        super().__init__()
        if parity not in (0, 1):
            raise ValueError(f"parity must be 0 or 1, got {parity!r}")
        self.shape = tuple(shape)
        self.parity = parity

    def split(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        """``(B, *shape) -> (x_A, x_B)``."""
        raise NotImplementedError

    def merge(self, kept: Tensor, changed: Tensor) -> Tensor:
        """``x_A`` and the transformed ``x_B`` back to ``(B, *shape)``."""
        raise NotImplementedError

    def restrict(self, shift: Tensor, log_scale: Tensor) -> Tuple[Tensor, Tensor]:
        """The affine parameters as they act on ``x_B`` (unchanged by default)."""
        return shift, log_scale

    def _need_image(self) -> Tuple[int, int, int]:
        if len(self.shape) != 3:
            raise ValueError(f"a checkerboard mask needs an image (C, H, W), got {self.shape}")
        return self.shape  # type: ignore[return-value]


class ChannelSplit(Partition):
    """``x_A`` is the first half of the channels (``parity=0``) or the second; for vectors
    ``(D,)`` the first or second half of the features (RealNVP's alternating halves).

    Example:
        >>> import torch
        >>> kept, changed = ChannelSplit((5,), parity=1).split(torch.arange(5.0)[None])
        >>> kept, changed
        (tensor([[2., 3., 4.]]), tensor([[0., 1.]]))
    """

    def __init__(self, shape: Sequence[int], parity: int = 0):
        super().__init__(shape, parity)
        channels = self.shape[0]
        if channels < 2:
            raise ValueError(f"a channel coupling needs at least 2 channels, got {self.shape}")
        self.split_at = channels // 2
        self.in_channels = self.split_at if parity == 0 else channels - self.split_at
        changed = channels - self.in_channels
        self.out_channels = 2 * changed
        self.size = None if len(self.shape) == 1 else tuple(self.shape[1:])
        self.scale_shape = (changed,) + (1,) * (len(self.shape) - 1)

    def split(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        first, second = x[:, : self.split_at], x[:, self.split_at :]
        return (first, second) if self.parity == 0 else (second, first)

    def merge(self, kept: Tensor, changed: Tensor) -> Tensor:
        pair = (kept, changed) if self.parity == 0 else (changed, kept)
        return torch.cat(pair, dim=1)


class CheckerboardMask(Partition):
    """RealNVP's checkerboard at full resolution: ``x_A`` is the image times the checkerboard
    ``b`` (pixels with ``(h + w) % 2 == parity``), the conditioner sees it at full resolution,
    and :meth:`restrict` multiplies the shift and log-scale by ``1 - b``.

    The mask is a buffer (it follows ``.to()``) left out of the state dict: it is a function
    of the shape and the parity.

    Example:
        >>> CheckerboardMask((1, 2, 4)).kept_mask[0]
        tensor([[1., 0., 1., 0.],
                [0., 1., 0., 1.]])
    """

    checkerboard = True

    def __init__(self, shape: Sequence[int], parity: int = 0):
        super().__init__(shape, parity)
        channels, height, width = self._need_image()
        rows = torch.arange(height).view(-1, 1)
        cols = torch.arange(width).view(1, -1)
        kept_mask = ((rows + cols) % 2 == parity).to(torch.get_default_dtype())
        self.register_buffer("kept_mask", kept_mask.expand(channels, -1, -1).clone(),
                             persistent=False)
        self.in_channels, self.out_channels = channels, 2 * channels
        self.size = (height, width)
        self.scale_shape = (channels, 1, 1)

    def split(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        return x * self.kept_mask, x

    def merge(self, kept: Tensor, changed: Tensor) -> Tensor:
        return changed

    def restrict(self, shift: Tensor, log_scale: Tensor) -> Tuple[Tensor, Tensor]:
        changed = 1 - self.kept_mask
        return shift * changed, log_scale * changed


class SqueezedCheckerboard(Partition):
    """The checkerboard of :class:`CheckerboardMask`, but the conditioner sees the ``A``
    pixels as ``2C`` sub-pixel channels at half resolution (as nflows does): a cheaper,
    different function class. Needs even ``H`` and ``W``.

    Example:
        >>> import torch
        >>> x = torch.arange(4.0).view(1, 1, 2, 2)  # [[0, 1], [2, 3]]
        >>> kept, changed = SqueezedCheckerboard((1, 2, 2)).split(x)
        >>> kept.flatten().tolist(), changed.flatten().tolist()
        ([0.0, 3.0], [1.0, 2.0])
    """

    checkerboard = True
    halvings = 1

    def __init__(self, shape: Sequence[int], parity: int = 0):
        super().__init__(shape, parity)
        channels, height, width = self._need_image()
        if height % 2 or width % 2:
            raise ValueError(f"the squeezed checkerboard needs even H and W, got shape {shape}")
        self.in_channels, self.out_channels = 2 * channels, 4 * channels
        self.size = (height // 2, width // 2)
        self.scale_shape = (2 * channels, 1, 1)

    def split(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        b, c, h, w = x.shape
        sub = x.reshape(b, c, h // 2, 2, w // 2, 2)
        # sub-pixels (0,0),(1,1) form one checkerboard class, (0,1),(1,0) the other
        diagonal = torch.stack([sub[:, :, :, 0, :, 0], sub[:, :, :, 1, :, 1]], dim=1)
        anti = torch.stack([sub[:, :, :, 0, :, 1], sub[:, :, :, 1, :, 0]], dim=1)
        kept, changed = (diagonal, anti) if self.parity == 0 else (anti, diagonal)
        return kept.reshape(b, 2 * c, h // 2, w // 2), changed.reshape(b, 2 * c, h // 2, w // 2)

    def merge(self, kept: Tensor, changed: Tensor) -> Tensor:
        b, c2, h, w = kept.shape
        c = c2 // 2
        diagonal, anti = (kept, changed) if self.parity == 0 else (changed, kept)
        diagonal, anti = diagonal.reshape(b, 2, c, h, w), anti.reshape(b, 2, c, h, w)
        top = torch.stack([diagonal[:, 0], anti[:, 0]], dim=-1)  # (b, c, h, w, 2): j = 0, 1
        bottom = torch.stack([anti[:, 1], diagonal[:, 1]], dim=-1)
        return torch.stack([top, bottom], dim=3).reshape(b, c, 2 * h, 2 * w)


#: partitions by name, the one table the builders read: ``ConditionalAffineCoupling(...,
#: partition="masked")``, ``ConditionalRealNVP(..., checkerboard="squeezed")``
PARTITIONS: Dict[str, Type[Partition]] = {
    "channel": ChannelSplit,
    "masked": CheckerboardMask,
    "squeezed": SqueezedCheckerboard,
}
#: the partitions a multi-scale flow's checkerboard stages take (``checkerboard=``)
CHECKERBOARDS = tuple(name for name, cls in PARTITIONS.items() if cls.checkerboard)


def make_partition(name: str, shape: Sequence[int], parity: int = 0) -> Partition:
    """The partition registered as ``name`` in :data:`PARTITIONS`, for ``shape`` and
    ``parity``; a ValueError naming the choices for an unknown name."""
    if name not in PARTITIONS:
        raise ValueError(f"partition must be one of {tuple(PARTITIONS)}, got {name!r}")
    return PARTITIONS[name](shape, parity)
