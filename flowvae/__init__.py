"""flowvae: normalizing-flow components for variational autoencoders.

Flow pieces are nflows Transforms (``forward`` maps data to noise); models and guides are Pyro
programs trained on Pyro's ELBOs (``pyro.infer.SVI`` or :func:`flowvae.train.fit`).

The names below, and the subpackages, are imported on first use (PEP 562), so that
``import flowvae`` (and ``flowvae --help``) does not load torch until something needs it.
"""

import importlib
from typing import Any, List

__version__ = "0.3.0"

_NAMES = {
    "ActNorm": "flowvae.transforms",
    "ConditionalAffineCoupling": "flowvae.transforms",
    "ConditionalRealNVP": "flowvae.transforms",
    "LogitTransform": "flowvae.transforms",
    "FlowDistribution": "flowvae.distributions",
}
_SUBPACKAGES = ("data", "distributions", "infer", "models", "nn", "parts", "train", "transforms",
                "validation", "cli", "choices")

__all__ = [
    "ActNorm",
    "ConditionalAffineCoupling",
    "ConditionalRealNVP",
    "FlowDistribution",
    "LogitTransform",
    "__version__",
]


def __getattr__(name: str) -> Any:
    if name in _NAMES:
        value = getattr(importlib.import_module(_NAMES[name]), name)
        globals()[name] = value  # once
        return value
    if name in _SUBPACKAGES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> List[str]:
    return sorted(set(globals()) | set(_NAMES) | set(_SUBPACKAGES))
