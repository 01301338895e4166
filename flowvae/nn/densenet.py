r"""DenseNet blocks with channel attention, srVAE's convolutional trunks (plain ``nn.Module`` s).

A dense layer appends ``growth`` new feature maps to its input,
``x -> concat(x, conv3x3(act(x)))``; a dense block stacks ``L`` of them, so that its output has
``C_in + L * growth`` channels and every layer sees the maps of all the layers before it. A block
may end with squeeze-and-excitation channel attention and a ``1 x 1`` transition convolution to a
requested number of channels. Everything keeps the spatial size.

References:
    Huang, G., Liu, Z., van der Maaten, L. and Weinberger, K. Q. Densely connected convolutional
    networks. CVPR 2017.

    Hu, J., Shen, L. and Sun, G. Squeeze-and-excitation networks. CVPR 2018.

    Gatopoulos, I. and Tomczak, J. M. Self-supervised variational auto-encoders (srVAE). 2020.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor, nn

from flowvae.nn.weightnorm import WNConv2d


def _conv(in_channels: int, out_channels: int, kernel_size: int, weight_norm: bool) -> nn.Module:
    padding = kernel_size // 2
    if weight_norm:
        return WNConv2d(in_channels, out_channels, kernel_size, padding=padding,
                        init_on_first_batch=True)
    return nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding)


class ChannelAttention(nn.Module):
    r"""Squeeze-and-excitation gate ``y = x * sigmoid(W_2 act(W_1 avgpool(x)))`` per channel.

    The global average pool summarises each channel by one number; a two-layer MLP (``1 x 1``
    convolutions, hidden width ``ceil(channels / reduction)``) maps those to one gate in
    ``(0, 1)`` per channel and sample, which rescales the whole channel.

    Args:
        channels: channels of the input and output ``(B, C, H, W)``.
        reduction: ratio of ``channels`` to the MLP's hidden width.
        activation: activation class of the hidden layer.

    Example:
        >>> import torch
        >>> ChannelAttention(8, reduction=4)(torch.randn(2, 8, 5, 5)).shape
        torch.Size([2, 8, 5, 5])
    """

    def __init__(self, channels: int, reduction: int = 16, activation: type = nn.ReLU):
        super().__init__()
        if channels < 1 or reduction < 1:
            raise ValueError(f"need channels >= 1 and reduction >= 1, got {channels}, {reduction}")
        hidden = math.ceil(channels / reduction)
        self.gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(channels, hidden, 1),
            activation(),
            nn.Conv2d(hidden, channels, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gate(x)


class DenseLayer(nn.Module):
    """``(B, C, H, W) -> (B, C + growth, H, W)``: ``concat(x, conv(act(x)))`` (pre-activation).

    Args:
        in_channels: input channels ``C``.
        growth: channels the layer adds.
        activation: activation class applied before the convolution.
        kernel_size: odd kernel size; padding keeps the spatial size.
        weight_norm: use a :class:`~flowvae.nn.weightnorm.WNConv2d` (initialised from the first
            training batch) instead of a plain convolution.

    Example:
        >>> import torch
        >>> DenseLayer(3, growth=4)(torch.randn(2, 3, 6, 6)).shape
        torch.Size([2, 7, 6, 6])
    """

    def __init__(self, in_channels: int, growth: int, activation: type = nn.ELU,
                 kernel_size: int = 3, weight_norm: bool = False):
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd to keep the size, got {kernel_size}")
        self.out_channels = in_channels + growth
        self.net = nn.Sequential(activation(),
                                 _conv(in_channels, growth, kernel_size, weight_norm))

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([x, self.net(x)], dim=1)


class DenseBlock(nn.Module):
    """``num_layers`` :class:`DenseLayer` s, then optionally channel attention and a ``1 x 1``
    transition: ``(B, C_in, H, W) -> (B, C_out, H, W)`` with
    ``C_out = out_channels`` if given, else ``C_in + num_layers * growth``.

    The transition is a plain (linear) ``1 x 1`` convolution: the layers that follow a block
    start with their own activation, and a trunk's last block can emit unbounded outputs.

    Args:
        in_channels: input channels.
        growth: channels each layer adds.
        num_layers: number of dense layers.
        out_channels: channels after the transition; ``None``: no transition.
        activation: activation class of the layers.
        attention: apply :class:`ChannelAttention` to the concatenated maps.
        reduction: the attention's reduction ratio.
        weight_norm: weight-normalised convolutions (see :class:`DenseLayer`).

    Example:
        >>> import torch
        >>> block = DenseBlock(4, growth=3, num_layers=2)
        >>> block.out_channels, block(torch.randn(2, 4, 5, 5)).shape
        (10, torch.Size([2, 10, 5, 5]))
        >>> DenseBlock(4, 3, 2, out_channels=6)(torch.randn(2, 4, 5, 5)).shape
        torch.Size([2, 6, 5, 5])
    """

    def __init__(self, in_channels: int, growth: int, num_layers: int,
                 out_channels: Optional[int] = None, activation: type = nn.ELU,
                 attention: bool = True, reduction: int = 16, weight_norm: bool = False):
        super().__init__()
        if num_layers < 1 or growth < 1:
            raise ValueError(f"need num_layers >= 1 and growth >= 1, got {num_layers}, {growth}")
        layers: list = []
        width = in_channels
        for _ in range(num_layers):
            layers.append(DenseLayer(width, growth, activation, weight_norm=weight_norm))
            width = layers[-1].out_channels
        if attention:
            layers.append(ChannelAttention(width, reduction))
        if out_channels is not None:
            layers.append(_conv(width, out_channels, 1, weight_norm))
            width = out_channels
        self.out_channels = width
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class DenseNet(nn.Module):
    """A constant-resolution trunk ``(*batch, C_in, H, W) -> (*batch, C_out, H, W)``: a ``3 x 3``
    stem to ``hidden_channels``, then ``num_blocks`` :class:`DenseBlock` s, each with a transition
    back to ``hidden_channels`` except the last, whose transition gives ``out_channels``
    (linear, so the output can parametrise a distribution or feed a resampling layer).

    Any leading batch dims (Pyro plates, vectorized particles) are flattened and restored.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        hidden_channels: width between blocks.
        growth: channels each dense layer adds.
        num_layers: dense layers per block.
        num_blocks: number of blocks (at least 1).
        activation: activation class.
        attention: channel attention at the end of each block.
        reduction: the attention's reduction ratio.
        weight_norm: weight-normalised convolutions, each initialised from the statistics of
            the first training batch (Salimans & Kingma): the stack then starts with unit-scale
            activations at every layer.

    Example:
        >>> import torch
        >>> net = DenseNet(1, 6, hidden_channels=8, growth=4, num_layers=2, num_blocks=2)
        >>> net(torch.randn(3, 2, 1, 8, 8)).shape
        torch.Size([3, 2, 6, 8, 8])
    """

    def __init__(self, in_channels: int, out_channels: int, hidden_channels: int = 64,
                 growth: int = 32, num_layers: int = 4, num_blocks: int = 2,
                 activation: type = nn.ELU, attention: bool = True, reduction: int = 16,
                 weight_norm: bool = False):
        super().__init__()
        if num_blocks < 1:
            raise ValueError(f"num_blocks must be >= 1, got {num_blocks}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        blocks: list = [_conv(in_channels, hidden_channels, 3, weight_norm)]
        for i in range(num_blocks):
            width = out_channels if i == num_blocks - 1 else hidden_channels
            blocks.append(DenseBlock(hidden_channels, growth, num_layers, width, activation,
                                     attention, reduction, weight_norm))
        self.net = nn.Sequential(*blocks)

    def forward(self, x: Tensor) -> Tensor:
        batch = x.shape[:-3]
        out = self.net(x.reshape(-1, *x.shape[-3:]))
        return out.reshape(*batch, *out.shape[-3:])
