"""Speed options of the couplings, where flows spend their time."""

from __future__ import annotations

import torch
from torch import nn

from flowvae.train.config import PRECISIONS

__all__ = ["accelerate"]


def accelerate(module: nn.Module, *, compile: bool = False, precision: str = "float32") -> int:
    """Speed options of every :class:`~flowvae.transforms.ConditionalAffineCoupling` in
    ``module``, the place where flows spend their time.

    ``compile=True`` runs each coupling's conditioner network through ``torch.compile``
    (:meth:`~flowvae.transforms.ConditionalAffineCoupling.compile_conditioner`; the state
    dict is unchanged); the first forward+backward pays the compilation (tens of seconds on
    a 2-core CPU). ``precision="bf16"`` runs the conditioner networks under bfloat16 autocast
    while the couplings' scale, shift, output and log-determinant, and everything outside the
    couplings (base density, encoder, decoder), stay in the input's dtype; ``"float32"``
    switches that off again. Densities stay exact (each coupling is still a bijection with an
    exact log-determinant); sampling through a bfloat16 stack inverts it only to about ``1e-3``
    (see :class:`~flowvae.transforms.ConditionalAffineCoupling`). Returns the number of
    couplings in ``module``.

    Raises:
        ValueError: ``precision`` is not one of :data:`PRECISIONS`.
    """
    from flowvae.transforms import ConditionalAffineCoupling

    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    couplings = [m for m in module.modules() if isinstance(m, ConditionalAffineCoupling)]
    for coupling in couplings:
        coupling.compute_dtype = torch.bfloat16 if precision == "bf16" else None
        if compile:
            coupling.compile_conditioner()
    if compile:  # one compiled graph per coupling, (re)compiled per grad mode and batch shape
        limit = torch._dynamo.config.recompile_limit
        torch._dynamo.config.recompile_limit = max(limit, 4 * len(couplings))
    return len(couplings)
