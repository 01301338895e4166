"""The base of flowvae's models: what makes a ``PyroModule`` model a complete Pyro program."""

from __future__ import annotations

import functools
import itertools
from collections import defaultdict
from typing import Callable, Dict, Iterator, Optional, TypeVar

import pyro
import torch
from pyro.nn import PyroModule

__all__ = ["PyroModel", "pyro_program"]

_COUNTERS: Dict[str, Iterator[int]] = defaultdict(itertools.count)

F = TypeVar("F", bound=Callable)


def pyro_program(method: F) -> F:
    """Run a model's ``model`` / ``guide`` method inside its ``PyroModule`` context.

    Why: ``PyroModule`` announces a parameter to Pyro (a ``pyro.param`` site) only while one
    of its modules is being *called*. A flow sampled in the guide runs through plain method
    calls (an nflows ``inverse``), so parameters read there (e.g. a coupling's ``scale``) would
    never reach the trace: ``SVI`` would not train them and ``JitTrace_ELBO`` would find them
    as constants. Inside the context every parameter read is a ``param`` site.
    """

    @functools.wraps(method)
    def wrapper(self: PyroModule, *args, **kwargs):
        # the context PyroModule.__call__ enters; shared by every submodule of the model
        with self._pyro_context:
            return method(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


class PyroModel(PyroModule):
    """The base of flowvae's models: a ``PyroModule`` whose ``model`` and ``guide`` (decorated
    with :func:`pyro_program`) read every parameter through Pyro, under names that start with
    the model's own ``name``.

    Args:
        name: prefix of the model's names in Pyro's param store; ``None``: the class name and a
            counter unique in this process (``"VAE_0"``, ``"VAE_1"``, ...), so that two models
            of one class train side by side under SVI. Pass a fixed name to save and load
            through the param store (:meth:`load_param_store`).
    """

    def __init__(self, name: Optional[str] = None):
        if name is None:
            cls = type(self).__name__
            name = f"{cls}_{next(_COUNTERS[cls])}"
        super().__init__(name=name)

    @property
    def name(self) -> str:
        """The prefix of this model's parameter names in Pyro's param store."""
        return self._pyro_name

    def param_name(self, parameter_name: str) -> str:
        """The param-store name of the parameter called ``parameter_name`` in the state dict."""
        return f"{self.name}.{parameter_name}" if self.name else parameter_name

    @torch.no_grad()
    def load_param_store(self) -> int:
        """Copy this model's entries of Pyro's param store into its parameters and hand the
        store the module's own tensors again; returns the number of tensors copied.

        Call it after ``pyro.get_param_store().load(path)`` on a model built with the same
        arguments and ``name`` as the saved one. Why: a ``PyroModule`` computes with its own
        parameters; the param store only mirrors them, so a loaded store alone changes
        nothing, and SVI would then update the loaded copies instead of the module.
        """
        store = pyro.get_param_store()
        copied = 0
        for name, parameter in self.named_parameters():
            full = self.param_name(name)
            if full in store:
                parameter.copy_(store.get_param(full).unconstrained())
                del store[full]  # the next step registers the module's own tensor
                copied += 1
        return copied
