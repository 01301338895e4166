"""Pyro models and guides (``PyroModule`` s with ``model(x)`` and ``guide(x)``)."""

from flowvae.models.flow_posterior import PlanarGuide, posterior_flow_vae
from flowvae.models.srvae import SRVAE, FlowPriorVAE
from flowvae.models.vae import VAE
from flowvae.models.vapnev import VAPNEV

MODELS = {"vae": VAE, "vapnev": VAPNEV, "flow_prior_vae": FlowPriorVAE, "srvae": SRVAE}

__all__ = ["MODELS", "FlowPriorVAE", "SRVAE", "PlanarGuide", "posterior_flow_vae", "VAE", "VAPNEV"]
