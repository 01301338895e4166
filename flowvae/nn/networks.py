"""Encoders and decoders sized from the data shape (plain ``nn.Module``s, no Pyro).

Every network here accepts any number of leading batch dims (Pyro plates and vectorized
particles add them): they are flattened for the layers and restored on the output.
"""

from __future__ import annotations

import math
from typing import Sequence, Tuple

from torch import Tensor, nn

from flowvae.nn.resnet import ResidualBlock


def _leading(x: Tensor, event_ndim: int) -> Tuple[Tuple[int, ...], Tensor]:
    batch = tuple(x.shape[: x.dim() - event_ndim])
    return batch, x.reshape(-1, *x.shape[x.dim() - event_ndim :])


class MLP(nn.Sequential):
    """``Linear -> act -> … -> Linear``; the last layer has no activation.

    Example:
        >>> import torch
        >>> MLP(3, 2, hidden_features=8, num_layers=2)(torch.randn(4, 3)).shape
        torch.Size([4, 2])
    """

    def __init__(
        self, in_features: int, out_features: int, hidden_features: int = 256,
        num_layers: int = 2, activation: type = nn.ReLU,
    ):
        layers: list = []
        width = in_features
        for _ in range(num_layers):
            layers += [nn.Linear(width, hidden_features), activation()]
            width = hidden_features
        layers.append(nn.Linear(width, out_features))
        super().__init__(*layers)


class MLPEncoder(nn.Module):
    """Images ``(*batch, C, H, W)`` (or vectors) to ``(*batch, out_features)`` by an MLP.

    Example:
        >>> import torch
        >>> MLPEncoder((1, 8, 8), 6, hidden_features=16)(torch.rand(2, 5, 1, 8, 8)).shape
        torch.Size([2, 5, 6])
    """

    def __init__(self, shape: Sequence[int], out_features: int, hidden_features: int = 256,
                 num_layers: int = 2):
        super().__init__()
        self.shape = tuple(shape)
        self.net = MLP(math.prod(self.shape), out_features, hidden_features, num_layers)

    def forward(self, x: Tensor) -> Tensor:
        batch, flat = _leading(x, len(self.shape))
        return self.net(flat.flatten(1)).reshape(*batch, -1)


class MLPDecoder(nn.Module):
    """Latents ``(*batch, in_features)`` to ``(*batch, out_channels, H, W)`` by an MLP.

    Example:
        >>> import torch
        >>> MLPDecoder(4, (2, 8, 8), hidden_features=16)(torch.randn(3, 4)).shape
        torch.Size([3, 2, 8, 8])
    """

    def __init__(self, in_features: int, shape: Sequence[int], hidden_features: int = 256,
                 num_layers: int = 2):
        super().__init__()
        self.shape = tuple(shape)
        self.net = MLP(in_features, math.prod(self.shape), hidden_features, num_layers)

    def forward(self, z: Tensor) -> Tensor:
        batch, flat = _leading(z, 1)
        return self.net(flat).reshape(*batch, *self.shape)


def _halvings(height: int, width: int, limit: int) -> int:
    count = 0
    while count < limit and height % 2 == 0 and width % 2 == 0 and min(height, width) > 4:
        height, width, count = height // 2, width // 2, count + 1
    return count


class ConvEncoder(nn.Module):
    """Images ``(*batch, C, H, W)`` to ``(*batch, out_features)``: stride-2 convolutions with
    residual blocks, halving the resolution while it stays even and above 4 (``28 -> 14 -> 7``,
    ``8 -> 4``), ``channels`` doubling at each halving, then a linear layer.

    Example:
        >>> import torch
        >>> ConvEncoder((1, 28, 28), 10, channels=8)(torch.rand(3, 1, 28, 28)).shape
        torch.Size([3, 10])
    """

    def __init__(self, shape: Sequence[int], out_features: int, channels: int = 32,
                 max_halvings: int = 3, blocks_per_stage: int = 1):
        super().__init__()
        self.shape = tuple(shape)
        c, h, w = self.shape
        layers: list = [nn.Conv2d(c, channels, 3, padding=1)]
        width = channels
        for _ in range(_halvings(h, w, max_halvings)):
            layers += [ResidualBlock(width) for _ in range(blocks_per_stage)]
            layers += [nn.ReLU(), nn.Conv2d(width, 2 * width, 4, stride=2, padding=1)]
            width, h, w = 2 * width, h // 2, w // 2
        layers += [ResidualBlock(width) for _ in range(blocks_per_stage)]
        layers += [nn.ReLU(), nn.Flatten(), nn.Linear(width * h * w, out_features)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        batch, flat = _leading(x, 3)
        return self.net(flat).reshape(*batch, -1)


class ConvDecoder(nn.Module):
    """Latents ``(*batch, in_features)`` to ``(*batch, out_channels, H, W)``: a linear layer to a
    small map, then transposed convolutions doubling it up to ``(H, W)`` (the mirror of
    :class:`ConvEncoder`), a residual block per stage and a final 3x3 convolution.

    Example:
        >>> import torch
        >>> ConvDecoder(4, (2, 28, 28), channels=8)(torch.randn(3, 4)).shape
        torch.Size([3, 2, 28, 28])
    """

    def __init__(self, in_features: int, shape: Sequence[int], channels: int = 32,
                 max_halvings: int = 3, blocks_per_stage: int = 1):
        super().__init__()
        self.shape = tuple(shape)
        out_channels, h, w = self.shape
        stages = _halvings(h, w, max_halvings)
        width = channels * 2**stages
        self.start = (width, h >> stages, w >> stages)
        self.linear = nn.Linear(in_features, math.prod(self.start))
        layers: list = []
        for _ in range(stages):
            layers += [ResidualBlock(width) for _ in range(blocks_per_stage)]
            layers += [nn.ReLU(), nn.ConvTranspose2d(width, width // 2, 4, stride=2, padding=1)]
            width //= 2
        layers += [ResidualBlock(width) for _ in range(blocks_per_stage)]
        layers += [nn.ReLU(), nn.Conv2d(width, out_channels, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        batch, flat = _leading(z, 1)
        return self.net(self.linear(flat).view(-1, *self.start)).reshape(*batch, *self.shape)
