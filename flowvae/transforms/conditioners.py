"""Conditioners: networks mapping the unchanged part of a coupling (and a context) to its
shift and log-scale parameters.

Every conditioner here has the signature ``conditioner(x_identity, context) -> h`` with ``h`` of
``out_channels`` channels (``out_features`` for vectors) at the spatial size of ``x_identity``,
an attribute ``context_features`` (``None`` when it takes no context), and a zero-initialised last
layer so that the coupling it drives starts as the identity.
"""

from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
from torch import Tensor, nn

from flowvae.nn.resnet import ConvResNet
from flowvae.validation import check_int


def _check_sizes(owner: str, size: Optional[Tuple[int, int]] = None, **counts) -> None:
    """``counts`` as ``name=(value, minimum)``; ``size`` a pair of positive integers."""
    for name, (value, minimum) in counts.items():
        check_int(owner, name, value, minimum, optional=name == "context_features")
    if size is not None:
        if len(tuple(size)) != 2:
            raise ValueError(f"{owner}: size: expected (H, W), got {size!r}")
        for i, value in enumerate(size):
            check_int(owner, f"size[{i}]", value)


def _conv_layout(x: Tensor) -> Tensor:
    # oneDNN runs CPU convolutions on NHWC (channels_last) without per-call reorders:
    # measured 5-45% faster conditioners (docs/benchmarks.md); GPUs keep their default
    return x.contiguous(memory_format=torch.channels_last) if x.device.type == "cpu" else x


def _zero_init(layer: nn.Module) -> nn.Module:
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


class ContextDecoder(nn.Module):
    """The VAPNEV context network ``G``: a context vector up to a ``channels x H x W`` map.

    A linear layer makes the smallest map reachable by halving ``(H, W)`` (``1 x 1`` when both
    are powers of two, ``7 x 7`` for ``28 x 28``); transposed convolutions double it back up.

    Args:
        context_features: width of the context vector.
        channels: channels of the output map (the conditioner width ``k``).
        size: ``(H, W)`` of the output map.

    Shapes:
        ``(B, context_features) -> (B, channels, H, W)``.

    Example:
        >>> import torch
        >>> ContextDecoder(16, 8, (28, 28))(torch.randn(3, 16)).shape
        torch.Size([3, 8, 28, 28])
    """

    def __init__(self, context_features: int, channels: int, size: Tuple[int, int]):
        super().__init__()
        _check_sizes(type(self).__name__, size, context_features=(context_features, 1),
                     channels=(channels, 1))
        height, width = size
        doublings = 0
        while height % 2 == 0 and width % 2 == 0:
            height, width, doublings = height // 2, width // 2, doublings + 1
        self.start = (channels, height, width)
        self.linear = nn.Linear(context_features, channels * height * width)
        layers: list = []
        for _ in range(doublings):
            layers += [nn.ReLU(), nn.ConvTranspose2d(channels, channels, 4, stride=2, padding=1)]
        self.upsample = nn.Sequential(*layers)

    def forward(self, context: Tensor) -> Tensor:
        return self.upsample(_conv_layout(self.linear(context).view(len(context), *self.start)))


class MultiplicativeConditioner(nn.Module):
    """The VAPNEV conditioner with multiplicative interactions between image and context.

    ``h = alpha * F(x_A) * G(z) + beta1 * F(x_A) + beta2 * G(z) + bias`` followed by a
    zero-initialised 3x3 convolution to ``out_channels``. ``F`` is a :class:`ConvResNet` of width
    ``hidden_channels``, ``G`` a :class:`ContextDecoder` to the same width and spatial size,
    ``alpha, beta1, beta2, bias`` per-channel vectors. Without a context, ``h = F(x_A) + bias``.

    Args:
        in_channels: channels of ``x_A``.
        out_channels: channels of the output (twice the channels the coupling transforms).
        size: spatial size ``(H, W)`` of ``x_A``.
        context_features: width of ``z``, or ``None`` for no context.
        hidden_channels: the width ``k`` of ``F`` and ``G``.
        num_blocks: residual blocks in ``F``.

    Example:
        >>> import torch
        >>> net = MultiplicativeConditioner(1, 2, (8, 8), context_features=4, hidden_channels=8)
        >>> net(torch.randn(3, 1, 8, 8), torch.randn(3, 4)).abs().max().item()  # zero init
        0.0
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        size: Tuple[int, int],
        context_features: Optional[int] = None,
        hidden_channels: int = 64,
        num_blocks: int = 2,
    ):
        super().__init__()
        _check_sizes(type(self).__name__, size, in_channels=(in_channels, 1),
                     out_channels=(out_channels, 1), context_features=(context_features, 1),
                     hidden_channels=(hidden_channels, 1), num_blocks=(num_blocks, 0))
        self.context_features = context_features
        self.features = ConvResNet(in_channels, hidden_channels, num_blocks)
        per_channel = (hidden_channels, 1, 1)
        self.bias = nn.Parameter(torch.zeros(per_channel))
        if context_features is not None:
            self.context_net = ContextDecoder(context_features, hidden_channels, size)
            self.alpha = nn.Parameter(torch.ones(per_channel))
            self.beta1 = nn.Parameter(torch.ones(per_channel))
            self.beta2 = nn.Parameter(torch.ones(per_channel))
        self.out = _zero_init(nn.Conv2d(hidden_channels, out_channels, 3, padding=1))

    def forward(self, x: Tensor, context: Optional[Tensor] = None) -> Tensor:
        f = self.features(_conv_layout(x))
        if context is None:
            return self.out(f + self.bias)
        g = self.context_net(context)
        return self.out(self.alpha * f * g + self.beta1 * f + self.beta2 * g + self.bias)


class ConcatConditioner(nn.Module):
    """Concatenation conditioner: the context, projected to ``context_channels`` and broadcast
    over the image, is concatenated to ``x_A`` before a :class:`ConvResNet` (the nflows way).

    Args: as :class:`MultiplicativeConditioner`, plus ``context_channels`` (projection width).

    Example:
        >>> import torch
        >>> net = ConcatConditioner(1, 2, (8, 8), context_features=4, hidden_channels=8)
        >>> net(torch.randn(3, 1, 8, 8), torch.randn(3, 4)).shape
        torch.Size([3, 2, 8, 8])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        size: Tuple[int, int],
        context_features: Optional[int] = None,
        hidden_channels: int = 64,
        num_blocks: int = 2,
        context_channels: int = 8,
    ):
        super().__init__()
        _check_sizes(type(self).__name__, size, in_channels=(in_channels, 1),
                     out_channels=(out_channels, 1), context_features=(context_features, 1),
                     hidden_channels=(hidden_channels, 1), num_blocks=(num_blocks, 0),
                     context_channels=(context_channels, 1))
        self.context_features = context_features
        extra = 0
        if context_features is not None:
            self.project = nn.Linear(context_features, context_channels)
            extra = context_channels
        self.features = ConvResNet(in_channels + extra, hidden_channels, num_blocks)
        self.out = _zero_init(nn.Conv2d(hidden_channels, out_channels, 3, padding=1))

    def forward(self, x: Tensor, context: Optional[Tensor] = None) -> Tensor:
        if context is not None:
            c = self.project(context)[:, :, None, None].expand(-1, -1, *x.shape[2:])
            x = torch.cat([x, c], dim=1)
        return self.out(self.features(_conv_layout(x)))


class MLPConditioner(nn.Module):
    """MLP conditioner for vector couplings: ``[x_A, context]`` through ReLU layers.

    Args:
        in_features: width of ``x_A``.
        out_features: width of the output (twice the features the coupling transforms).
        context_features: width of the context, or ``None``.
        hidden_features: width of the hidden layers.
        num_layers: number of hidden layers.

    Example:
        >>> import torch
        >>> MLPConditioner(3, 4, context_features=2)(torch.randn(5, 3), torch.randn(5, 2)).shape
        torch.Size([5, 4])
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        context_features: Optional[int] = None,
        hidden_features: int = 128,
        num_layers: int = 2,
    ):
        super().__init__()
        _check_sizes(type(self).__name__, in_features=(in_features, 1),
                     out_features=(out_features, 1), context_features=(context_features, 1),
                     hidden_features=(hidden_features, 1), num_layers=(num_layers, 0))
        self.context_features = context_features
        width = in_features + (context_features or 0)
        layers: list = []
        for _ in range(num_layers):
            layers += [nn.Linear(width, hidden_features), nn.ReLU()]
            width = hidden_features
        layers.append(_zero_init(nn.Linear(width, out_features)))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor, context: Optional[Tensor] = None) -> Tensor:
        if context is not None:
            x = torch.cat([x, context], dim=-1)
        return self.net(x)


def parameter_count(module: nn.Module) -> int:
    """Number of trainable scalars in ``module``."""
    return sum(math.prod(p.shape) for p in module.parameters() if p.requires_grad)
