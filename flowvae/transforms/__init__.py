"""nflows Transforms (``forward`` maps data to noise, as in nflows)."""

from flowvae.transforms.base import Chain, CheckedTransform
from flowvae.transforms.conditioners import (
    ConcatConditioner,
    ContextDecoder,
    MLPConditioner,
    MultiplicativeConditioner,
)
from flowvae.transforms.coupling import AffineCoupling, ConditionalAffineCoupling
from flowvae.transforms.multiscale import squeeze, unsqueeze
from flowvae.transforms.normalization import ActNorm
from flowvae.transforms.partitions import (
    ChannelSplit,
    CheckerboardMask,
    Partition,
    SqueezedCheckerboard,
)
from flowvae.transforms.preprocess import LogitTransform
from flowvae.transforms.realnvp import ConditionalRealNVP, MultiscaleRealNVP, VectorRealNVP

__all__ = [
    "ActNorm",
    "AffineCoupling",
    "Chain",
    "ChannelSplit",
    "CheckedTransform",
    "CheckerboardMask",
    "ConcatConditioner",
    "ConditionalAffineCoupling",
    "ConditionalRealNVP",
    "ContextDecoder",
    "LogitTransform",
    "MLPConditioner",
    "MultiplicativeConditioner",
    "MultiscaleRealNVP",
    "Partition",
    "SqueezedCheckerboard",
    "VectorRealNVP",
    "squeeze",
    "unsqueeze",
]
