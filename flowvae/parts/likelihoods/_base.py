"""The base class of the likelihood parts of :class:`~flowvae.models.vae.VAE`."""

from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn


class Likelihood(nn.Module):
    """The base of a VAE's likelihood part ``p(x|z)`` (``forward(decoder_output, z)`` returns
    the distribution): how raw ``uint8`` images become the observation, the encoder's input
    and a picture, and the Pyro sample sites the likelihood adds to the model and the guide
    besides ``x`` (none here; variational dequantization adds one)."""

    #: whether log_prob is a probability mass (True) or a density on [0, 1]^D (False)
    discrete = True

    def __init__(self, shape: Sequence[int]):
        super().__init__()
        self.shape = tuple(int(s) for s in shape)

    def preprocess(self, x: Tensor) -> Tensor:
        """Raw ``uint8`` images to the observation ``x`` that the model and guide take."""
        return x.float()

    def observation(self, x: Tensor) -> Tensor:
        """In the model: the value this likelihood scores for the observation ``x`` (``x``
        itself, unless the likelihood has sample sites of its own, e.g. dequantization)."""
        return x

    def guide(self, x: Tensor) -> None:
        """In the guide: the likelihood's own latent sites given ``x`` (none by default)."""

    def encoder_input(self, x: Tensor) -> Tensor:
        """The observation to the encoder's input, roughly in ``[-1, 1]``."""
        return x / 127.5 - 1

    def to_image(self, x: Tensor) -> Tensor:
        """An observation (or a sample of this likelihood) as an image in ``[0, 1]``."""
        return x.clamp(0, 1)
