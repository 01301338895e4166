"""The training loop: :func:`fit` is a short loop over named parts (a :class:`TrainingRun`
set up once, :func:`train_epoch`, the test evaluation, :mod:`~flowvae.train.callbacks`)."""

from __future__ import annotations

import math
import time
from typing import Dict, List, Optional, Sequence

import torch
from torch import Tensor

from flowvae.infer.evaluate import bits_per_dim, evaluate
from flowvae.train.callbacks import Callback, default_callbacks
from flowvae.train.config import FitConfig
from flowvae.train.distributed import barrier, sum_over_processes
from flowvae.train.inputs import check_fit_inputs
from flowvae.train.run import TrainingRun, as_images
from flowvae.train.step import TrainingDiverged, is_numerical_error, training_step

__all__ = ["TrainingRun", "as_images", "evaluate_elbo", "fit", "train_epoch"]


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


def train_epoch(run: TrainingRun, epoch: int, callbacks: Sequence[Callback]) -> Dict[str, float]:
    """One epoch of optimizer steps (epoch ``epoch``, 0-based); returns its metrics row
    (``epoch``, ``step``, ``train_nelbo``, ``train_bpd``, ``seconds``, ``images_per_s``, and
    ``peak_memory_gib`` on CUDA).

    Raises:
        TrainingDiverged: a non-finite loss or gradient, or a distribution refusing its
            parameters, before the optimizer applies it; the last good state restored.
    """
    run.module.train()
    batches = run.batches(epoch)
    for callback in callbacks:
        callback.on_epoch_start(run, epoch, len(batches))
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
    if sum(key.startswith("rate_") for key in test) == 1:  # one latent: rate_<site> is the
        test.pop("rate", None)  # total rate, and metrics.csv gets no duplicate column
    return {f"test_{key}": value for key, value in test.items()}
