"""Input checks for the public entry points: one place, one message format.

Every check raises with a message that starts with the name of the argument (prefixed by the
class that received it) and says what was expected and what came instead, e.g.
``ConditionalRealNVP: inputs: expected dtype torch.float32 (the transform's parameters), got
torch.int64``.

Two kinds of check:

* **Metadata checks** (shape, dtype, empty batch, constructor arguments) read no tensor values,
  cost nothing on any device and are always on.
* **Value checks** (finiteness, value ranges) need the host to read the tensor (a device
  synchronisation on GPUs). They follow Pyro's validation switch, ``pyro.enable_validation``
  (on by default, off under ``python -O``): with validation off they do nothing, so that no
  host synchronisation happens and tensors on the ``meta`` device pass.

dtype contract: a transform computes in the dtype of its parameters, and its ``inputs`` and
``context`` must already have that dtype. Nothing is cast silently: casting float64 down loses
precision the caller asked for, and integer pixels need a dequantisation and a scale that only
the caller can choose. The message says which conversion to make.

A flow checks its arguments once, at its entry, and runs its layers unchecked
(:class:`flowvae.transforms.CheckedTransform`), so that a flow of twenty couplings costs
one metadata check and one finiteness check (a single host read), not twenty-one. Other
composites may run their parts inside :func:`nested` to skip the parts' value checks.
"""

from __future__ import annotations

import math
import numbers
import operator
import threading
from contextlib import contextmanager
from typing import Dict, Iterator, Optional, Sequence

import torch
from pyro.distributions.util import is_validation_enabled
from torch import Tensor, nn

__all__ = [
    "check_context",
    "check_finite",
    "check_floating",
    "check_in_range",
    "check_init_batch",
    "check_int",
    "check_nonempty",
    "check_shape",
    "check_temperature",
    "check_transform_inputs",
    "module_dtype",
    "nested",
    "value_checks_enabled",
]


class _Nesting(threading.local):
    depth = 0


_NESTING = _Nesting()


@contextmanager
def nested() -> Iterator[None]:
    """Within this block, value checks are skipped: the caller has checked the values already."""
    _NESTING.depth += 1
    try:
        yield
    finally:
        _NESTING.depth -= 1


def value_checks_enabled() -> bool:
    """Whether checks that read tensor values run: Pyro's validation is on and no enclosing
    entry point has checked the same values already (see :func:`nested`)."""
    # Pyro's switch first: with validation off nothing else is read (torch.compile traces
    # this without a graph break)
    return is_validation_enabled() and _NESTING.depth == 0


def _where(owner: Optional[str], name: str) -> str:
    return f"{owner}: {name}" if owner else name


# ---- metadata checks (always on) ------------------------------------------------------------

def check_shape(name: str, tensor: Optional[Tensor], expected: Sequence[int]) -> None:
    """Raise a ValueError naming the expected ``(B, *expected)`` and received shapes."""
    if tensor is None or tuple(tensor.shape[1:]) != tuple(expected):
        got = None if tensor is None else tuple(tensor.shape)
        raise ValueError(f"{name}: expected shape (B, {', '.join(map(str, expected))}), got {got}")


def check_context(
    context: Optional[Tensor],
    context_features: Optional[int],
    batch_size: int,
    owner: Optional[str] = None,
) -> None:
    """Raise a ValueError unless ``context`` is ``(batch_size, context_features)`` or both None."""
    if context is not None and not isinstance(context, Tensor):
        raise TypeError(f"{_where(owner, 'context')}: expected a torch.Tensor, got {type(context)}")
    if context_features is None:
        if context is not None:
            raise ValueError(
                f"{_where(owner, 'context')}: this transform takes no context, got a context of "
                f"shape {tuple(context.shape)}"
            )
        return
    if context is None or tuple(context.shape) != (batch_size, context_features):
        got = None if context is None else tuple(context.shape)
        raise ValueError(
            f"{_where(owner, 'context')}: expected shape ({batch_size}, {context_features}), "
            f"got {got}"
        )


def check_nonempty(owner: Optional[str], name: str, tensor: Tensor) -> None:
    """Raise a ValueError if ``tensor`` holds no batch element."""
    if tensor.dim() == 0 or tensor.shape[0] == 0:
        raise ValueError(
            f"{_where(owner, name)}: expected a non-empty batch, got shape {tuple(tensor.shape)}"
        )


def check_floating(
    owner: Optional[str], name: str, tensor: Tensor, dtype: Optional[torch.dtype] = None
) -> None:
    """Raise a TypeError unless ``tensor`` is floating point (and of ``dtype`` when given)."""
    if not isinstance(tensor, Tensor):
        raise TypeError(f"{_where(owner, name)}: expected a torch.Tensor, got {type(tensor)}")
    if dtype is not None and tensor.dtype != dtype:
        hint = (
            "scale and dequantize integer pixels first, e.g. (x + torch.rand_like(x)) / 256"
            if not tensor.dtype.is_floating_point
            else f"convert it with .to({dtype}) or the transform with .to({tensor.dtype})"
        )
        raise TypeError(
            f"{_where(owner, name)}: expected dtype {dtype} (the transform's parameters), got "
            f"{tensor.dtype}; {hint}"
        )
    if not tensor.dtype.is_floating_point:
        raise TypeError(
            f"{_where(owner, name)}: expected a floating-point tensor, got {tensor.dtype}"
        )


def module_dtype(module: nn.Module) -> Optional[torch.dtype]:
    """The dtype of the module's first floating-point parameter, or None if it has none."""
    for p in module._parameters.values():  # its own first: no walk over the submodules
        if p is not None and p.dtype.is_floating_point:
            return p.dtype
    for p in module.parameters():
        if p.dtype.is_floating_point:
            return p.dtype
    return None


def check_int(
    owner: Optional[str], name: str, value, minimum: int = 1, optional: bool = False
) -> Optional[int]:
    """``value`` as an ``int >= minimum`` (or None when ``optional``); a TypeError for a
    non-integer (floats and bools included), a ValueError below ``minimum``."""
    if value is None and optional:
        return None
    if isinstance(value, bool):
        raise TypeError(f"{_where(owner, name)}: expected an integer, got {value!r}")
    try:
        number = operator.index(value)
    except TypeError:
        raise TypeError(f"{_where(owner, name)}: expected an integer, got {value!r}") from None
    if number < minimum:
        raise ValueError(f"{_where(owner, name)}: expected an integer >= {minimum}, got {number}")
    return number


def check_temperature(owner: Optional[str], value) -> float:
    """``value`` as a sampling temperature: a finite real number > 0 (a ValueError, or a
    TypeError for a non-number)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{_where(owner, 'temperature')}: expected a number > 0, got {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{_where(owner, 'temperature')}: expected a finite number > 0 (1: "
                         f"the model's own spread), got {value!r}")
    return float(value)


def check_transform_inputs(
    owner: str,
    inputs: Tensor,
    context: Optional[Tensor],
    shape: Sequence[int],
    context_features: Optional[int],
    dtype: Optional[torch.dtype],
) -> None:
    """Every check of a transform's entry point: ``inputs`` a non-empty ``(B, *shape)`` tensor
    of ``dtype``, ``context`` a ``(B, context_features)`` tensor of ``dtype`` (or None when
    ``context_features`` is None). Finiteness is checked with the results, by
    :func:`check_finite`."""
    check_floating(owner, "inputs", inputs, dtype)
    check_shape(f"{owner}: inputs", inputs, shape)
    check_nonempty(owner, "inputs", inputs)
    check_context(context, context_features, inputs.shape[0], owner)
    if context is not None:
        check_floating(owner, "context", context, dtype)


# ---- value checks (behind Pyro's validation switch) -----------------------------------------

def check_finite(
    owner: Optional[str],
    results: Optional[Dict[str, Optional[Tensor]]] = None,
    **arguments: Optional[Tensor],
) -> None:
    """Raise a ValueError naming the first argument, then the first result, holding NaN or
    infinity. A non-finite result from finite arguments is an overflow of the dtype or a
    non-finite parameter.

    Call it after computing ``results`` (NaN propagates without an error, so nothing is lost)
    to check arguments and results with one host synchronisation; nothing at all when
    :func:`value_checks_enabled` is false. The check is one fused reduction (a sum per tensor,
    stacked and summed: no copy of the values, one host read): the sum of all the values is
    finite exactly when every value is, unless finite values overflow the sum, which a
    second, exact pass tells apart.
    """
    if not value_checks_enabled():
        return
    tensors = {**arguments, **(results or {})}
    sums = [t.sum() for t in tensors.values() if t is not None]
    if not sums or bool(torch.stack(sums).sum().isfinite()):
        return
    for name, tensor in tensors.items():
        if tensor is not None and not bool(torch.isfinite(tensor).all()):
            nan = int(torch.isnan(tensor).sum())
            inf = int(torch.isinf(tensor).sum())
            why = (
                f" from finite arguments: the computation overflows {tensor.dtype} (rescale the "
                "inputs) or the parameters are not finite"
                if name not in arguments else ""
            )
            raise ValueError(
                f"{_where(owner, name)}: expected finite values, got {nan} NaN and {inf} "
                f"infinite of {tensor.numel()} (shape {tuple(tensor.shape)}){why}"
            )


def check_init_batch(owner: str, inputs: Tensor) -> None:
    """The batch of a data-dependent initialisation (ActNorm, weight norm): non-empty always,
    finite while Pyro's validation is on. Unlike :func:`check_finite` it ignores :func:`nested`:
    inside a composite the batch was computed by the layers before, not checked by its caller.
    It runs once per module, so its host synchronisation does not recur."""
    if inputs.dim() == 0 or inputs.shape[0] == 0:
        raise ValueError(
            f"{owner}: data-dependent initialisation needs a non-empty batch, got shape "
            f"{tuple(inputs.shape)}"
        )
    if is_validation_enabled() and not bool(torch.isfinite(inputs).all()):
        raise ValueError(
            f"{owner}: data-dependent initialisation got a batch holding "
            f"{int(torch.isnan(inputs).sum())} NaN and {int(torch.isinf(inputs).sum())} infinite "
            f"values (shape {tuple(inputs.shape)}); its scale and shift would be NaN"
        )


def check_in_range(
    owner: Optional[str], name: str, tensor: Tensor, low: float, high: float
) -> None:
    """Raise a ValueError unless every value of ``tensor`` lies in ``[low, high]`` (NaN fails).
    Use it for pixel data, e.g. ``check_in_range("VAE", "x", x, 0.0, 1.0)``; nothing at all when
    :func:`value_checks_enabled` is false."""
    if tensor.numel() == 0 or not value_checks_enabled():
        return
    if bool(((tensor >= low) & (tensor <= high)).all()):
        return
    finite = tensor[torch.isfinite(tensor)]
    seen = (
        f"[{finite.min().item():.4g}, {finite.max().item():.4g}]" if finite.numel() else "none"
    )
    bad = int((~((tensor >= low) & (tensor <= high))).sum())
    raise ValueError(
        f"{_where(owner, name)}: expected values in [{low:g}, {high:g}], got {bad} of "
        f"{tensor.numel()} outside (finite values seen: {seen})"
    )
