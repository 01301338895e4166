"""The training loop: Pyro ELBOs, PyTorch optimizers, any device, progress bar, atomic
checkpoints, exact resume, logs."""

from __future__ import annotations

import csv
import json
import math
import os
import random
import sys
import time
from typing import Any, Dict, List, Optional, Union

import numpy as np
import pyro
import torch
import torch.distributed as dist
from pyro import poutine
from pyro.distributions import is_validation_enabled
from pyro.infer import JitTrace_ELBO, Trace_ELBO, TraceMeanField_ELBO
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler
from tqdm.auto import tqdm

import flowvae
from flowvae.infer.device_elbo import DeviceTrace_ELBO
from flowvae.infer.diagnostics import latent_diagnostics, summarize_latents
from flowvae.infer.evaluate import bits_per_dim

OPTIMIZERS = {"adam": torch.optim.Adam, "adamax": torch.optim.Adamax}
ELBOS = {"trace": DeviceTrace_ELBO, "meanfield": TraceMeanField_ELBO, "jit": JitTrace_ELBO}
PRECISIONS = ("float32", "bf16")
CHECKPOINT = "checkpoint.pt"


class TrainingDiverged(FloatingPointError):
    """The loss became NaN or infinite; the message names the step and the last checkpoint."""


def as_images(data: Any) -> Tensor:
    """A ``uint8`` tensor ``(N, C, H, W)`` from a tensor or a dataset of image items."""
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


def setup_distributed(device: Union[str, torch.device, None] = None):
    """Join the process group that ``torchrun`` describes in the environment (``WORLD_SIZE``,
    ``RANK``, ``MASTER_ADDR``...), if there is one and it is not joined yet: NCCL on GPUs,
    gloo on CPUs. Returns ``(rank, world_size, device)``; ``(0, 1, device)`` when not
    distributed."""
    wanted = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if not dist.is_available():
        return 0, 1, wanted
    if not dist.is_initialized() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        dist.init_process_group("nccl" if wanted.type == "cuda" else "gloo")
    if not dist.is_initialized():
        return 0, 1, wanted
    rank, world = dist.get_rank(), dist.get_world_size()
    if wanted.type == "cuda" and wanted.index is None:
        wanted = torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)))
        torch.cuda.set_device(wanted)
    return rank, world, wanted


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


def _rng_state() -> Dict[str, Any]:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
            "python": random.getstate()}


def _set_rng_state(state: Dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


def save_checkpoint(path: str, module, optim, schedule, epoch: int, step: int,
                    history: List[Dict]) -> None:
    """Write the checkpoint to ``path`` atomically (a temporary file, then a rename), so a
    crash mid-write leaves the previous checkpoint intact."""
    state = {
        "flowvae_version": flowvae.__version__,
        "model": type(module).__name__,
        "config": getattr(module, "config", None),
        "state_dict": module.state_dict(),
        "optim": {"optimizer": optim.state_dict(), "schedule": schedule.state_dict()},
        "param_store": pyro.get_param_store().get_state(),
        "epoch": epoch,
        "step": step,
        "rng": _rng_state(),
        "history": history,
    }
    tmp = f"{path}.tmp"
    torch.save(state, tmp)
    os.replace(tmp, path)


def read_checkpoint(path: str, map_location=None) -> Dict[str, Any]:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path!r}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as err:  # a truncated or foreign file
        raise ValueError(f"{path!r} is not a readable flowvae checkpoint: {err}") from err
    if not isinstance(state, dict) or "state_dict" not in state or "model" not in state:
        raise ValueError(f"{path!r} is not a readable flowvae checkpoint: it holds a "
                         f"{type(state).__name__} without model and state_dict entries")
    return state


def load_model(path: str, map_location=None):
    """Rebuild the model saved in a checkpoint (by :func:`fit`) and load its weights."""
    from flowvae.models import MODELS

    state = read_checkpoint(path, map_location)
    name = state.get("model")
    cls = {cls.__name__: cls for cls in MODELS.values()}.get(name)
    if cls is None or state.get("config") is None:
        raise ValueError(f"{path!r} holds a model flowvae cannot rebuild ({name!r})")
    module = cls(**state["config"])
    module.load_state_dict(state["state_dict"])
    return module


def _check_compatible(state: Dict[str, Any], module, path: str) -> None:
    config = getattr(module, "config", None)
    if "optimizer" not in (state.get("optim") or {}):
        raise ValueError(f"checkpoint {path!r} was written by a flowvae older than 0.2 (a Pyro "
                         "optimizer state); load its weights with load_model, it cannot resume")
    if state.get("model") != type(module).__name__ or state.get("config") != config:
        raise ValueError(
            f"checkpoint {path!r} is of model {state.get('model')} with config "
            f"{state.get('config')}, not of this {type(module).__name__} with config {config}"
        )
    ours, theirs = module.state_dict().keys(), state["state_dict"].keys()
    if ours != theirs:  # the same config, another architecture: another flowvae version
        missing, unknown = sorted(ours - theirs), sorted(theirs - ours)
        raise ValueError(
            f"checkpoint {path!r} does not fit this {type(module).__name__} (written by another "
            f"flowvae version?): it lacks {len(missing)} of its tensors{_e_g(missing)} and has "
            f"{len(unknown)} it does not know{_e_g(unknown)}; train in a new folder"
        )


def _e_g(names: List[str]) -> str:
    return f" (e.g. {names[0]})" if names else ""


@torch.no_grad()
def evaluate_elbo(module, images: Tensor, batch_size: int = 500, device=None) -> Dict[str, float]:
    """The test ELBO of ``module`` on the ``uint8`` ``images`` and whether its latents carry
    information, at one draw ``z ~ q(z|x)`` per image (:mod:`flowvae.infer.diagnostics`).

    Returns:
        ``nelbo`` (the negative ELBO with every term at weight 1, nats per image), ``bpd`` (its
        bits/dim), ``distortion`` (``-E_q log p(x|z)``), ``rate`` (the KL of all latents) and
        per latent site ``rate_<site>``, ``active_units_<site>`` (Burda et al. 2016, over all
        ``images``) and ``mutual_info_<site>`` (estimated per batch of ``batch_size``).
    """
    device = device or next(module.parameters()).device
    batches = []
    for start in range(0, len(images), batch_size):
        x = module.preprocess(images[start : start + batch_size].to(device))
        batches.append(latent_diagnostics(module.model, module.guide, x))
    summary = summarize_latents(batches)
    dequantized = not module.p_x.discrete
    bpd = bits_per_dim(-summary["nelbo"], module.shape, dequantized)
    return {"nelbo": summary.pop("nelbo"), "bpd": bpd, **summary}


def fit(
    module,
    train_data,
    test_data=None,
    *,
    epochs: int = 10,
    batch_size: int = 64,
    lr: float = 1e-3,
    optimizer: str = "adam",
    clip_norm: Optional[float] = None,
    lr_decay: float = 1.0,
    elbo: Union[str, Any] = "trace",
    num_particles: int = 1,
    device: Union[str, torch.device, None] = None,
    out_dir: Optional[str] = None,
    resume: bool = False,
    seed: int = 0,
    progress: Optional[bool] = None,
    max_steps_per_epoch: Optional[int] = None,
    eval_batch_size: int = 500,
    compile: bool = False,
    precision: str = "float32",
    data_on_device: Optional[bool] = None,
    time_limit: Optional[float] = None,
) -> List[Dict[str, float]]:
    """Train a flowvae model (``model`` / ``guide`` / ``preprocess``) on a Pyro ELBO.

    Each epoch shuffles ``train_data`` with a permutation seeded by ``seed + epoch`` and, per
    batch, computes the ELBO loss of ``module.model`` / ``module.guide`` with Pyro
    (``elbo``: ``"trace"``, ``"meanfield"`` or ``"jit"`` for ``Trace_ELBO``,
    ``TraceMeanField_ELBO`` or ``JitTrace_ELBO`` with ``num_particles`` vectorized particles,
    or any Pyro ELBO object such as :class:`flowvae.infer.GeneralizedELBO`) as a
    differentiable tensor, and takes one step of a PyTorch optimizer (Adam or Adamax, the
    gradients' global norm clipped to ``clip_norm``, learning rate times ``lr_decay`` after
    every epoch) over the module's parameters and any ``pyro.param`` the model and guide use.
    This is the gradient of ``pyro.infer.SVI.step`` without its per-parameter optimizer
    bookkeeping (docs/benchmarks.md measures the difference). It shows a tqdm bar with the
    loss and bits/dim, evaluates the test ELBO, appends a row to ``metrics.csv`` /
    ``metrics.jsonl`` and writes ``checkpoint.pt`` (atomically) in ``out_dir``.

    ``resume=True`` continues from ``out_dir/checkpoint.pt``: model, optimizer, Pyro param
    store, epoch, step and RNG states, so that on CPU the losses equal those of an
    uninterrupted run. ``time_limit`` (seconds) stops training after the first epoch that ends
    past it, checkpoint written, for jobs with a wall-clock budget: call again with
    ``resume=True`` to go on. A NaN or infinite loss raises :class:`TrainingDiverged` naming
    the step and the last good checkpoint, before the optimizer applies it.

    **Speed.** ``compile=True`` and ``precision="bf16"`` apply :func:`accelerate` (compiled
    coupling networks; bfloat16 coupling networks with float32 log-determinants and base
    densities). ``data_on_device`` (default: on CUDA) holds the whole training set on the
    device; on CUDA ``torch.backends.cudnn.benchmark`` is switched on.

    **Many processes.** Launched by ``torchrun --nproc_per_node N`` (one or many machines),
    ``fit`` joins the process group (NCCL on GPUs, gloo on CPUs), wraps the ELBO loss in
    ``DistributedDataParallel``, gives every process ``batch_size / N`` points of each global
    batch (a ``DistributedSampler``), and only rank 0 shows progress, evaluates, logs and
    writes checkpoints, which any world size can resume. The model's parameters must live in
    the module (``PyroModule`` s, as flowvae's models are), not only in Pyro's global param
    store, or they are not synchronised.

    Returns:
        the metrics history, one dict per epoch.
    """
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {tuple(OPTIMIZERS)}, got {optimizer!r}")
    if isinstance(elbo, str) and elbo not in ELBOS:
        raise ValueError(f"elbo must be one of {tuple(ELBOS)} or a Pyro ELBO, got {elbo!r}")
    rank, world, device = setup_distributed(device)
    if batch_size % world:
        raise ValueError(f"batch_size={batch_size} must be divisible by the {world} processes")
    if progress is None:  # a bar of carriage returns only where a terminal redraws it
        progress = sys.stderr.isatty()
    progress = progress and rank == 0
    module.to(device)
    images = as_images(train_data)
    test_images = None if test_data is None else as_images(test_data)
    module.preprocess(images[:2].to(device))  # wrong shapes or dtypes fail here, clearly
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    if data_on_device if data_on_device is not None else device.type == "cuda":
        images = images.to(device)
    if not resume:  # the first global batch: the same in one process and in many
        first = list(DistributedSampler(range(len(images)), num_replicas=1, rank=0, seed=seed))
        initialize_on_data(module, images[first[:batch_size]].to(device), seed)
    accelerate(module, compile=compile, precision=precision)
    path = None if out_dir is None else os.path.join(out_dir, CHECKPOINT)
    if out_dir is not None and rank == 0:
        os.makedirs(out_dir, exist_ok=True)

    pyro.clear_param_store()
    if isinstance(elbo, str):
        loss_fn = ELBOS[elbo](num_particles=num_particles,
                              vectorize_particles=num_particles > 1, max_plate_nesting=1)
    else:  # any Pyro ELBO, e.g. flowvae.infer.GeneralizedELBO(kind="mmd")
        loss_fn = elbo
    objective = DifferentiableELBO(module, loss_fn)
    set_schedule_step = hasattr(loss_fn, "warmup_steps")  # GeneralizedELBO's KL warm-up
    if world > 1:
        objective = DistributedDataParallel(objective)
    history: List[Dict[str, float]] = []
    start_epoch, step, fit_started = 0, 0, time.time()
    pyro.set_rng_seed(seed + rank)
    state = None
    if resume:
        if path is None:
            raise ValueError("resume=True needs out_dir, where the checkpoint is")
        state = read_checkpoint(path, map_location=device)
        _check_compatible(state, module, path)
        module.load_state_dict(state["state_dict"])
        _restore_foreign_params(state["param_store"], module)
        start_epoch, step, history = state["epoch"], state["step"], state["history"]
    if set_schedule_step:  # the KL warm-up continues from the run's own step counter
        loss_fn.step = step
    try:
        params = trainable_parameters(module, images[:2].to(device))
    except ValueError as err:  # Pyro validation rejecting NaN distribution parameters
        if all(torch.isfinite(p).all() for p in module.parameters()):
            raise
        raise _diverged(float("nan"), step + 1, start_epoch, path) from err
    optim = OPTIMIZERS[optimizer](params, lr=lr)
    schedule = torch.optim.lr_scheduler.ExponentialLR(optim, gamma=lr_decay)
    if state is not None:
        optim.load_state_dict(state["optim"]["optimizer"])
        schedule.load_state_dict(state["optim"]["schedule"])
        _set_rng_state(state["rng"])
        if rank:  # the checkpoint holds rank 0's streams; the others need their own
            pyro.set_rng_seed(seed + rank + 7919 * start_epoch)

    dims = math.prod(module.shape)
    dequantized = not module.p_x.discrete
    # The same sampler for one and many processes: the global batch at each step is the same
    # block of one seeded permutation, split between the processes.
    sampler = DistributedSampler(range(len(images)), num_replicas=world, rank=rank,
                                 shuffle=True, seed=seed)
    local_batch = batch_size // world
    for epoch in range(start_epoch, epochs):
        module.train()
        sampler.set_epoch(epoch)
        order = torch.tensor(list(sampler), device=images.device)
        batches = [order[i : i + local_batch] for i in range(0, len(order), local_batch)]
        if max_steps_per_epoch is not None:
            batches = batches[:max_steps_per_epoch]
        bar = tqdm(batches, desc=f"epoch {epoch + 1}/{epochs}", disable=not progress,
                   leave=False)
        started, total, count = time.time(), 0.0, 0
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        for index in bar:
            x = module.preprocess(images[index].to(device))
            step += 1
            try:
                value = float(training_step(objective, optim, params, x, clip_norm, world))
            except ValueError as err:  # Pyro validation rejecting NaN distribution parameters
                if all(torch.isfinite(p).all() for p in params):
                    raise
                raise _diverged(float("nan"), step, epoch, path) from err
            if not math.isfinite(value):
                raise _diverged(value, step, epoch, path)
            total, count = total + value * len(index), count + len(index)
            bar.set_postfix(loss=f"{value:.2f}",
                            bpd=f"{bits_per_dim(-value, dims, dequantized):.3f}")
        schedule.step()  # the learning-rate schedule, once per epoch
        total, count = _sum_over_processes([total, float(count)], world, device)
        row = {"epoch": epoch + 1, "step": step, "train_nelbo": total / count,
               "train_bpd": bits_per_dim(-total / count, dims, dequantized),
               "seconds": time.time() - started}
        row["images_per_s"] = count / row["seconds"]
        if device.type == "cuda":
            row["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
        if rank == 0:
            if test_images is not None:
                module.eval()
                test = evaluate_elbo(module, test_images, eval_batch_size, device)
                row.update({f"test_{key}": value for key, value in test.items()})
            if progress:
                tqdm.write(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                    for k, v in row.items()))
            if out_dir is not None:
                _log(out_dir, row)
                save_checkpoint(path, module, optim, schedule, epoch + 1, step, history + [row])
        history.append(row)
        if world > 1:
            dist.barrier()  # nobody reads a checkpoint or runs ahead before rank 0 is done
        out_of_time = time_limit is not None and time.time() - fit_started >= time_limit
        if _any_process(out_of_time, world, device) and epoch + 1 < epochs:
            if progress:
                tqdm.write(f"time limit of {time_limit:.0f} s reached after epoch {epoch + 1}; "
                           "resume=True continues")
            break
    module.eval()
    return history


def training_step(objective: nn.Module, optim: torch.optim.Optimizer, params: List[Tensor],
                  x: Tensor, clip_norm: Optional[float] = None,
                  world: int = 1) -> Union[float, Tensor]:
    """One optimizer step of :func:`fit`: the loss ``objective(x)`` (a
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
    if _any_process(not math.isfinite(value), world, x.device):
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
    left: when some submodule holds an ``initialized`` buffer that is ``False`` (ActNorm,
    weight-normalised layers with ``init_on_first_batch``, SRVAE's ``data_init``), the ELBO of
    ``module.model`` / ``module.guide`` is computed once on ``x`` in training mode, without
    gradients, with the random number streams forked and seeded by ``seed``. :func:`fit`
    calls it on the first global batch, so that every process of a distributed run
    initialises identically, as one process would. Returns whether it ran."""
    flags = [b for name, b in module.named_buffers() if name.rsplit(".", 1)[-1] == "initialized"]
    if all(bool(flag) for flag in flags):
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
    couplings in ``module``."""
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


def _any_process(flag: bool, world: int, device: torch.device) -> bool:
    if world == 1:
        return flag
    tensor = torch.tensor([float(flag)], device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return tensor.item() > 0


def _sum_over_processes(values: List[float], world: int, device: torch.device) -> List[float]:
    if world == 1:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def _diverged(loss: float, step: int, epoch: int, path: Optional[str]) -> TrainingDiverged:
    where = path if path is not None and os.path.exists(path) else "none written"
    return TrainingDiverged(
        f"loss is {loss} at step {step} (epoch {epoch + 1}); training stopped before writing "
        f"any NaN weights. Last good checkpoint: {where}"
    )


def _restore_foreign_params(store_state: Dict[str, Any], module) -> None:
    """Put back param-store entries that are not the module's own parameters (a PyroModule's
    parameters live in the module, and re-registering copies of them would detach the
    module from the optimizer)."""
    own = {name for name, _ in module.named_parameters(remove_duplicate=False)}

    def is_own(name: str) -> bool:  # under the model's name prefix, whichever it was
        return name in own or name.split(".", 1)[-1] in own

    pyro.get_param_store().set_state({
        key: {name: v for name, v in store_state[key].items() if not is_own(name)}
        for key in ("params", "constraints")
    })


def _log(out_dir: str, row: Dict[str, float]) -> None:
    with open(os.path.join(out_dir, "metrics.jsonl"), "a") as f:
        f.write(json.dumps(row) + "\n")
    csv_path = os.path.join(out_dir, "metrics.csv")
    new = not os.path.exists(csv_path)
    with open(csv_path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(row))
        if new:
            writer.writeheader()
        writer.writerow(row)
