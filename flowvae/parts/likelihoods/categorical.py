"""A 256-way categorical (softmax) likelihood of 8-bit pixels."""

from __future__ import annotations

from typing import Sequence

import pyro.distributions as dist
import torch
from torch import Tensor

from flowvae.parts.likelihoods._base import LIKELIHOODS, Likelihood

__all__ = ["CategoricalLikelihood"]


@LIKELIHOODS.register("categorical")
class CategoricalLikelihood(Likelihood):
    r"""``p(x|z) = prod_{c,i,j} Categorical(x_{cij}; softmax(l_{cij}))``: every sub-pixel an
    independent ``levels``-way categorical given ``z``, its logits ``l`` read from the
    decoder's output (``levels * C`` channels, channel ``c``'s logits contiguous). The
    softmax likelihood of PixelRNN (van den Oord, Kalchbrenner and Kavukcuoglu, "Pixel
    Recurrent Neural Networks", ICML 2016, sec. 5.3), without the autoregression: the
    alternative to a flow likelihood that the VAPNEV paper names.

    Observations are the pixel values ``0 .. levels - 1`` as floats (no dequantization);
    ``log_prob`` is a probability mass (``discrete = True``), so bits/dim are
    ``-log P(x) / (D log 2)``: a uniform model (all logits equal) scores exactly
    ``log2(levels)`` = 8 bits/dim. Shapes: decoder output ``(..., levels * C, H, W)``,
    ``event_shape == (C, H, W)``.

    Args:
        shape: image shape ``(C, H, W)``.
        levels: values per sub-pixel (256 for 8-bit images).

    Example:
        >>> import torch
        >>> from flowvae.models import VAE
        >>> vae = VAE((1, 4, 4), latent_dim=2, hidden=8, likelihood="categorical")
        >>> x = vae.preprocess(torch.randint(0, 256, (3, 1, 4, 4), dtype=torch.uint8))
        >>> p = vae.likelihood(vae.posterior(x).sample())
        >>> p.event_shape, p.log_prob(x).shape, vae.generate(2).shape
        (torch.Size([1, 4, 4]), torch.Size([3]), torch.Size([2, 1, 4, 4]))
    """

    def __init__(self, shape: Sequence[int], levels: int = 256):
        super().__init__(shape)
        if levels < 2:
            raise ValueError(f"levels must be >= 2, got {levels}")
        self.levels = int(levels)
        self.out_channels = self.levels * self.shape[0]

    def preprocess(self, x: Tensor) -> Tensor:
        """``uint8`` images to their level indices ``0 .. levels - 1``, as floats."""
        x = x.float()
        return x if self.levels == 256 else torch.round(x / 255 * (self.levels - 1))

    def forward(self, params: Tensor, z: Tensor):
        c = self.shape[0]
        logits = params.unflatten(-3, (c, self.levels)).movedim(-3, -1)  # (..., C, H, W, L)
        return dist.Categorical(logits=logits).to_event(3)

    def to_image(self, x: Tensor) -> Tensor:
        return x.float() / (self.levels - 1)
