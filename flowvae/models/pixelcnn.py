"""Deprecated: :class:`PixelCNNLikelihood` moved to :mod:`flowvae.parts.likelihoods`."""

from flowvae.models._deprecated import moved

__getattr__ = moved(__name__, {"PixelCNNLikelihood": "flowvae.parts.likelihoods"})
