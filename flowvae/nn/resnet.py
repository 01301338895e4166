"""Convolutional ResNets (plain ``nn.Module``s, no Pyro)."""

from __future__ import annotations

from torch import Tensor, nn


class ResidualBlock(nn.Module):
    """Pre-activation residual block ``x + conv(relu(conv(relu(x))))`` at constant shape.

    No batch normalisation: inside a coupling layer it would make the flow depend on the batch,
    so that ``inverse(forward(x))`` differs between training and evaluation mode.

    Args:
        channels: input and output channels.
        kernel_size: odd kernel size; padding keeps the spatial size.

    Example:
        >>> import torch
        >>> ResidualBlock(8)(torch.randn(2, 8, 5, 5)).shape
        torch.Size([2, 8, 5, 5])
    """

    def __init__(self, channels: int, kernel_size: int = 3):
        super().__init__()
        padding = kernel_size // 2
        self.net = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(channels, channels, kernel_size, padding=padding),
            nn.ReLU(),
            nn.Conv2d(channels, channels, kernel_size, padding=padding),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.net(x)


class ConvResNet(nn.Module):
    """``in_channels -> out_channels`` at constant spatial size: a 3x3 stem, residual blocks, ReLU.

    Args:
        in_channels: channels of the input.
        out_channels: channels of the output (the ResNet's width).
        num_blocks: number of :class:`ResidualBlock`.

    Example:
        >>> import torch
        >>> ConvResNet(1, 16, num_blocks=2)(torch.randn(3, 1, 8, 8)).shape
        torch.Size([3, 16, 8, 8])
    """

    def __init__(self, in_channels: int, out_channels: int, num_blocks: int = 2):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, padding=1),
            *[ResidualBlock(out_channels) for _ in range(num_blocks)],
            nn.ReLU(),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)
