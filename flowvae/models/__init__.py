"""Pyro models and guides (``PyroModule`` s with ``model(x)`` and ``guide(x)``)."""

from flowvae.models.vae import VAE
from flowvae.models.vapnev import VAPNEV

MODELS = {"vae": VAE, "vapnev": VAPNEV}

__all__ = ["MODELS", "VAE", "VAPNEV"]
