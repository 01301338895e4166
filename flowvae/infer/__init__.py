"""Objectives, estimators and sampling helpers."""

from flowvae.infer.evaluate import (
    bits_per_dim,
    elbo_per_datapoint,
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
    "mmd",
    "bits_per_dim",
    "elbo_per_datapoint",
    "gibbs_chain",
    "iwae_log_likelihood",
    "log_importance_weights",
    "logit_log_det",
    "mutual_information",
    "plot_training_curve",
    "save_grid",
]
