"""Pyro models and guides (``PyroModule`` s with ``model(x)`` and ``guide(x)``)."""

from flowvae.models.flow_posterior import PlanarGuide, posterior_flow_vae
from flowvae.models.pixelcnn import PixelCNNLikelihood
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
    "PlanarGuide",
    "PixelCNNLikelihood",
    "SequentialVAE",
    "posterior_flow_vae",
]
