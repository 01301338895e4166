"""Registries of parts: a name -> class table filled by a class decorator."""

from __future__ import annotations

import importlib
import pkgutil
from typing import Callable, Dict, Type, TypeVar

from pyro.nn.module import to_pyro_module_
from torch import nn

__all__ = ["Registry", "import_submodules", "to_pyro_module"]

T = TypeVar("T", bound=type)


class Registry(Dict[str, Type]):
    """A ``name -> class`` table of one kind of part (guides, priors, likelihoods).

    ``@REGISTRY.register("name")`` adds a class and sets its ``registered_name``; a second
    class under a taken name raises ``ValueError``. Lookups of unknown names raise a
    ``ValueError`` listing the known ones (:meth:`get_class`).

    Example:
        >>> THINGS = Registry("thing")
        >>> @THINGS.register("a")
        ... class A:
        ...     pass
        >>> THINGS.get_class("a") is A, A.registered_name, list(THINGS)
        (True, 'a', ['a'])
    """

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def register(self, name: str) -> Callable[[T], T]:
        """A class decorator that registers the class under ``name``."""

        def add(cls: T) -> T:
            if name in self and self[name] is not cls:
                raise ValueError(f"{self.kind} {name!r} is already registered: {self[name]}")
            self[name] = cls
            cls.registered_name = name  # type: ignore[attr-defined]
            return cls

        return add

    def get_class(self, name: str) -> Type:
        """The class registered as ``name``; ``ValueError`` naming the choices if none is."""
        if name not in self:
            raise ValueError(f"{self.kind} must be one of {tuple(self)}, got {name!r}")
        return self[name]


def import_submodules(package: str) -> None:
    """Import every module of ``package`` (a package's ``__name__``), so that the parts each
    module defines register themselves: a new part is a new file, edited nowhere else."""
    module = importlib.import_module(package)
    for info in sorted(pkgutil.iter_modules(module.__path__), key=lambda i: i.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"{package}.{info.name}")


def to_pyro_module(module: nn.Module) -> None:
    """:func:`pyro.nn.module.to_pyro_module_` of ``module`` and its submodules in place, but for
    the children a part names in its class attribute ``plain_torch_modules``: those stay plain
    torch modules, and the part announces their parameters to Pyro with :func:`pyro.module`
    when it uses them, as Pyro's own tutorials do. Why: ``PyroModule`` cannot subclass a module
    whose class has another metaclass (zuko's flows are ``abc.ABC``: a metaclass conflict).

    Example:
        >>> import abc
        >>> class Foreign(nn.Linear, abc.ABC):  # PyroModule[Foreign] would raise TypeError
        ...     pass
        >>> class Part(nn.Module):
        ...     plain_torch_modules = ("foreign",)
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.foreign, self.own = Foreign(2, 2), nn.Linear(2, 2)
        >>> part = Part()
        >>> to_pyro_module(part)
        >>> type(part.own).__name__, type(part.foreign).__name__
        ('PyroLinear', 'Foreign')
    """
    to_pyro_module_(module, recurse=False)
    plain = getattr(module, "plain_torch_modules", ())
    for name, child in list(module._modules.items()):
        if child is not None and name not in plain:
            to_pyro_module(child)
            setattr(module, name, child)  # PyroModule names the converted child's params
