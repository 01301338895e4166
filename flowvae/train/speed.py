"""Speed options of the layers where flows spend their time, found by a small protocol."""

from __future__ import annotations

from typing import List, Optional, Protocol, runtime_checkable

import torch
from torch import nn

from flowvae.train.config import PRECISIONS

__all__ = ["Accelerable", "accelerate"]


@runtime_checkable
class Accelerable(Protocol):
    """A layer whose inner network :func:`accelerate` may compile or run in another dtype
    (flowvae's affine couplings are; a new layer opts in by providing both members).

    Attributes:
        compute_dtype: the dtype its network runs in under ``torch.autocast``; ``None``: the
            input's dtype. Whatever it is, the layer's outputs and log-determinant stay in
            the input's dtype.
    """

    compute_dtype: Optional[torch.dtype]

    def compile_conditioner(self, **compile_kwargs) -> None:
        """Run the inner network through ``torch.compile`` (the state dict unchanged)."""


def accelerate(module: nn.Module, *, compile: bool = False, precision: str = "float32") -> int:
    """Speed options of every :class:`Accelerable` layer in ``module`` (flowvae's couplings,
    the place where flows spend their time).

    ``compile=True`` runs each layer's conditioner network through ``torch.compile``
    (:meth:`Accelerable.compile_conditioner`; the state dict is unchanged); the first
    forward+backward pays the compilation (tens of seconds on a 2-core CPU).
    ``precision="bf16"`` runs the conditioner networks under bfloat16 autocast while the
    couplings' scale, shift, output and log-determinant, and everything outside the couplings
    (base density, encoder, decoder), stay in the input's dtype; ``"float32"`` switches that
    off again. Densities stay exact (each coupling is still a bijection with an exact
    log-determinant); sampling through a bfloat16 stack inverts it only to about ``1e-3``
    (see :class:`~flowvae.transforms.ConditionalAffineCoupling`). Returns the number of
    such layers in ``module``.

    Raises:
        ValueError: ``precision`` is not one of :data:`PRECISIONS`.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    layers: List[Accelerable] = [m for m in module.modules() if isinstance(m, Accelerable)]
    for layer in layers:
        layer.compute_dtype = torch.bfloat16 if precision == "bf16" else None
        if compile:
            layer.compile_conditioner()
    if compile:  # one compiled graph per layer, (re)compiled per grad mode and batch shape
        limit = torch._dynamo.config.recompile_limit
        torch._dynamo.config.recompile_limit = max(limit, 4 * len(layers))
    return len(layers)
