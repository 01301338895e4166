"""Initialisation idioms shared by the networks and flows.

**Data-dependent initialisation** (Salimans and Kingma 2016, weight normalisation; Kingma and
Dhariwal 2018, Glow's ActNorm): a module sets some parameters from the statistics of the first
batch it sees in training mode. Every such module implements one protocol,
:class:`DataDependentInit`: an ``initialized`` boolean (a buffer, so that a loaded checkpoint
is not initialised again). Callers find these modules by type (:func:`data_init_modules`),
never by a buffer's name; :func:`flowvae.train.initialize_on_data` runs them on one batch.
"""

from __future__ import annotations

from typing import List, Tuple, Type

from torch import nn

__all__ = ["DataDependentInit", "data_init_modules", "needs_data_init", "register_data_init"]


class DataDependentInit:
    """Mixin of a module initialised from the first batch it sees in training mode.

    An implementation holds ``initialized``, a 0-d boolean tensor buffer (``True`` once done,
    saved in the state dict), and initialises itself in its own forward pass (or, for a
    model, in its guide) when it is ``False`` in training mode.
    """


_FOREIGN: List[Type] = []


def register_data_init(cls: Type) -> Type:
    """Declare that instances of ``cls`` (a class that cannot inherit from
    :class:`DataDependentInit`, e.g. one defined in another package) implement the protocol;
    returns ``cls``, so that it can decorate a class."""
    if cls not in _FOREIGN:
        _FOREIGN.append(cls)
    return cls


def _protocol_types() -> Tuple[Type, ...]:
    return (DataDependentInit, *_FOREIGN)


def data_init_modules(module: nn.Module) -> List[nn.Module]:
    """The modules in ``module`` (itself included) that implement :class:`DataDependentInit`."""
    types = _protocol_types()
    return [m for m in module.modules() if isinstance(m, types)]


def needs_data_init(module: nn.Module) -> bool:
    """Whether some module in ``module`` is still waiting for its first batch (reads each
    flag on the host once)."""
    return not all(bool(m.initialized) for m in data_init_modules(module))
