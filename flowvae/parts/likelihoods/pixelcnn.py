"""The PixelCNN likelihood of a :class:`~flowvae.models.vae.VAE` (``likelihood="pixelcnn"``)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from flowvae.distributions.pixelcnn import PixelCNNDistribution
from flowvae.nn.pixelcnn import ConditionalPixelCNN
from flowvae.parts.likelihoods._base import LIKELIHOODS, Likelihood
from flowvae.validation import check_int

__all__ = ["PixelCNNLikelihood"]


@LIKELIHOODS.register("pixelcnn")
class PixelCNNLikelihood(Likelihood):
    r"""``p(x|z) = prod_i p(x_i | x_{<i}, c(z))``: a :class:`ConditionalPixelCNN` whose gated
    blocks read the decoder's output ``c(z)``, a ``context_channels x H x W`` map, as in the
    PixelVAE of Zhao et al. (sec. 4, app. C.2). ``log_prob`` is one teacher-forced pass;
    ``sample`` is exact pixel-by-pixel ancestral sampling (:class:`PixelCNNDistribution`).

    Observations are ``k / (levels - 1)`` in ``[0, 1]``: ``levels = 2`` takes binary images
    (grey images are binarized dynamically, a fresh ``Bernoulli(x / (data_levels - 1))`` draw
    per batch, as for ``likelihood="bernoulli"``); ``levels = 256`` models 8-bit grey levels
    with a 256-way softmax. ``log_prob`` is a probability mass (``discrete = True``).

    Args:
        shape: image shape ``(C, H, W)``.
        levels: values per channel (2: binary; 256: 8-bit grey levels).
        data_levels: grey levels of the ``uint8`` images given (the dataset's ``levels``; 2:
            binary ``{0, 1}``), declared, never guessed from a batch's values.
        context_channels: channels of the decoder output fed to every gated block.
        hidden_channels, num_blocks, kernel_size: of the :class:`ConditionalPixelCNN`.

    Example:
        >>> import torch
        >>> from flowvae.models import VAE
        >>> vae = VAE((1, 6, 6), latent_dim=2, hidden=8, likelihood="pixelcnn",
        ...           likelihood_kwargs=dict(hidden_channels=4, num_blocks=1))
        >>> x = vae.preprocess(torch.randint(0, 256, (5, 1, 6, 6), dtype=torch.uint8))
        >>> vae.likelihood(vae.posterior(x).sample()).log_prob(x).shape
        torch.Size([5])
        >>> vae.generate(2).shape
        torch.Size([2, 1, 6, 6])
    """

    takes_data_levels = True

    def __init__(self, shape: Sequence[int], levels: int = 2, context_channels: int = 4,
                 hidden_channels: int = 32, num_blocks: int = 4, kernel_size: int = 7,
                 data_levels: int = 256):
        super().__init__(shape)
        self.levels = levels
        self.data_levels = check_int(type(self).__name__, "data_levels", data_levels, minimum=2)
        self.out_channels = context_channels
        self.net = ConditionalPixelCNN(self.shape, levels, context_channels, hidden_channels,
                                       num_blocks, kernel_size)

    def preprocess(self, x: Tensor) -> Tensor:
        """``uint8`` images to values ``k / (levels - 1)``."""
        x = x.float()
        if self.data_levels == 2:  # binary data: 0 and 1, the extreme values of any levels
            return x
        top = self.data_levels - 1
        if self.levels == 2:
            return torch.bernoulli(x / top)
        return torch.round(x / top * (self.levels - 1)) / (self.levels - 1)

    def encoder_input(self, x: Tensor) -> Tensor:
        return 2 * x - 1

    def to_image(self, x: Tensor) -> Tensor:
        return x  # observations are already k / (levels - 1) in [0, 1]

    def forward(self, params: Tensor, z: Tensor) -> PixelCNNDistribution:
        return PixelCNNDistribution(self.net, params)
