"""Reference flows of the transform benchmark (:mod:`benchmarks.transforms`): a plain PyTorch
conditional multi-scale RealNVP written without flowvae or nflows (the same math as
:class:`flowvae.transforms.ConditionalRealNVP`, with the VAPNEV multiplicative conditioner), and
the closest flow nflows builds by itself."""

from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F
from nflows.nn.nets import ConvResidualNet
from nflows.transforms import (
    AffineCouplingTransform,
    CompositeTransform,
    MultiscaleCompositeTransform,
    SqueezeTransform,
)
from torch import Tensor, nn

# --------------------------------------------------------------------------------------------
# Plain PyTorch reference: the same math as ConditionalRealNVP, written without flowvae/nflows.
# Squeezed tensors are kept as (B, 4, C, h, w): group g = 2 i + j holds sub-pixel (i, j) of every
# 2x2 block, so both sub-pixel checkerboards and channel halves are pairs of groups.
# --------------------------------------------------------------------------------------------


def space_to_depth(x: Tensor) -> Tensor:
    """``(B, C, H, W) -> (B, 4, C, H/2, W/2)``, group ``2 i + j`` = sub-pixel ``(i, j)``."""
    b, c, h, w = x.shape
    x = x.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 3, 5, 1, 2, 4)
    return x.reshape(b, 4, c, h // 2, w // 2)


def depth_to_space(x: Tensor) -> Tensor:
    """Inverse of :func:`space_to_depth`."""
    b, _, c, h, w = x.shape
    x = x.reshape(b, 2, 2, c, h, w).permute(0, 3, 4, 1, 5, 2)
    return x.reshape(b, c, 2 * h, 2 * w)


class PlainResNet(nn.Module):
    """``F``: 3x3 stem, pre-activation residual blocks, final ReLU."""

    def __init__(self, in_channels: int, width: int, num_blocks: int):
        super().__init__()
        self.stem = nn.Conv2d(in_channels, width, 3, padding=1)
        self.blocks = nn.ModuleList(
            nn.ModuleList([nn.Conv2d(width, width, 3, padding=1) for _ in range(2)])
            for _ in range(num_blocks)
        )

    def forward(self, x: Tensor) -> Tensor:
        h = self.stem(x)
        for first, second in self.blocks:
            h = h + second(F.relu(first(F.relu(h))))
        return F.relu(h)


class PlainContextNet(nn.Module):
    """``G``: linear map of the context to the smallest map reached by halving ``size``, then
    stride-2 transposed convolutions back up to ``size``."""

    def __init__(self, context_features: int, width: int, size: Tuple[int, int]):
        super().__init__()
        h, w = size
        ups = 0
        while h % 2 == 0 and w % 2 == 0:
            h, w, ups = h // 2, w // 2, ups + 1
        self.start = (width, h, w)
        self.linear = nn.Linear(context_features, width * h * w)
        self.ups = nn.ModuleList(
            nn.ConvTranspose2d(width, width, 4, stride=2, padding=1) for _ in range(ups)
        )

    def forward(self, z: Tensor) -> Tensor:
        g = self.linear(z).reshape(-1, *self.start)
        for up in self.ups:
            g = up(F.relu(g))
        return g


class PlainConditioner(nn.Module):
    """VAPNEV multiplicative conditioner, then a 3x3 convolution to ``(raw log-scale, shift)``."""

    def __init__(self, in_channels, out_channels, size, context_features, width, num_blocks):
        super().__init__()
        self.F = PlainResNet(in_channels, width, num_blocks)
        self.bias = nn.Parameter(torch.zeros(width, 1, 1))
        self.G = PlainContextNet(context_features, width, size)
        self.alpha = nn.Parameter(torch.ones(width, 1, 1))
        self.beta1 = nn.Parameter(torch.ones(width, 1, 1))
        self.beta2 = nn.Parameter(torch.ones(width, 1, 1))
        self.out = nn.Conv2d(width, out_channels, 3, padding=1)

    def forward(self, x: Tensor, z: Tensor) -> Tensor:
        f, g = self.F(x), self.G(z)
        return self.out(self.alpha * f * g + self.beta1 * f + self.beta2 * g + self.bias)


class PlainCoupling(nn.Module):
    """``y_B = x_B exp(s) + t``, ``s = scale tanh(raw)``, ``(raw, t)`` from ``x_A`` and ``z``."""

    def __init__(self, conditioner: nn.Module, changed_channels: int):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(changed_channels, 1, 1))
        self.net = conditioner

    def log_scale_and_shift(self, kept: Tensor, z: Tensor) -> Tuple[Tensor, Tensor]:
        raw, shift = self.net(kept, z).chunk(2, dim=1)
        return self.scale * torch.tanh(raw), shift


class MaskedCoupling(PlainCoupling):
    """Checkerboard coupling at full resolution on ``(B, C, H, W)`` (the RealNVP paper)."""

    def __init__(self, channels, size, parity, make_conditioner):
        super().__init__(make_conditioner(channels, 2 * channels, size), channels)
        rows, cols = torch.arange(size[0])[:, None], torch.arange(size[1])[None, :]
        kept = ((rows + cols) % 2 == parity).to(torch.get_default_dtype())
        self.register_buffer("kept", kept)
        self.register_buffer("free", 1 - kept)

    def _params(self, x: Tensor, z: Tensor) -> Tuple[Tensor, Tensor]:
        s, t = self.log_scale_and_shift(x * self.kept, z)
        return s * self.free, t * self.free

    def forward(self, x: Tensor, z: Tensor) -> Tuple[Tensor, Tensor]:
        s, t = self._params(x, z)
        return x * torch.exp(s) + t, s.sum(dim=(1, 2, 3))

    def inverse(self, y: Tensor, z: Tensor) -> Tuple[Tensor, Tensor]:
        s, t = self._params(y, z)
        return (y - t) * torch.exp(-s), -s.sum(dim=(1, 2, 3))


class GroupCoupling(PlainCoupling):
    """Coupling on a squeezed ``(B, 4, C, h, w)`` tensor: groups ``kept`` condition ``changed``.

    ``kept=(0, 3)`` / ``(1, 2)`` is the squeezed checkerboard, ``kept=(0, 1)`` / ``(2, 3)`` the
    channel-wise coupling (first / second half of the squeezed channels).
    """

    def __init__(self, channels, size, kept, make_conditioner):
        super().__init__(make_conditioner(2 * channels, 4 * channels, size), 2 * channels)
        self.kept = tuple(kept)
        self.changed = tuple(g for g in range(4) if g not in self.kept)

    def _couple(self, xs: Tensor, z: Tensor, inverse: bool) -> Tuple[Tensor, Tensor]:
        groups = list(xs.unbind(1))
        s, t = self.log_scale_and_shift(torch.cat([groups[g] for g in self.kept], 1), z)
        changed = torch.cat([groups[g] for g in self.changed], 1)
        if inverse:
            changed, s = (changed - t) * torch.exp(-s), -s
        else:
            changed = changed * torch.exp(s) + t
        for g, part in zip(self.changed, changed.chunk(2, dim=1)):
            groups[g] = part
        return torch.stack(groups, 1), s.sum(dim=(1, 2, 3))

    def forward(self, xs, z):
        return self._couple(xs, z, inverse=False)

    def inverse(self, ys, z):
        return self._couple(ys, z, inverse=True)


class PlainRealNVP(nn.Module):
    """Conditional multi-scale RealNVP, data -> noise, noise returned in the shape of the data.

    Per scale: checkerboard couplings (``"masked"`` at full resolution, or ``"squeezed"`` on
    sub-pixel groups), squeeze, channel-wise couplings, park half of the channels; the last
    scale has only checkerboard couplings. Widths double per scale.
    """

    def __init__(self, shape, context_features, width, checkerboard, num_scales,
                 num_checkerboard, num_channelwise, num_final, num_blocks):
        super().__init__()
        self.masked = checkerboard == "masked"
        c, h, w = shape
        self.scales = nn.ModuleList()
        for _ in range(num_scales - 1):
            scale = nn.Module()
            scale.checker = self._checkerboard(c, (h, w), num_checkerboard, context_features,
                                               width, num_blocks)
            factory = _plain_factory(context_features, width, num_blocks)
            scale.channel = nn.ModuleList(
                GroupCoupling(c, (h // 2, w // 2), ((0, 1), (2, 3))[i % 2], factory)
                for i in range(num_channelwise)
            )
            self.scales.append(scale)
            c, h, w, width = 2 * c, h // 2, w // 2, 2 * width
        self.final = self._checkerboard(c, (h, w), num_final, context_features, width,
                                        num_blocks)

    def _checkerboard(self, c, size, count, context_features, width, num_blocks):
        factory = _plain_factory(context_features, width, num_blocks)
        if self.masked:
            return nn.ModuleList(MaskedCoupling(c, size, i % 2, factory) for i in range(count))
        half = (size[0] // 2, size[1] // 2)
        return nn.ModuleList(
            GroupCoupling(c, half, ((0, 3), (1, 2))[i % 2], factory) for i in range(count)
        )

    def _checker(self, layers, x, z, inverse):
        logdet = x.new_zeros(x.shape[0])
        if not self.masked:
            x = space_to_depth(x)
        for layer in (reversed(layers) if inverse else layers):
            x, ld = layer.inverse(x, z) if inverse else layer(x, z)
            logdet = logdet + ld
        return (x if self.masked else depth_to_space(x)), logdet

    def forward(self, x: Tensor, z: Tensor) -> Tuple[Tensor, Tensor]:
        logdet, parked = x.new_zeros(x.shape[0]), []
        for scale in self.scales:
            x, ld = self._checker(scale.checker, x, z, inverse=False)
            xs = space_to_depth(x)
            for layer in scale.channel:
                xs, ld_channel = layer(xs, z)
                ld = ld + ld_channel
            logdet = logdet + ld
            parked.append(xs[:, :2])
            x = xs[:, 2:].flatten(1, 2)
        x, ld = self._checker(self.final, x, z, inverse=False)
        for part in reversed(parked):
            x = depth_to_space(torch.cat([part, x.unflatten(1, (2, -1))], 1))
        return x, logdet + ld

    def inverse(self, y: Tensor, z: Tensor) -> Tuple[Tensor, Tensor]:
        parked = []
        for _ in self.scales:
            ys = space_to_depth(y)
            parked.append(ys[:, :2])
            y = ys[:, 2:].flatten(1, 2)
        y, logdet = self._checker(self.final, y, z, inverse=True)
        for scale, part in zip(reversed(self.scales), reversed(parked)):
            ys = torch.cat([part, y.unflatten(1, (2, -1))], 1)
            for layer in reversed(scale.channel):
                ys, ld = layer.inverse(ys, z)
                logdet = logdet + ld
            y, ld = self._checker(scale.checker, depth_to_space(ys), z, inverse=True)
            logdet = logdet + ld
        return y, logdet


def _plain_factory(context_features, width, num_blocks):
    def make(in_channels, out_channels, size):
        return PlainConditioner(in_channels, out_channels, size, context_features, width,
                                num_blocks)
    return make


# --------------------------------------------------------------------------------------------
# The closest flow nflows builds by itself.
# --------------------------------------------------------------------------------------------


class BroadcastContextResNet(nn.Module):
    """nflows ``ConvResidualNet`` whose context channels are a linear projection of the context
    vector, broadcast over the image (``ConvResidualNet`` concatenates context channels)."""

    def __init__(self, in_channels, out_channels, context_features, context_channels, width,
                 num_blocks):
        super().__init__()
        self.project = nn.Linear(context_features, context_channels)
        self.net = ConvResidualNet(in_channels, out_channels, width,
                                   context_channels=context_channels, num_blocks=num_blocks)

    def forward(self, x: Tensor, context: Tensor) -> Tensor:
        c = self.project(context)[:, :, None, None].expand(-1, -1, *x.shape[2:])
        return self.net(x, c)


def nflows_flow(shape, context_features, context_channels, width, num_scales, num_checkerboard,
                num_channelwise, num_final, num_blocks) -> MultiscaleCompositeTransform:
    """Each level squeezes first, so the checkerboard is a mask over sub-pixel channels: nflows'
    squeeze puts sub-pixel ``(i, j)`` of channel ``c`` at ``4 c + 2 i + j``. The channel-wise
    mask transforms sub-pixel row ``i = 1`` (the same partition as flowvae's channel halves)."""
    flow = MultiscaleCompositeTransform(num_transforms=num_scales)
    c, h, w = shape
    for level in range(num_scales):
        c, h, w = 4 * c, h // 2, w // 2
        sub_pixel = torch.arange(c) % 4
        checker = [(sub_pixel == 1) | (sub_pixel == 2), (sub_pixel == 0) | (sub_pixel == 3)]
        channel = [sub_pixel >= 2, sub_pixel < 2]

        def make(in_channels, out_channels, width=width):
            return BroadcastContextResNet(in_channels, out_channels, context_features,
                                          context_channels, width, num_blocks)

        last = level == num_scales - 1
        masks = [checker[i % 2] for i in range(num_final if last else num_checkerboard)]
        if not last:
            masks += [channel[i % 2] for i in range(num_channelwise)]
        layers = [SqueezeTransform()] + [
            AffineCouplingTransform(mask.int(), make) for mask in masks
        ]
        next_shape = flow.add_transform(CompositeTransform(layers), (c, h, w))
        if next_shape is not None:
            c, h, w = next_shape
        width *= 2
    return flow
