"""Old import paths of names that moved, kept for one release with a ``DeprecationWarning``."""

from __future__ import annotations

import importlib
import warnings
from typing import Callable, Dict


def moved(old_module: str, names: Dict[str, str]) -> Callable[[str], object]:
    """A module ``__getattr__`` for ``old_module`` serving each of ``names`` (name -> its new
    module) with a ``DeprecationWarning`` that says where it lives now."""

    def __getattr__(name: str):
        if name not in names:
            raise AttributeError(f"module {old_module!r} has no attribute {name!r}")
        warnings.warn(f"{old_module}.{name} moved to {names[name]}.{name}; the old path goes "
                      "away in the next release", DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(names[name]), name)

    return __getattr__
