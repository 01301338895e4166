"""Training flowvae models: :func:`fit` and its parts.

* :mod:`~flowvae.train.config`: :class:`FitConfig`, every option of :func:`fit` (shared with
  the CLI; no torch import);
* :mod:`~flowvae.train.loop`: :func:`fit`, a short loop over a :class:`TrainingRun`,
  :func:`train_epoch`, the test evaluation and the callbacks;
* :mod:`~flowvae.train.run`: :class:`TrainingRun`, one call of :func:`fit` (set up once,
  read by the loop and the callbacks), :func:`as_images`;
* :mod:`~flowvae.train.step`: :func:`training_step`, :class:`DifferentiableELBO`,
  :func:`trainable_parameters`, :func:`initialize_on_data`;
* :mod:`~flowvae.train.callbacks`: progress bar, metrics files, checkpointing, time limit;
* :mod:`~flowvae.train.tensorboard`: :class:`TensorBoard`, a callback that logs every metric
  and sample / reconstruction grids for ``tensorboard --logdir``;
* :mod:`~flowvae.train.checkpoint`: :func:`save_checkpoint`, :func:`read_checkpoint`,
  :func:`load_model` (checksummed, loaded with ``weights_only=True``);
* :mod:`~flowvae.train.rundir`: :func:`prepare_out_dir` (the ``--resume`` / ``--overwrite``
  rule of the CLI and the examples), atomic writes, :func:`write_metrics`,
  :class:`RunDirectoryError`;
* :mod:`~flowvae.train.distributed`: :func:`setup_distributed` (``torchrun``);
* :mod:`~flowvae.train.speed`: :func:`accelerate` (compiled / bfloat16 couplings, found by
  the :class:`Accelerable` protocol).
"""

import importlib
from typing import Any, List

_WHERE = {  # name -> its module, imported on first use: the CLI reads .config without torch
    "evaluate": "flowvae.infer.evaluate",
    **{name: "flowvae.train.speed" for name in ("Accelerable", "accelerate")},
    **{name: "flowvae.train.callbacks" for name in (
        "Callback", "Checkpointing", "MetricsLog", "Progress", "TimeLimit", "default_callbacks")},
    **{name: "flowvae.train.checkpoint" for name in (
        "load_model", "read_checkpoint", "save_checkpoint")},
    **{name: "flowvae.train.config" for name in ("CHECKPOINT", "PRECISIONS", "FitConfig")},
    "setup_distributed": "flowvae.train.distributed",
    "TensorBoard": "flowvae.train.tensorboard",
    **{name: "flowvae.train.rundir" for name in (
        "OUT_DIR_FLAGS", "RunDirectoryError", "add_out_dir_flags", "prepare_out_dir",
        "write_metrics")},
    **{name: "flowvae.train.run" for name in ("TrainingRun", "as_images")},
    **{name: "flowvae.train.loop" for name in ("evaluate_elbo", "fit", "train_epoch")},
    **{name: "flowvae.train.step" for name in (
        "ELBOS", "OPTIMIZERS", "DifferentiableELBO", "TrainingDiverged", "initialize_on_data",
        "trainable_parameters", "training_step")},
}

__all__ = [
    "Accelerable",
    "CHECKPOINT",
    "ELBOS",
    "OPTIMIZERS",
    "OUT_DIR_FLAGS",
    "PRECISIONS",
    "Callback",
    "Checkpointing",
    "DifferentiableELBO",
    "FitConfig",
    "MetricsLog",
    "Progress",
    "TensorBoard",
    "TimeLimit",
    "TrainingDiverged",
    "TrainingRun",
    "RunDirectoryError",
    "accelerate",
    "add_out_dir_flags",
    "as_images",
    "default_callbacks",
    "evaluate",
    "evaluate_elbo",
    "fit",
    "initialize_on_data",
    "load_model",
    "prepare_out_dir",
    "read_checkpoint",
    "save_checkpoint",
    "setup_distributed",
    "train_epoch",
    "trainable_parameters",
    "training_step",
    "write_metrics",
]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        value = getattr(importlib.import_module(_WHERE[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> List[str]:
    return sorted(set(globals()) | set(_WHERE))
