r"""DenseNet encoders and decoders that change the resolution by powers of two (srVAE's nets).

Both are image-to-image maps ``(*batch, C_in, H_in, W_in) -> (*batch, C_out, H_out, W_out)``
built from :class:`~flowvae.nn.densenet.DenseBlock` s with channel attention and ELUs: a
``3 x 3`` stem to ``hidden_channels``, then per resolution step a dense block (transition back to
``hidden_channels``), an ELU and a stride-2 (transposed) ``4 x 4`` convolution, and a last dense
block whose linear ``1 x 1`` transition gives ``C_out`` (so that the output can parametrise a
distribution). Leading batch dims (Pyro plates, vectorized particles) are flattened and
restored.

References:
    Gatopoulos, I., Stol, M. and Tomczak, J. M. Super-resolution variational auto-encoders
    (srVAE). 2020, appendix figure 4.
"""

from __future__ import annotations

import math
from typing import Sequence

from torch import Tensor, nn

from flowvae.nn.densenet import DenseBlock

__all__ = ["DenseDecoder", "DenseEncoder"]


def _steps(small: Sequence[int], large: Sequence[int], name: str) -> int:
    """Number of 2x steps between the spatial sizes ``small`` and ``large``."""
    ratio_h, ratio_w = large[0] / small[0], large[1] / small[1]
    steps = round(math.log2(ratio_h)) if ratio_h >= 1 else -1
    if ratio_h != ratio_w or steps < 0 or 2**steps != ratio_h:
        raise ValueError(f"{name}: the spatial sizes {tuple(large)} and {tuple(small)} must "
                         f"differ by the same power of two in height and width")
    return steps


class _DenseResampler(nn.Module):
    def __init__(self, in_shape: Sequence[int], out_shape: Sequence[int], steps: int,
                 resample: type, hidden_channels: int, growth: int, num_layers: int,
                 attention: bool):
        super().__init__()
        self.in_shape = tuple(int(s) for s in in_shape)
        self.out_shape = tuple(int(s) for s in out_shape)
        layers: list = [nn.Conv2d(self.in_shape[0], hidden_channels, 3, padding=1)]
        for _ in range(steps):
            layers += [
                DenseBlock(hidden_channels, growth, num_layers, hidden_channels, nn.ELU,
                           attention),
                nn.ELU(),
                resample(hidden_channels, hidden_channels, 4, stride=2, padding=1),
            ]
        layers.append(DenseBlock(hidden_channels, growth, num_layers, self.out_shape[0], nn.ELU,
                                 attention))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        batch = x.shape[:-3]
        out = self.net(x.reshape(-1, *x.shape[-3:]))
        return out.reshape(*batch, *out.shape[-3:])


class DenseEncoder(_DenseResampler):
    """``(*batch, *in_shape) -> (*batch, *out_shape)``, halving the resolution
    ``log2(H_in / H_out)`` times with stride-2 convolutions between DenseNet blocks.

    Args:
        in_shape: input ``(C, H, W)``.
        out_shape: output ``(C', H', W')``; ``H / H' = W / W'`` a power of two (1 allowed).
        hidden_channels: width between blocks.
        growth: channels each dense layer adds.
        num_layers: dense layers per block.
        attention: channel attention at the end of every block.

    Example:
        >>> import torch
        >>> net = DenseEncoder((1, 16, 16), (6, 4, 4), hidden_channels=8, growth=4, num_layers=1)
        >>> net(torch.randn(3, 2, 1, 16, 16)).shape
        torch.Size([3, 2, 6, 4, 4])
    """

    def __init__(self, in_shape: Sequence[int], out_shape: Sequence[int],
                 hidden_channels: int = 64, growth: int = 32, num_layers: int = 3,
                 attention: bool = True):
        steps = _steps(tuple(out_shape)[1:], tuple(in_shape)[1:], type(self).__name__)
        super().__init__(in_shape, out_shape, steps, nn.Conv2d, hidden_channels, growth,
                         num_layers, attention)


class DenseDecoder(_DenseResampler):
    """``(*batch, *in_shape) -> (*batch, *out_shape)``, doubling the resolution
    ``log2(H_out / H_in)`` times with stride-2 transposed convolutions between DenseNet blocks.

    Args: as :class:`DenseEncoder`, with ``H' / H`` a power of two.

    Example:
        >>> import torch
        >>> net = DenseDecoder((4, 4, 4), (7, 16, 16), hidden_channels=8, growth=4, num_layers=1)
        >>> net(torch.randn(5, 4, 4, 4)).shape
        torch.Size([5, 7, 16, 16])
    """

    def __init__(self, in_shape: Sequence[int], out_shape: Sequence[int],
                 hidden_channels: int = 64, growth: int = 32, num_layers: int = 3,
                 attention: bool = True):
        steps = _steps(tuple(in_shape)[1:], tuple(out_shape)[1:], type(self).__name__)
        super().__init__(in_shape, out_shape, steps, nn.ConvTranspose2d, hidden_channels,
                         growth, num_layers, attention)

