"""The parts a VAE is assembled from: guides ``q(z|x)``, priors ``p(z)`` and likelihoods
``p(x|z)``. Each is a class registered by a decorator in :data:`GUIDES`, :data:`PRIORS` or
:data:`LIKELIHOODS`, declaring what it needs as class data (a context, discrete data or a
density, dequantization, the latent shapes it takes); :class:`~flowvae.models.VAE`,
:class:`~flowvae.models.SequentialVAE` and the CLI read these declarations, not names.

This package imports nothing from :mod:`flowvae.models`.
"""

from flowvae.parts import likelihoods
from flowvae.parts.guides import GUIDES, AR1Guide, DeltaGuide, DiagonalNormalGuide, FlowGuide
from flowvae.parts.likelihoods import *  # noqa: F403 (each registered likelihood)
from flowvae.parts.planar import AmortizedPlanarFlow, PlanarGuide, planar_u_hat
from flowvae.parts.priors import PRIORS, FlowPrior, StandardNormalPrior
from flowvae.parts.registry import Registry

__all__ = [
    "GUIDES",
    "PRIORS",
    "AR1Guide",
    "AmortizedPlanarFlow",
    "DeltaGuide",
    "DiagonalNormalGuide",
    "FlowGuide",
    "FlowPrior",
    "PlanarGuide",
    "Registry",
    "StandardNormalPrior",
    "planar_u_hat",
    *likelihoods.__all__,
]
