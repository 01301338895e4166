"""Pyro distributions (``TorchDistribution`` subclasses) and the nflows <-> Pyro bridge."""

from flowvae.distributions.ar1 import AR1Normal
from flowvae.distributions.flow import FlowDistribution
from flowvae.distributions.logistic import DiscretizedLogisticMixture
from flowvae.distributions.pixelcnn import PixelCNNDistribution
from flowvae.distributions.pyro_bridge import (
    NflowsConditionalTransformModule,
    NflowsTransformModule,
)

__all__ = [
    "AR1Normal",
    "DiscretizedLogisticMixture",
    "FlowDistribution",
    "NflowsConditionalTransformModule",
    "NflowsTransformModule",
    "PixelCNNDistribution",
]
