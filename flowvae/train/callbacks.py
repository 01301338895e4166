"""What :func:`flowvae.train.fit` does around its epochs, as small named parts.

A callback sees the :class:`~flowvae.train.run.TrainingRun` (module, optimizer, step,
history, ...) at five points: :meth:`Callback.on_start` before the first epoch (after
resuming), :meth:`Callback.on_epoch_start` before an epoch's first step,
:meth:`Callback.on_step` after every optimizer step,
:meth:`Callback.on_epoch` once an epoch's metrics row is complete (test metrics included),
and :meth:`Callback.should_stop` after the row is recorded. ``fit`` builds
:func:`default_callbacks` from its options; ``fit(..., callbacks=[...])`` appends more, e.g.
a schedule that sets an objective's weight from ``run.step`` (a KL warm-up).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Dict, List

from tqdm.auto import tqdm

from flowvae.infer.evaluate import bits_per_dim
from flowvae.train.checkpoint import save_checkpoint
from flowvae.train.distributed import any_process
from flowvae.train.rundir import write_metrics

if TYPE_CHECKING:  # pragma: no cover
    from flowvae.train.run import TrainingRun

__all__ = ["Callback", "Checkpointing", "MetricsLog", "Progress", "TimeLimit",
           "default_callbacks"]


class Callback:
    """The hooks of :func:`~flowvae.train.fit`; each does nothing here."""

    def on_start(self, run: TrainingRun) -> None:
        """Before the first epoch, once the run is set up (and resumed: ``run.history`` is
        the checkpoint's)."""

    def on_epoch_start(self, run: TrainingRun, epoch: int, steps: int) -> None:
        """Before the first of the ``steps`` optimizer steps of epoch ``epoch`` (0-based)."""

    def on_step(self, run: TrainingRun, loss: float, batch: int) -> None:
        """After optimizer step ``run.step``, whose loss was ``loss`` nats per image on
        ``batch`` images."""

    def on_epoch(self, run: TrainingRun, row: Dict[str, float]) -> None:
        """After an epoch, with its metrics ``row`` (rank 0 only)."""

    def should_stop(self, run: TrainingRun, epoch: int) -> bool:
        """After epoch ``epoch`` (0-based) is recorded: stop training now? (every rank)"""
        return False


class Progress(Callback):
    """A tqdm bar over each epoch's batches with the loss and bits/dim, and one line per
    epoch with its metrics row."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.bar = None

    def on_epoch_start(self, run: TrainingRun, epoch: int, steps: int) -> None:
        self.bar = tqdm(total=steps, desc=f"epoch {epoch + 1}/{run.config.epochs}",
                        disable=not self.enabled, leave=False)

    def on_step(self, run: TrainingRun, loss: float, batch: int) -> None:
        if self.bar is None:
            return
        bpd = bits_per_dim(-loss, run.dims, not run.module.discrete)
        self.bar.set_postfix(loss=f"{loss:.2f}", bpd=f"{bpd:.3f}", refresh=False)
        self.bar.update(1)
        if self.bar.n >= self.bar.total:  # the epoch's last step: the bar goes
            self.bar.close()
            self.bar = None

    def on_epoch(self, run: TrainingRun, row: Dict[str, float]) -> None:
        if self.enabled:
            tqdm.write(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                for k, v in row.items()))


class Checkpointing(Callback):
    """Writes ``run.path`` (atomically) after every epoch: weights, optimizer, schedule,
    param store, epoch, step, RNG states and the history including ``row``."""

    def on_epoch(self, run: TrainingRun, row: Dict[str, float]) -> None:
        save_checkpoint(run.path, run.module, run.optim, run.schedule, row["epoch"], run.step,
                        run.history + [row])


class MetricsLog(Callback):
    """Writes ``out_dir/metrics.jsonl`` and ``out_dir/metrics.csv`` whole from the history,
    after the checkpoint (it runs after :class:`Checkpointing`) and when a run resumes: the
    files hold the checkpoint's rows, one per finished epoch (one fewer, after a crash between
    the two writes, until the run resumes)."""

    def __init__(self, out_dir: str):
        self.out_dir = out_dir

    def on_start(self, run: TrainingRun) -> None:
        if run.config.resume:  # rows of epochs the checkpoint does not hold are dropped
            write_metrics(self.out_dir, run.history)

    def on_epoch(self, run: TrainingRun, row: Dict[str, float]) -> None:
        write_metrics(self.out_dir, run.history + [row])


class TimeLimit(Callback):
    """Stops after the first epoch that ends ``seconds`` after :func:`fit` started (in any
    process), unless it was the last; the checkpoint is written by then."""

    def __init__(self, seconds: float, say: bool):
        self.seconds = seconds
        self.say = say

    def should_stop(self, run: TrainingRun, epoch: int) -> bool:
        out_of_time = run.elapsed() >= self.seconds
        if not any_process(out_of_time, run.world, run.device) or epoch + 1 >= run.config.epochs:
            return False
        if self.say:
            tqdm.write(f"time limit of {self.seconds:.0f} s reached after epoch {epoch + 1}; "
                       "resume=True continues")
        return True


def default_callbacks(run: TrainingRun, progress: bool) -> List[Callback]:
    """What ``fit``'s options ask for, in the order they run: progress, then (rank 0, with an
    ``out_dir``) the checkpoint and the metrics files, then the time limit."""
    callbacks: List[Callback] = [Progress(progress)]
    if run.path is not None and run.rank == 0:
        callbacks += [Checkpointing(), MetricsLog(run.config.out_dir)]
    if run.config.time_limit is not None:
        callbacks.append(TimeLimit(run.config.time_limit, progress))
    return callbacks
