r"""A small conditional gated PixelCNN: masked convolutions (types A and B), gated activations.

Pixels are ordered in raster order (row by row, left to right) and, within a pixel, channel by
channel (``c = 0, 1, ...``). A :class:`MaskedConv2d` of type ``A`` lets output position ``i``
see the inputs strictly before ``i``; type ``B`` also lets it see its own position, which
hidden layers need (their position ``i`` already only summarises inputs before ``i``).
Channels are assigned to the image channels as ``k mod C``, so that within a pixel, feature
``k`` may read the inputs of image channels ``<= k mod C`` (``B``) or ``< k mod C`` (``A``).

Each gated block computes (van den Oord et al., 2016a)

.. math::

    h \leftarrow h + W_o \ast \big(\tanh(W_f \ast h + V_f c) \odot
        \sigma(W_g \ast h + V_g c)\big)

with ``W`` masked type-``B`` convolutions and ``V`` unmasked ``1 x 1`` convolutions of the
conditioning map ``c`` (from ``z``). This is the single-stack masked PixelCNN (it has the
well-known blind spot to the upper right of each pixel), not the two-stack gated PixelCNN.

References:
    van den Oord, A., Kalchbrenner, N. and Kavukcuoglu, K. Pixel recurrent neural networks.
    ICML 2016 (2016b).

    van den Oord, A., Kalchbrenner, N., Vinyals, O., Espeholt, L., Graves, A. and
    Kavukcuoglu, K. Conditional image generation with PixelCNN decoders. NeurIPS 2016 (2016a).
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

MASK_TYPES = ("A", "B")


def _groups(channels: int, image_channels: int) -> Tensor:
    return torch.arange(channels) % image_channels


class MaskedConv2d(nn.Conv2d):
    """A ``'same'``-padded convolution whose kernel is masked to respect the raster order.

    Output position ``(c, y, x)`` reads input positions ``(c', y', x')`` with ``y' < y``, or
    ``y' = y`` and ``x' < x``, or the same pixel and ``group(c') < group(c)`` (type ``A``) /
    ``<=`` (type ``B``), where ``group(k) = k mod image_channels``.

    Args:
        in_channels, out_channels: as for :class:`torch.nn.Conv2d`.
        kernel_size: an odd square kernel size.
        mask_type: ``"A"`` (first layer: excludes the current position) or ``"B"``.
        image_channels: ``C`` of the modelled image, for the channel ordering.

    Example:
        >>> import torch
        >>> conv = MaskedConv2d(1, 4, 3, "A")
        >>> conv.mask[0, 0]
        tensor([[1., 1., 1.],
                [1., 0., 0.],
                [0., 0., 0.]])
        >>> conv(torch.rand(2, 1, 5, 5)).shape
        torch.Size([2, 4, 5, 5])
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, mask_type: str,
                 image_channels: int = 1):
        if mask_type not in MASK_TYPES:
            raise ValueError(f"mask_type must be one of {MASK_TYPES}, got {mask_type!r}")
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        self.mask_type = mask_type
        k = kernel_size // 2
        mask = torch.zeros(out_channels, in_channels, kernel_size, kernel_size)
        mask[:, :, :k] = 1
        mask[:, :, k, :k] = 1
        g_out = _groups(out_channels, image_channels)[:, None]
        g_in = _groups(in_channels, image_channels)[None, :]
        centre = g_in < g_out if mask_type == "A" else g_in <= g_out
        mask[:, :, k, k] = centre.to(mask.dtype)
        self.register_buffer("mask", mask)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, self.stride, self.padding)


class GatedBlock(nn.Module):
    """``h + W_o * (tanh(W_f * h + V_f c) ⊙ sigmoid(W_g * h + V_g c))`` (module docstring), with
    ``W_f, W_g`` one masked type-``B`` convolution and ``W_o`` a masked ``1 x 1`` one."""

    def __init__(self, channels: int, context_channels: Optional[int], kernel_size: int = 3,
                 image_channels: int = 1):
        super().__init__()
        if channels % image_channels:
            raise ValueError(f"channels ({channels}) must be a multiple of the image's "
                             f"{image_channels} channels")
        self.conv = MaskedConv2d(channels, 2 * channels, kernel_size, "B", image_channels)
        self.cond = (None if context_channels is None
                     else nn.Conv2d(context_channels, 2 * channels, 1, bias=False))
        self.out = MaskedConv2d(channels, channels, 1, "B", image_channels)

    def forward(self, h: Tensor, context: Optional[Tensor] = None) -> Tensor:
        a = self.conv(h)
        if self.cond is not None:
            a = a + self.cond(context)
        f, g = a.chunk(2, dim=1)
        return h + self.out(torch.tanh(f) * torch.sigmoid(g))


class ConditionalPixelCNN(nn.Module):
    r"""Logits of ``p(x_i | x_{<i}, c)`` for every pixel and channel of an image, in one pass.

    A type-``A`` ``kernel_size`` convolution, ``num_blocks`` :class:`GatedBlock` s, then two
    masked ``1 x 1`` layers with ReLUs. ``levels = 2`` gives one Bernoulli logit per value,
    ``levels > 2`` a ``levels``-way categorical over ``{0, 1/(L-1), ..., 1}``.

    Shapes: ``x`` ``(N, C, H, W)`` with values in ``[0, 1]`` (``k / (levels - 1)``), the
    conditioning map ``context`` ``(N, context_channels, H, W)``; output ``(N, C, H, W)``
    (``levels = 2``) or ``(N, C, levels, H, W)``. Output ``(c, y, x)`` depends only on inputs
    before ``(c, y, x)`` in the order of the module docstring; ``rows_above`` is how many rows
    above its own row an output can see, which exact cropped sampling uses.

    Args:
        shape: image shape ``(C, H, W)``.
        levels: number of values per channel (2: binary).
        context_channels: channels of the conditioning map, or ``None`` (unconditional).
        hidden_channels: width of the gated blocks (a multiple of ``C``).
        num_blocks: number of gated blocks.
        kernel_size: the first (type ``A``) layer's kernel size.
        block_kernel_size: the gated blocks' kernel size.

    Example:
        >>> import torch
        >>> net = ConditionalPixelCNN((1, 6, 6), levels=2, context_channels=3,
        ...                           hidden_channels=8, num_blocks=2)
        >>> net(torch.rand(4, 1, 6, 6).round(), torch.randn(4, 3, 6, 6)).shape
        torch.Size([4, 1, 6, 6])
        >>> net.rows_above
        5
    """

    def __init__(self, shape: Sequence[int], levels: int = 2,
                 context_channels: Optional[int] = None, hidden_channels: int = 32,
                 num_blocks: int = 4, kernel_size: int = 7, block_kernel_size: int = 3):
        super().__init__()
        self.shape = tuple(int(s) for s in shape)
        if len(self.shape) != 3:
            raise ValueError(f"shape must be (C, H, W), got {self.shape}")
        if levels < 2:
            raise ValueError(f"levels must be >= 2, got {levels}")
        c = self.shape[0]
        self.levels = levels
        self.context_channels = context_channels
        self.values_per_channel = 1 if levels == 2 else levels
        self.input = MaskedConv2d(c, hidden_channels, kernel_size, "A", c)
        self.blocks = nn.ModuleList(
            GatedBlock(hidden_channels, context_channels, block_kernel_size, c)
            for _ in range(num_blocks))
        self.head = nn.Sequential(
            nn.ReLU(), MaskedConv2d(hidden_channels, hidden_channels, 1, "B", c), nn.ReLU(),
            MaskedConv2d(hidden_channels, self.values_per_channel * c, 1, "B", c))
        self.rows_above = kernel_size // 2 + num_blocks * (block_kernel_size // 2)

    def forward(self, x: Tensor, context: Optional[Tensor] = None) -> Tensor:
        if (context is None) != (self.context_channels is None):
            raise ValueError("pass a context exactly when context_channels was given")
        h = self.input(2 * x - 1)
        for block in self.blocks:
            h = block(h, context)
        out = self.head(h)
        if self.levels == 2:
            return out
        n, _, height, width = out.shape
        # output channel k = l * C + c belongs to image channel k mod C
        return out.view(n, self.levels, self.shape[0], height, width).transpose(1, 2)
