"""Deprecated: :class:`Likelihood` moved to :mod:`flowvae.parts.likelihoods`."""

from flowvae.models._deprecated import moved

__getattr__ = moved(__name__, {"Likelihood": "flowvae.parts.likelihoods"})
