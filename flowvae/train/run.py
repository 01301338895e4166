"""One call of :func:`~flowvae.train.fit` as an object: :class:`TrainingRun` places the model
and the images, runs the setup pass, builds the objective and the optimizer (resuming from
the checkpoint if asked), and keeps the last good state. The loop
(:mod:`~flowvae.train.loop`) and the callbacks (:mod:`~flowvae.train.callbacks`) both read
it; neither imports the other."""

from __future__ import annotations

import copy
import math
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import pyro
import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler

from flowvae.nn.init import needs_data_init
from flowvae.train.checkpoint import (
    check_compatible,
    read_checkpoint,
    restore_foreign_params,
    set_rng_state,
)
from flowvae.train.config import CHECKPOINT, FitConfig
from flowvae.train.distributed import setup_distributed
from flowvae.train.rundir import make_dir
from flowvae.train.speed import accelerate
from flowvae.train.step import (
    ELBOS,
    OPTIMIZERS,
    DifferentiableELBO,
    TrainingDiverged,
    diverged,
    is_numerical_error,
    trainable_parameters,
)

__all__ = ["TrainingRun", "as_images"]


def as_images(data: Any) -> Tensor:
    """A ``uint8`` tensor ``(N, C, H, W)`` from a tensor or a dataset of image items.

    Raises:
        ValueError: the result is not 4-d ``uint8``.
    """
    if isinstance(data, Tensor):
        images = data
    elif getattr(data, "images", None) is not None and getattr(data, "binarize", None) is None:
        images = data.images
    else:
        images = torch.stack([data[i] for i in range(len(data))])
    if images.dim() != 4 or images.dtype != torch.uint8:
        raise ValueError(f"expected uint8 images (N, C, H, W), got {images.dtype} "
                         f"{tuple(images.shape)}")
    return images


@dataclass
class TrainingRun:
    """Everything one call of :func:`fit` holds: built by :meth:`start`, read and advanced by
    :func:`train_epoch` and the callbacks."""

    module: nn.Module
    config: FitConfig
    rank: int
    world: int
    device: torch.device
    images: Tensor
    test_images: Optional[Tensor]
    path: Optional[str]
    loss_fn: Any = None
    objective: Optional[nn.Module] = None
    params: List[Tensor] = field(default_factory=list)
    optim: Optional[torch.optim.Optimizer] = None
    schedule: Any = None
    start_epoch: int = 0
    step: int = 0
    history: List[Dict[str, float]] = field(default_factory=list)
    started: float = field(default_factory=time.time)
    good: Optional[Dict[str, Any]] = None  # the last good state, see remember()

    @property
    def progress(self) -> bool:
        """Show progress bars and epoch lines: as ``config.progress`` says (``None``: when
        stderr is a terminal), in rank 0 only."""
        shown = sys.stderr.isatty() if self.config.progress is None else self.config.progress
        return bool(shown) and self.rank == 0

    @property
    def dims(self) -> int:
        """Dimensions of one image (for bits/dim)."""
        return math.prod(self.module.shape)

    def elapsed(self) -> float:
        """Seconds since :func:`fit` started."""
        return time.time() - self.started

    @classmethod
    def start(cls, module, train_data, test_data, config: FitConfig) -> TrainingRun:
        """Place the model and data, initialise on the first batch, build the objective,
        resume from the checkpoint if asked, and build the optimizer."""
        rank, world, device = setup_distributed(config.device)
        if config.batch_size % world:
            raise ValueError(f"batch_size={config.batch_size} must be divisible by the {world} "
                             "processes")
        module.to(device)
        images = _checked_images(module, train_data, "train_data", device)
        test_images = (None if test_data is None
                       else _subset(_checked_images(module, test_data, "test_data", device),
                                    config.eval_images))
        path = None if config.out_dir is None else os.path.join(config.out_dir, CHECKPOINT)
        run = cls(module, config, rank, world, device, _place(images, config, device),
                  test_images, path)
        if config.out_dir is not None and rank == 0:
            make_dir(config.out_dir)
        pyro.clear_param_store()
        state = run._resume() if config.resume else None
        run._find_parameters()
        accelerate(module, compile=config.compile, precision=config.precision)
        run._build_objective()
        run.started = time.time()  # the time limit counts from here
        run._build_optimizer(state)
        return run

    def _find_parameters(self) -> None:
        """The one ELBO pass before step 1: it finds the tensors to train and, on a fresh run,
        initialises the data-dependent layers on the first global batch (the same in one
        process and in many)."""
        initialize = not self.config.resume and needs_data_init(self.module)
        x = self.images[:2]
        if initialize:
            first = list(DistributedSampler(range(len(self.images)), num_replicas=1, rank=0,
                                            seed=self.config.seed))
            x = self.images[first[: self.config.batch_size]]
        try:
            self.params = trainable_parameters(self.module, x.to(self.device), initialize,
                                               self.config.seed)
        except ValueError as err:  # Pyro validation rejecting NaN distribution parameters
            if not is_numerical_error(err):
                raise
            raise diverged(str(err), self.step + 1, self.start_epoch, self.path,
                           "the model was not trained") from err

    def _build_objective(self) -> None:
        elbo, particles = self.config.elbo, self.config.num_particles
        if isinstance(elbo, str):
            self.loss_fn = ELBOS[elbo](num_particles=particles,
                                       vectorize_particles=particles > 1, max_plate_nesting=1)
        else:  # any Pyro ELBO, e.g. flowvae.infer.GeneralizedELBO(kind="mmd")
            self.loss_fn = elbo
        self.objective = DifferentiableELBO(self.module, self.loss_fn)
        if self.world > 1:
            self.objective = DistributedDataParallel(self.objective)
        pyro.set_rng_seed(self.config.seed + self.rank)

    def _resume(self) -> Dict[str, Any]:
        if self.path is None:
            raise ValueError("resume=True needs out_dir, where the checkpoint is")
        state = read_checkpoint(self.path, map_location=self.device)
        check_compatible(state, self.module, self.path)
        self.module.load_state_dict(state["state_dict"])
        restore_foreign_params(state["param_store"], self.module)
        self.start_epoch, self.step, self.history = state["epoch"], state["step"], state["history"]
        return state

    def _build_optimizer(self, state: Optional[Dict[str, Any]]) -> None:
        if hasattr(self.loss_fn, "warmup_steps"):  # a KL warm-up continues from the run's step
            self.loss_fn.step = self.step
        self.optim = OPTIMIZERS[self.config.optimizer](self.params, lr=self.config.lr)
        self.schedule = torch.optim.lr_scheduler.ExponentialLR(self.optim,
                                                               gamma=self.config.lr_decay)
        if state is not None:
            self.optim.load_state_dict(state["optim"]["optimizer"])
            self.schedule.load_state_dict(state["optim"]["schedule"])
            set_rng_state(state["rng"])
            if self.rank:  # the checkpoint holds rank 0's streams; the others need their own
                pyro.set_rng_seed(self.config.seed + self.rank + 7919 * self.start_epoch)
        self.remember()

    def remember(self) -> None:
        """Keep a copy of the model, the other trained tensors and the optimizer as the last
        good state (after each finished epoch: the checkpoint's state), in memory: one copy
        of the weights and the optimizer's moments, no file read when restoring."""
        self.good = {"module": copy.deepcopy(self.module.state_dict()),
                     "params": [p.detach().clone() for p in self.params],
                     "optim": copy.deepcopy(self.optim.state_dict()),
                     "epoch": self.history[-1]["epoch"] if self.history else self.start_epoch}

    def restore(self) -> str:
        """Put back the state :meth:`remember` kept; returns what it restored, in words."""
        self.module.load_state_dict(self.good["module"])
        with torch.no_grad():
            for param, value in zip(self.params, self.good["params"]):
                param.copy_(value)
        self.optim.load_state_dict(self.good["optim"])
        epoch = self.good["epoch"]
        when = f"after epoch {epoch}" if epoch else "before training"
        return (f"the model and optimizer in memory were restored to their state {when} "
                "(a copy kept in memory)")

    def diverged(self, err: BaseException, epoch: int,
                 x: Optional[Tensor] = None) -> TrainingDiverged:
        """The error of ``fit`` for ``err`` at the current step on the batch ``x``, with the
        state restored; a batch holding NaN or infinity is named as the cause."""
        reason = str(err)
        if x is not None and x.is_floating_point() and not bool(torch.isfinite(x).all()):
            reason = (f"the batch holds {int(torch.isnan(x).sum())} NaN and "
                      f"{int(torch.isinf(x).sum())} infinite values after module.preprocess")
        return diverged(reason, self.step, epoch, self.path, self.restore())

    def batches(self, epoch: int) -> List[Tensor]:
        """This process's index batches of epoch ``epoch``: the same global batches for one and
        many processes (blocks of one permutation seeded by ``seed`` and ``epoch``, split
        between the processes)."""
        sampler = DistributedSampler(range(len(self.images)), num_replicas=self.world,
                                     rank=self.rank, shuffle=True, seed=self.config.seed)
        sampler.set_epoch(epoch)
        order = torch.tensor(list(sampler), device=self.images.device)
        local = self.config.batch_size // self.world
        batches = [order[i : i + local] for i in range(0, len(order), local)]
        return batches[: self.config.max_steps_per_epoch]


def _checked_images(module, data: Any, name: str, device: torch.device) -> Tensor:
    """``data`` as ``uint8`` images that ``module`` takes, checked on two of them before
    anything trains: a test set of the wrong shape or dtype fails here, not after an epoch."""
    try:
        images = as_images(data)
        module.preprocess(images[:2].to(device))
    except (TypeError, ValueError) as err:
        raise type(err)(f"{name}: {err}") from err
    return images


def _subset(images: Tensor, count: Optional[int]) -> Tensor:
    """``count`` of ``images``, evenly spaced (all when ``count`` is None or not smaller)."""
    if count is None or count >= len(images):
        return images
    return images[torch.linspace(0, len(images) - 1, count).round().long()]


def _place(images: Tensor, config: FitConfig, device: torch.device) -> Tensor:
    """The training images on the device when asked (default: on CUDA, where cuDNN's
    autotuner is switched on too), else where they are."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    on_device = config.data_on_device
    return images.to(device) if (on_device if on_device is not None
                                 else device.type == "cuda") else images
