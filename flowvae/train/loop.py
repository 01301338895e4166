"""The training loop: :func:`fit` is a short loop over named parts (a :class:`TrainingRun`
set up once, :func:`train_epoch`, the test evaluation, :mod:`~flowvae.train.callbacks`)."""

from __future__ import annotations

import copy
import math
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

import pyro
import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler

from flowvae.infer.evaluate import bits_per_dim, evaluate
from flowvae.train.callbacks import Callback, Progress, default_callbacks
from flowvae.train.checkpoint import (
    check_compatible,
    read_checkpoint,
    restore_foreign_params,
    set_rng_state,
)
from flowvae.train.config import CHECKPOINT, FitConfig
from flowvae.train.distributed import barrier, setup_distributed, sum_over_processes
from flowvae.train.inputs import check_fit_inputs
from flowvae.train.rundir import make_dir
from flowvae.train.speed import accelerate
from flowvae.train.step import (
    ELBOS,
    OPTIMIZERS,
    DifferentiableELBO,
    TrainingDiverged,
    diverged,
    initialize_on_data,
    is_numerical_error,
    trainable_parameters,
    training_step,
)

__all__ = ["TrainingRun", "as_images", "evaluate_elbo", "fit", "train_epoch"]


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


def evaluate_elbo(module, images: Tensor, batch_size: int = 500, device=None,
                  progress: Optional[bool] = False) -> Dict[str, float]:
    """The test ELBO of ``module`` on the ``uint8`` ``images`` and whether its latents carry
    information: :func:`flowvae.infer.evaluate` without the IWAE bound and without
    ``num_images``.

    Returns:
        ``nelbo`` (the negative ELBO with every term at weight 1, nats per image), ``bpd`` (its
        bits/dim), ``distortion`` (``-E_q log p(x|z)``), ``rate`` (the KL of all latents) and
        per latent site ``rate_<site>``, ``active_units_<site>`` (Burda et al. 2016, over all
        ``images``) and ``mutual_info_<site>`` (estimated per batch of ``batch_size``).
    """
    results = evaluate(module, images, batch_size=batch_size, device=device, progress=progress)
    results.pop("num_images")
    return results


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
        if not config.resume:  # the first global batch: the same in one process and in many
            first = list(DistributedSampler(range(len(images)), num_replicas=1, rank=0,
                                            seed=config.seed))
            initialize_on_data(module, run.images[first[: config.batch_size]].to(device),
                               config.seed)
        accelerate(module, compile=config.compile, precision=config.precision)
        if config.out_dir is not None and rank == 0:
            make_dir(config.out_dir)
        run._build_objective()
        run.started = time.time()  # the time limit counts from here, as it always has
        state = run._resume() if config.resume else None
        run._build_optimizer(state)
        return run

    def _build_objective(self) -> None:
        pyro.clear_param_store()
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
        try:
            self.params = trainable_parameters(self.module, self.images[:2].to(self.device))
        except ValueError as err:  # Pyro validation rejecting NaN distribution parameters
            if not is_numerical_error(err):
                raise
            raise diverged(str(err), self.step + 1, self.start_epoch, self.path,
                           "the model was not trained") from err
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


def train_epoch(run: TrainingRun, epoch: int, callbacks: Sequence[Callback]) -> Dict[str, float]:
    """One epoch of optimizer steps (epoch ``epoch``, 0-based); returns its metrics row
    (``epoch``, ``step``, ``train_nelbo``, ``train_bpd``, ``seconds``, ``images_per_s``, and
    ``peak_memory_gib`` on CUDA).

    Raises:
        TrainingDiverged: a non-finite loss or gradient, or a distribution refusing its
            parameters, before the optimizer applies it; the last good state restored.
    """
    run.module.train()
    progress = next((c for c in callbacks if isinstance(c, Progress)), None)
    batches = run.batches(epoch)
    if progress is not None:
        batches = progress.wrap(run, batches, epoch)
    started, total, count = time.time(), 0.0, 0
    if run.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(run.device)
    for index in batches:
        value = _step(run, run.module.preprocess(run.images[index].to(run.device)), epoch)
        total, count = total + value * len(index), count + len(index)
        for callback in callbacks:
            callback.on_step(run, value, len(index))
    run.schedule.step()  # the learning-rate schedule, once per epoch
    total, count = sum_over_processes([total, float(count)], run.world, run.device)
    nelbo = total / count
    row = {"epoch": epoch + 1, "step": run.step, "train_nelbo": nelbo,
           "train_bpd": _bpd(run, nelbo), "seconds": time.time() - started}
    row["images_per_s"] = count / row["seconds"]
    if run.device.type == "cuda":
        row["peak_memory_gib"] = torch.cuda.max_memory_allocated(run.device) / 2**30
    return row


def _bpd(run: TrainingRun, nelbo: float) -> float:
    return bits_per_dim(-nelbo, run.dims, not run.module.discrete)


def _step(run: TrainingRun, x: Tensor, epoch: int) -> float:
    """One optimizer step on the observation ``x``; its loss per image.

    Raises:
        TrainingDiverged: a non-finite loss or gradient, or a distribution refusing its
            parameters; the last good state restored.
    """
    run.step += 1
    try:
        value = float(training_step(run.objective, run.optim, run.params, x,
                                    run.config.clip_norm, run.world))
    except TrainingDiverged as err:
        raise run.diverged(err, epoch, x) from err
    except ValueError as err:  # Pyro's validation refusing non-finite parameters
        if not is_numerical_error(err):
            raise
        raise run.diverged(err, epoch, x) from err
    if not math.isfinite(value):  # validation off: nothing checked inside the step
        raise run.diverged(TrainingDiverged(f"the loss is {value}"), epoch, x)
    return value


def fit(module, train_data, test_data=None, config: Optional[FitConfig] = None, *,
        callbacks: Sequence[Callback] = (), **options) -> List[Dict[str, float]]:
    """Train a flowvae model (the :class:`~flowvae.models.PyroModel` protocol: ``model`` /
    ``guide`` / ``preprocess`` / ``shape`` / ``discrete``) on a Pyro ELBO.

    The options are the fields of :class:`~flowvae.train.FitConfig`, given as ``config`` or
    as keywords (keywords win). Each epoch shuffles ``train_data`` (``uint8`` images
    ``(N, C, H, W)`` or a dataset of them) with a permutation seeded by ``seed + epoch`` and,
    per batch, computes the ELBO loss of ``module.model`` / ``module.guide`` with Pyro
    (``elbo``: ``"trace"``, ``"meanfield"`` or ``"jit"``, with ``num_particles`` vectorized
    particles, or any Pyro ELBO object such as :class:`flowvae.infer.GeneralizedELBO`) as a
    differentiable tensor, and takes one step of a PyTorch optimizer (Adam or Adamax, the
    gradients' global norm clipped to ``clip_norm``, learning rate times ``lr_decay`` after
    every epoch) over the module's parameters and any ``pyro.param`` the model and guide use.
    This is the gradient of ``pyro.infer.SVI.step`` without its per-parameter optimizer
    bookkeeping (docs/benchmarks.md measures the difference). After each epoch it evaluates
    ``test_data`` (:func:`flowvae.infer.evaluate`: ``test_nelbo``, ``test_bpd``, rate,
    distortion, active units, mutual information) and runs the callbacks: a tqdm bar and
    epoch lines (``progress``), ``metrics.csv`` / ``metrics.jsonl`` and ``checkpoint.pt``
    (atomically) in ``out_dir``, the ``time_limit``, then ``callbacks``.

    ``resume=True`` continues from ``out_dir/checkpoint.pt``: model, optimizer, Pyro param
    store, epoch, step and RNG states, so that on CPU the losses equal those of an
    uninterrupted run. ``time_limit`` (seconds) stops training after the first epoch that ends
    past it, checkpoint written: call again with ``resume=True`` to go on.

    **Speed.** ``compile=True`` and ``precision="bf16"`` apply
    :func:`~flowvae.train.accelerate`; ``data_on_device`` (default: on CUDA) holds the whole
    training set on the device; on CUDA ``torch.backends.cudnn.benchmark`` is switched on.

    **Many processes.** Launched by ``torchrun --nproc_per_node N``, ``fit`` joins the process
    group (NCCL on GPUs, gloo on CPUs), wraps the ELBO loss in ``DistributedDataParallel``,
    gives every process ``batch_size / N`` points of each global batch, and only rank 0 shows
    progress, evaluates, logs and writes checkpoints, which any world size can resume. The
    model's parameters must live in the module (``PyroModule`` s, as flowvae's models are).

    Returns:
        the metrics history, one dict per epoch.

    Raises:
        TrainingDiverged: a NaN or infinite loss or gradient, or a distribution refusing its
            parameters (Pyro's validation), in a step or the test evaluation; the message
            names the step, the epoch and the last good checkpoint, and the model and
            optimizer in memory are restored to their state after the last finished epoch.
        ValueError: bad options, or a checkpoint of another model when resuming.
    """
    config = FitConfig.of(config, options)
    check_fit_inputs(module, train_data, test_data, config, callbacks)
    run = TrainingRun.start(module, train_data, test_data, config)
    hooks = default_callbacks(run, run.progress) + list(callbacks)
    for hook in hooks:
        hook.on_start(run)
    for epoch in range(run.start_epoch, config.epochs):
        row = train_epoch(run, epoch, hooks)
        if run.rank == 0:
            row.update(_test_metrics(run, epoch))
            for hook in hooks:
                hook.on_epoch(run, row)
        run.history.append(row)
        run.remember()
        barrier(run.world)  # nobody reads a checkpoint or runs ahead before rank 0 is done
        if any([hook.should_stop(run, epoch) for hook in hooks]):  # every hook, every rank
            break
    module.eval()
    return run.history


def _test_metrics(run: TrainingRun, epoch: int) -> Dict[str, float]:
    if run.test_images is None:
        return {}
    run.module.eval()
    try:
        test = evaluate_elbo(run.module, run.test_images, run.config.eval_batch_size,
                             run.device, progress=run.progress)
    except ValueError as err:  # weights that give no valid distribution on the test set
        if not is_numerical_error(err):
            raise
        raise run.diverged(err, epoch) from err
    return {f"test_{key}": value for key, value in test.items()}
