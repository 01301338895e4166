"""nflows Transforms (``forward`` maps data to noise, as in nflows)."""

from flowvae.transforms.conditioners import (
    ConcatConditioner,
    ContextDecoder,
    MLPConditioner,
    MultiplicativeConditioner,
)
from flowvae.transforms.coupling import ConditionalAffineCoupling, squeeze, unsqueeze
from flowvae.transforms.normalization import ActNorm
from flowvae.transforms.preprocess import LogitTransform
from flowvae.transforms.realnvp import ConditionalRealNVP

__all__ = [
    "ActNorm",
    "ConcatConditioner",
    "ConditionalAffineCoupling",
    "ConditionalRealNVP",
    "ContextDecoder",
    "LogitTransform",
    "MLPConditioner",
    "MultiplicativeConditioner",
    "squeeze",
    "unsqueeze",
]
