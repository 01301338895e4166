"""Transforms whose ``forward`` and ``inverse`` are entry points: the arguments are checked once
there, and a composite runs its parts' unchecked ``_forward`` / ``_inverse``, so that a flow
of twenty couplings costs one check, not twenty-one."""

from __future__ import annotations

from typing import Optional, Tuple

from nflows.transforms.base import CompositeTransform, Transform
from torch import Tensor

from flowvae.validation import check_finite, check_transform_inputs, module_dtype

__all__ = ["Chain", "CheckedTransform"]


class CheckedTransform(Transform):
    """An nflows Transform (data -> noise) whose ``forward`` / ``inverse`` check their
    arguments through :mod:`flowvae.validation` and then run ``_forward`` / ``_inverse``, the
    math, which subclasses implement and composites call directly.

    The checks: ``inputs`` a non-empty ``(B, *shape)`` tensor in the dtype of the parameters
    and ``context`` a ``(B, context_features)`` tensor of that dtype (or ``None`` when
    ``context_features`` is ``None``), always (metadata only: no value is read); while Pyro's
    validation is on (``pyro.enable_validation``), inputs, context and results finite, in one
    host read. Errors start with the name of the class the user called (:attr:`entry_name`).

    Subclasses set ``shape`` and ``context_features``.
    """

    shape: Tuple[int, ...]
    context_features: Optional[int]

    @property
    def entry_name(self) -> str:
        """The name errors start with: the class the user called (``ConditionalRealNVP``
        for the flow it built), else this object's class."""
        return self.__dict__.get("_entry_name") or type(self).__name__

    def _check(self, inputs: Tensor, context: Optional[Tensor]) -> None:
        check_transform_inputs(self.entry_name, inputs, context, self.shape,
                               self.context_features, module_dtype(self))

    def forward(self, inputs: Tensor, context: Optional[Tensor] = None):
        return self._entry("forward", self._forward, inputs, context)

    def inverse(self, inputs: Tensor, context: Optional[Tensor] = None):
        return self._entry("inverse", self._inverse, inputs, context)

    def _entry(self, direction: str, run, inputs: Tensor, context: Optional[Tensor]):
        self._check(inputs, context)
        outputs, logabsdet = run(inputs, context)
        check_finite(f"{self.entry_name}.{direction}", dict(outputs=outputs, logabsdet=logabsdet),
                     inputs=inputs, context=context)
        return outputs, logabsdet

    def _forward(self, inputs: Tensor, context: Optional[Tensor]) -> Tuple[Tensor, Tensor]:
        raise NotImplementedError

    def _inverse(self, inputs: Tensor, context: Optional[Tensor]) -> Tuple[Tensor, Tensor]:
        raise NotImplementedError


def _unchecked(transform: Transform, inverse: bool):
    if isinstance(transform, CheckedTransform):
        return transform._inverse if inverse else transform._forward
    return transform.inverse if inverse else transform


class Chain(CompositeTransform):
    """nflows' ``CompositeTransform`` (same state-dict names) for the inside of a checked
    flow: its parts run without checking their arguments again."""

    def forward(self, inputs: Tensor, context: Optional[Tensor] = None):
        return self._cascade(inputs, [_unchecked(t, False) for t in self._transforms], context)

    def inverse(self, inputs: Tensor, context: Optional[Tensor] = None):
        return self._cascade(inputs, [_unchecked(t, True) for t in self._transforms[::-1]],
                             context)
