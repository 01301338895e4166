"""Pyro models (``PyroModule`` s with ``model(x)`` and ``guide(x)``): the model protocol
(:class:`PyroModel`), the generic :class:`VAE` and the paper models. Their parts (guides,
priors, likelihoods) live in :mod:`flowvae.parts`."""

from flowvae.models._deprecated import moved
from flowvae.models.base import PyroModel
from flowvae.models.flow_posterior import posterior_flow_vae
from flowvae.models.sequential import SequentialVAE
from flowvae.models.srvae import SRVAE, FlowPriorVAE
from flowvae.models.vae import VAE
from flowvae.models.vapnev import VAPNEV, FlowDensity

MODELS = {
    "vae": VAE,
    "vapnev": VAPNEV,
    "flow_density": FlowDensity,
    "flow_prior_vae": FlowPriorVAE,
    "srvae": SRVAE,
    "sequential_vae": SequentialVAE,
}

__all__ = [
    "MODELS",
    "SRVAE",
    "VAE",
    "VAPNEV",
    "FlowDensity",
    "FlowPriorVAE",
    "PyroModel",
    "SequentialVAE",
    "posterior_flow_vae",
]

# moved to flowvae.parts: the old path warns for one release
__getattr__ = moved(__name__, {"PlanarGuide": "flowvae.parts",
                               "PixelCNNLikelihood": "flowvae.parts"})
