"""Likelihoods ``p(x|z)``: one module per likelihood, each registering its class in
:data:`LIKELIHOODS` with ``@LIKELIHOODS.register(name)``. Every module of this package is
imported here and every registered class exported, so a new likelihood is one new file
(``categorical.py`` is the example) and nothing else changes."""

from flowvae.parts.likelihoods._base import (
    DEQUANTIZATION,
    DEQUANTIZATIONS,
    LIKELIHOODS,
    DensityLikelihood,
    Likelihood,
    VariationalDequantizer,
)
from flowvae.parts.registry import import_submodules

import_submodules(__name__)
globals().update({cls.__name__: cls for cls in LIKELIHOODS.values()})

__all__ = [
    "DEQUANTIZATION",
    "DEQUANTIZATIONS",
    "LIKELIHOODS",
    "DensityLikelihood",
    "Likelihood",
    "VariationalDequantizer",
    *sorted(cls.__name__ for cls in LIKELIHOODS.values()),
]
