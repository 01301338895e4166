"""Deprecated: the parts of a VAE moved to :mod:`flowvae.parts` (guides, priors,
likelihoods); importing them from here warns and works until the next release."""

from flowvae.models._deprecated import moved

_PARTS = ("GUIDES", "PRIORS", "LIKELIHOODS", "DEQUANTIZATION", "DEQUANTIZATIONS",
          "DiagonalNormalGuide", "AR1Guide", "FlowGuide", "DeltaGuide", "PlanarGuide",
          "StandardNormalPrior", "FlowPrior", "BernoulliLikelihood", "GaussianLikelihood",
          "LogisticMixtureLikelihood", "FlowLikelihood", "PixelCNNLikelihood",
          "VariationalDequantizer", "Likelihood")

__getattr__ = moved(__name__, {name: "flowvae.parts" for name in _PARTS})
