"""One training step: the ELBO as a differentiable tensor, the update, the tensors it updates,
and the data-dependent initialisation that runs before the first step."""

from __future__ import annotations

import math
import os
import re
import warnings
from typing import List, Optional, Union

import torch
from pyro import poutine
from pyro.distributions import is_validation_enabled
from pyro.infer import JitTrace_ELBO, Trace_ELBO, TraceMeanField_ELBO
from torch import Tensor, nn

from flowvae.infer.device_elbo import DeviceTrace_ELBO
from flowvae.nn.init import needs_data_init
from flowvae.train.distributed import any_process

__all__ = ["ELBOS", "OPTIMIZERS", "DifferentiableELBO", "TrainingDiverged", "initialize_on_data",
           "is_numerical_error", "trainable_parameters", "training_step"]

#: the optimizers :func:`~flowvae.train.fit` takes by name
OPTIMIZERS = {"adam": torch.optim.Adam, "adamax": torch.optim.Adamax}
#: the Pyro ELBOs :func:`~flowvae.train.fit` takes by name
ELBOS = {"trace": DeviceTrace_ELBO, "meanfield": TraceMeanField_ELBO, "jit": JitTrace_ELBO}


class TrainingDiverged(FloatingPointError):
    """Training produced a NaN or infinite loss or gradient, or a distribution refused its
    parameters (Pyro's argument validation). :func:`~flowvae.train.fit`'s message names the
    step, the epoch, the last good checkpoint and the state the model was restored to;
    :func:`training_step`'s names only what was not finite."""


#: what torch's distribution argument validation and :func:`flowvae.validation.check_finite`
#: say about non-finite or out-of-support values: numbers gone bad, not a programming error
_NUMERICAL_MESSAGES = ("Expected parameter ", "Expected value argument ",
                       "expected finite values")


def is_numerical_error(err: BaseException) -> bool:
    """Whether ``err``, raised inside a training step, is a distribution or transform
    refusing non-finite or out-of-support numbers (a divergence), not a wrong shape or type."""
    return isinstance(err, ValueError) and any(m in str(err) for m in _NUMERICAL_MESSAGES)


def diverged(reason: str, step: int, epoch: int, path: Optional[str],
             restored: str) -> TrainingDiverged:
    """The :class:`TrainingDiverged` error of ``fit``: ``reason`` (what was not finite) at
    ``step`` of 0-based ``epoch``, the last good checkpoint at ``path`` (if it exists) and
    what the in-memory model was ``restored`` to."""
    where = path if path is not None and os.path.exists(path) else "none written"
    reason = _summary(reason)
    return TrainingDiverged(f"{reason} at step {step} (epoch {epoch + 1}); {restored}. "
                            f"Last good checkpoint: {where}")


def _summary(message: str) -> str:
    """A validation error's message in one short line: without the offending tensor, the
    trace Pyro appends, or the distribution's argument shapes."""
    line = message.strip().split("\n")[0].split(", but found")[0]
    line = re.sub(r" \(Tensor of shape \([^)]*\)\)", "", line)
    line = re.sub(r"of distribution (\w+)\(.*\) to satisfy", r"of distribution \1 to satisfy", line)
    return line[:300]


class DifferentiableELBO(nn.Module):
    """``forward(x)`` returns the ELBO loss of ``module.model`` / ``module.guide`` as a tensor
    (Pyro's ``differentiable_loss``), so that ``DistributedDataParallel`` can wrap it and
    average the gradients of the module's parameters across processes."""

    def __init__(self, module: nn.Module, elbo):
        super().__init__()
        self.module = module
        self.elbo = elbo
        # one bound method each, kept: JitTrace_ELBO keys its compiled graph on their ids
        self._model, self._guide = module.model, module.guide

    def forward(self, x: Tensor) -> Tensor:
        if isinstance(self.elbo, JitTrace_ELBO):
            # Pyro's JitTrace_ELBO.differentiable_loss adds the loss, not detached, to the
            # surrogate: twice SVI's gradient (pyro 1.9)
            with warnings.catch_warnings():
                # Pyro's JitTrace_ELBO is built on torch.jit.trace, which torch deprecates with
                # a FutureWarning per trace: nothing a flowvae user can act on (--elbo jit is
                # Pyro's); the TracerWarnings about the traced graph still show
                warnings.filterwarnings("ignore", message=r"`torch\.jit\.trace` is deprecated",
                                        category=FutureWarning)
                loss, surrogate = self.elbo.loss_and_surrogate_loss(self._model, self._guide,
                                                                    x)
            return loss.detach() + (surrogate - surrogate.detach())
        return self.elbo.differentiable_loss(self._model, self._guide, x)


def training_step(objective: nn.Module, optim: torch.optim.Optimizer, params: List[Tensor],
                  x: Tensor, clip_norm: Optional[float] = None,
                  world: int = 1) -> Union[float, Tensor]:
    """One optimizer step of :func:`~flowvae.train.fit`: the loss ``objective(x)`` (a
    :class:`DifferentiableELBO`, or its ``DistributedDataParallel`` wrapper with ``world``
    processes), its gradient, the global gradient norm clipped to ``clip_norm``, ``optim``'s
    update. Returns the loss per data point.

    With Pyro's validation on (the default), the loss and the gradient's global norm are read
    on the host in one synchronisation, and if either is NaN or infinite (in any process)
    nothing is updated and :class:`TrainingDiverged` is raised. With validation off
    (``pyro.enable_validation(False)``) nothing is checked and the loss is returned as a 0-d
    tensor: the step reads nothing on the host, so the device never waits for it (the caller
    decides when to read the value)."""
    optim.zero_grad(set_to_none=True)
    # DDP averages gradients over processes, each holding 1/world of the global batch:
    # times world, it is the gradient of the global batch's summed loss
    loss = objective(x) * world
    loss.backward()
    checked = is_validation_enabled()
    grads = [p.grad for p in params if p.grad is not None]
    norm = torch.nn.utils.get_total_norm(grads) if grads and (checked or clip_norm) else None
    value = _checked_loss(loss, norm, world) / world / len(x) if checked else None
    if clip_norm and norm is not None:
        torch.nn.utils.clip_grads_with_norm_(grads, clip_norm, norm)
    optim.step()
    return value if checked else loss.detach() / world / len(x)


def _checked_loss(loss: Tensor, norm: Optional[Tensor], world: int) -> float:
    """``loss`` on the host; raise :class:`TrainingDiverged` unless it and the gradients'
    norm are finite in every process (one host read for both)."""
    loss = loss.detach()
    value, norm_value = torch.stack([loss, loss if norm is None else norm.to(loss.dtype)]).tolist()
    bad = not (math.isfinite(value) and math.isfinite(norm_value))
    if not any_process(bad, world, loss.device):
        return value
    if not math.isfinite(value):
        raise TrainingDiverged(f"the loss is {value}")
    if bad:
        raise TrainingDiverged(f"the gradients' norm is {norm_value}")
    raise TrainingDiverged("another process's loss or gradients are not finite")


def trainable_parameters(module, x: Tensor, initialize: bool = False,
                         seed: int = 0) -> List[Tensor]:
    """The tensors an optimizer of ``module``'s ELBO must update: the module's parameters,
    then the unconstrained values of any other ``pyro.param`` its guide and model use
    (found, as ``pyro.infer.SVI`` finds them, by tracing both on the raw images ``x``
    without gradients and without touching the random number streams).

    The trace is one ELBO pass in eval mode (a look, not a training step); with
    ``initialize=True`` and data-dependent initialisations left in ``module``, the same pass
    runs in training mode seeded by ``seed`` and initialises them on ``x``, as
    :func:`initialize_on_data` does: :func:`~flowvae.train.fit`'s setup computes the ELBO
    once before step 1."""
    training = initialize and needs_data_init(module)
    with poutine.trace(param_only=True) as capture:
        _elbo_pass(module, x, training=training, seed=seed if training else None)
    params = list(module.parameters())
    seen = {id(p) for p in params}
    for site in capture.trace.nodes.values():
        value = site["value"].unconstrained()
        if id(value) not in seen:
            seen.add(id(value))
            params.append(value)
    return params


def initialize_on_data(module, x: Tensor, seed: int = 0) -> bool:
    """Run ``module``'s data-dependent initialisations on the raw images ``x``, if it has any
    left: when some submodule implements :class:`flowvae.nn.init.DataDependentInit` and is not
    initialised yet (ActNorm, weight-normalised layers with ``init_on_first_batch``, SRVAE's
    ``data_init``), the ELBO of ``module.model`` / ``module.guide`` is computed once on ``x``
    in training mode, without gradients, with the random number streams forked and seeded by
    ``seed``. :func:`~flowvae.train.fit` calls it on the first global batch, so that every
    process of a distributed run initialises identically, as one process would. Returns
    whether it ran."""
    if not needs_data_init(module):
        return False
    _elbo_pass(module, x, training=True, seed=seed)
    return True


def _elbo_pass(module, x: Tensor, training: bool, seed: Optional[int] = None) -> None:
    """Compute ``module``'s ELBO once on the raw images ``x``, in training or eval mode (the
    module's mode is restored after), without gradients and with the random number streams
    forked (seeded by ``seed`` inside, if given), so that training's streams are untouched."""
    was_training = module.training
    module.train(training)
    try:
        devices = [x.device] if x.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            if seed is not None:
                torch.manual_seed(seed)
            Trace_ELBO(max_plate_nesting=1).loss(module.model, module.guide,
                                                module.preprocess(x))
    finally:
        module.train(was_training)
