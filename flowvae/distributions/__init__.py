"""Pyro distributions (``TorchDistribution`` subclasses) and the nflows <-> Pyro bridge."""

from flowvae.distributions.flow import FlowDistribution
from flowvae.distributions.pyro_bridge import (
    NflowsConditionalTransformModule,
    NflowsTransformModule,
)

__all__ = ["FlowDistribution", "NflowsConditionalTransformModule", "NflowsTransformModule"]
