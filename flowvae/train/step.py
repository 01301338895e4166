"""One training step: the ELBO as a differentiable tensor, the update, the tensors it updates,
and the data-dependent initialisation that runs before the first step."""

from __future__ import annotations

import math
import os
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
           "trainable_parameters", "training_step"]

#: the optimizers :func:`~flowvae.train.fit` takes by name
OPTIMIZERS = {"adam": torch.optim.Adam, "adamax": torch.optim.Adamax}
#: the Pyro ELBOs :func:`~flowvae.train.fit` takes by name
ELBOS = {"trace": DeviceTrace_ELBO, "meanfield": TraceMeanField_ELBO, "jit": JitTrace_ELBO}


class TrainingDiverged(FloatingPointError):
    """The loss became NaN or infinite; the message names the step and the last checkpoint."""


def diverged(loss: float, step: int, epoch: int, path: Optional[str]) -> TrainingDiverged:
    """The :class:`TrainingDiverged` error of a non-finite ``loss`` at ``step`` (0-based
    ``epoch``), naming the last good checkpoint at ``path`` if it exists."""
    where = path if path is not None and os.path.exists(path) else "none written"
    return TrainingDiverged(
        f"loss is {loss} at step {step} (epoch {epoch + 1}); training stopped before writing "
        f"any NaN weights. Last good checkpoint: {where}"
    )


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
            loss, surrogate = self.elbo.loss_and_surrogate_loss(self._model, self._guide, x)
            return loss.detach() + (surrogate - surrogate.detach())
        return self.elbo.differentiable_loss(self._model, self._guide, x)


def training_step(objective: nn.Module, optim: torch.optim.Optimizer, params: List[Tensor],
                  x: Tensor, clip_norm: Optional[float] = None,
                  world: int = 1) -> Union[float, Tensor]:
    """One optimizer step of :func:`~flowvae.train.fit`: the loss ``objective(x)`` (a
    :class:`DifferentiableELBO`, or its ``DistributedDataParallel`` wrapper with ``world``
    processes), its gradient, the global gradient norm clipped to ``clip_norm``, ``optim``'s
    update. Returns the loss per data point; a non-finite loss (in any process) is returned
    without updating anything. With Pyro's validation off (``pyro.enable_validation(False)``)
    the loss is not checked and is returned as a 0-d tensor: the step reads nothing on the
    host, so the device never waits for it (the caller decides when to read the value)."""
    optim.zero_grad(set_to_none=True)
    # DDP averages gradients over processes, each holding 1/world of the global batch:
    # times world, it is the gradient of the global batch's summed loss
    loss = objective(x) * world
    if not is_validation_enabled():
        _update(loss, optim, params, clip_norm)
        return loss.detach() / world / len(x)
    value = loss.item() / world / len(x)
    if any_process(not math.isfinite(value), world, x.device):
        return value if not math.isfinite(value) else math.nan
    _update(loss, optim, params, clip_norm)
    return value


def _update(loss: Tensor, optim: torch.optim.Optimizer, params: List[Tensor],
            clip_norm: Optional[float]) -> None:
    loss.backward()
    if clip_norm:
        torch.nn.utils.clip_grad_norm_(params, clip_norm)
    optim.step()


def trainable_parameters(module, x: Tensor) -> List[Tensor]:
    """The tensors an optimizer of ``module``'s ELBO must update: the module's parameters,
    then the unconstrained values of any other ``pyro.param`` its guide and model use
    (found, as ``pyro.infer.SVI`` finds them, by tracing both on the raw images ``x`` in
    eval mode, without gradients and without touching the random number streams)."""
    params = list(module.parameters())
    seen = {id(p) for p in params}
    with poutine.trace(param_only=True) as capture:
        # a look, not a training step (e.g. no first-batch initialisation on x)
        _elbo_pass(module, x, training=False)
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
