"""The options of :func:`flowvae.train.fit` as one frozen dataclass, shared with the CLI.

This module imports neither torch nor Pyro, so that ``flowvae --help`` can read the names and
defaults it offers without loading them (``tests/test_cli.py`` checks that the names match the
library's tables :data:`flowvae.train.OPTIMIZERS` and :data:`flowvae.train.ELBOS`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Union

#: the optimizers :func:`~flowvae.train.fit` takes by name (``torch.optim.Adam``, ``Adamax``)
OPTIMIZER_NAMES = ("adam", "adamax")
#: the Pyro ELBOs :func:`~flowvae.train.fit` takes by name
ELBO_NAMES = ("trace", "meanfield", "jit")
#: the coupling networks' precisions of :func:`~flowvae.train.speed`
PRECISIONS = ("float32", "bf16")
#: file name of the checkpoint :func:`~flowvae.train.fit` writes in ``out_dir``
CHECKPOINT = "checkpoint.pt"


@dataclass(frozen=True)
class FitConfig:
    """Every option of :func:`flowvae.train.fit`; ``fit(model, data, **options)`` builds one.

    Attributes:
        epochs: total epochs, counting those of a resumed run.
        batch_size: images per optimizer step (global: divided between processes).
        lr: learning rate.
        optimizer: ``"adam"`` or ``"adamax"``.
        clip_norm: clip the gradients' global norm to this (``None``: no clipping).
        lr_decay: the learning rate is multiplied by this after every epoch.
        elbo: ``"trace"`` (:class:`~flowvae.infer.device_elbo.DeviceTrace_ELBO`),
            ``"meanfield"`` (``TraceMeanField_ELBO``), ``"jit"`` (``JitTrace_ELBO``), or any
            Pyro ELBO object (e.g. :class:`flowvae.infer.GeneralizedELBO`).
        num_particles: vectorized ELBO particles per step (named ELBOs only).
        device: torch device (``None``: CUDA when available, else the CPU).
        out_dir: folder of ``checkpoint.pt``, ``metrics.csv`` and ``metrics.jsonl``
            (``None``: nothing written).
        resume: continue from ``out_dir/checkpoint.pt``.
        seed: seed of the shuffling, the first-batch initialisation and the ELBO's draws.
        progress: tqdm bar and one line per epoch (``None``: when stderr is a terminal).
        max_steps_per_epoch: stop each epoch after this many steps (``None``: all batches).
        eval_batch_size: images per batch of the test evaluation.
        eval_images: evaluate this many test images after each epoch, evenly spaced over the
            test set (a split sorted by class stays balanced) (``None``: all of them).
        compile, precision: :func:`~flowvae.train.speed`'s options.
        data_on_device: hold the training set on the device (``None``: on CUDA).
        time_limit: seconds; stop after the first epoch that ends past it (``None``: none).

    Raises:
        ValueError: an unknown ``optimizer``, ``elbo`` name or ``precision``; a size below 1
            (``epochs``, ``batch_size``, ``num_particles``, ``eval_batch_size``,
            ``max_steps_per_epoch``, ``eval_images``); a rate not positive (``lr``,
            ``lr_decay``, ``clip_norm``) or a negative ``time_limit``.
        TypeError: a size that is not an integer.

    Example:
        >>> FitConfig(epochs=3).replace(lr=1e-4).lr
        0.0001
    """

    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    optimizer: str = "adam"
    clip_norm: Optional[float] = None
    lr_decay: float = 1.0
    elbo: Union[str, Any] = "trace"
    num_particles: int = 1
    device: Any = None
    out_dir: Optional[str] = None
    resume: bool = False
    seed: int = 0
    progress: Optional[bool] = None
    max_steps_per_epoch: Optional[int] = None
    eval_batch_size: int = 500
    eval_images: Optional[int] = None
    compile: bool = False
    precision: str = "float32"
    data_on_device: Optional[bool] = None
    time_limit: Optional[float] = None

    def __post_init__(self):
        for name in ("epochs", "batch_size", "num_particles", "eval_batch_size",
                     "max_steps_per_epoch", "eval_images"):
            value = getattr(self, name)
            optional = name in ("max_steps_per_epoch", "eval_images")
            if value is None and optional:
                continue
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"FitConfig: {name}: expected an integer, got {value!r}")
            if value < 1:
                raise ValueError(f"FitConfig: {name}: expected an integer >= 1, got {value}"
                                 + (" (None: no limit)" if optional else ""))
        for name, optional in (("lr", False), ("lr_decay", False), ("clip_norm", True)):
            value = getattr(self, name)
            if not (value is None and optional) and not _positive(value):
                raise ValueError(f"FitConfig: {name}: expected a finite number > 0, got "
                                 f"{value!r}")
        if self.time_limit is not None and not (_positive(self.time_limit)
                                                or self.time_limit == 0):
            raise ValueError(f"FitConfig: time_limit: expected seconds >= 0 or None, got "
                             f"{self.time_limit!r}")
        if self.optimizer not in OPTIMIZER_NAMES:
            raise ValueError(f"optimizer must be one of {OPTIMIZER_NAMES}, got {self.optimizer!r}")
        if isinstance(self.elbo, str) and self.elbo not in ELBO_NAMES:
            raise ValueError(f"elbo must be one of {ELBO_NAMES} or a Pyro ELBO, got "
                             f"{self.elbo!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")

    def replace(self, **changes) -> FitConfig:
        """A copy with ``changes`` (field names of this class)."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def of(cls, config: Optional[FitConfig] = None,
           options: Optional[Mapping[str, Any]] = None) -> FitConfig:
        """``config`` (default: the defaults) with the keyword ``options`` of :func:`fit`;
        a name that is not a field raises ``TypeError`` naming it."""
        options = dict(options or {})
        unknown = sorted(set(options) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise TypeError(f"fit() got unexpected keyword arguments {unknown}; "
                            f"its options are the fields of FitConfig")
        return dataclasses.replace(config or cls(), **options)


def _positive(value: Any) -> bool:
    """A finite real number > 0 (NaN, infinity, strings and bools are not)."""
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value) and value > 0)
