"""Objectives, estimators and sampling helpers."""

from flowvae.infer.diagnostics import (
    LatentDiagnostics,
    active_units,
    label_agreement,
    latent_diagnostics,
    summarize_latents,
)
from flowvae.infer.evaluate import (
    bits_per_dim,
    elbo_per_datapoint,
    evaluate,
    iwae_log_likelihood,
    log_importance_weights,
    logit_log_det,
    mutual_information,
)
from flowvae.infer.objectives import OBJECTIVES, GeneralizedELBO, mmd
from flowvae.infer.sampling import gibbs_chain, plot_training_curve, save_grid

__all__ = [
    "OBJECTIVES",
    "GeneralizedELBO",
    "LatentDiagnostics",
    "active_units",
    "label_agreement",
    "latent_diagnostics",
    "mmd",
    "summarize_latents",
    "bits_per_dim",
    "elbo_per_datapoint",
    "evaluate",
    "gibbs_chain",
    "iwae_log_likelihood",
    "log_importance_weights",
    "logit_log_det",
    "mutual_information",
    "plot_training_curve",
    "save_grid",
]
