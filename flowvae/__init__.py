"""flowvae: normalizing-flow components for variational autoencoders.

Flow pieces are nflows Transforms (``forward`` maps data to noise); models and guides are Pyro
programs trained on Pyro's ELBOs (``pyro.infer.SVI`` or :func:`flowvae.train.fit`).
"""

__version__ = "0.3.0"

from flowvae.distributions import FlowDistribution  # noqa: E402
from flowvae.transforms import (  # noqa: E402
    ActNorm,
    ConditionalAffineCoupling,
    ConditionalRealNVP,
    LogitTransform,
)

__all__ = [
    "ActNorm",
    "ConditionalAffineCoupling",
    "ConditionalRealNVP",
    "FlowDistribution",
    "LogitTransform",
    "__version__",
]
