"""The options of :func:`flowvae.train.fit` as one frozen dataclass, shared with the CLI.

This module imports neither torch nor Pyro, so that ``flowvae --help`` can read the names and
defaults it offers without loading them (``tests/test_cli.py`` checks that the names match the
library's tables :data:`flowvae.train.OPTIMIZERS` and :data:`flowvae.train.ELBOS`).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
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
#: ``seed`` is below this: ``seed + rank`` seeds NumPy, whose seeds are 32-bit
SEED_LIMIT = 2**31

_INTEGERS = ("epochs", "batch_size", "num_particles", "eval_batch_size", "max_steps_per_epoch",
             "eval_images", "seed")
_REALS = ("lr", "lr_decay", "clip_norm", "time_limit")


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
        seed: seed of the shuffling, the first-batch initialisation and the ELBO's draws,
            ``0 <= seed < 2**31``.
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
            ``lr_decay``, ``clip_norm``), a negative ``time_limit``, a ``seed`` outside
            ``[0, 2**31)``.
        TypeError: a size or seed that is not an integer; an ELBO class instead of an ELBO
            (``Trace_ELBO`` for ``Trace_ELBO()``) or an ``elbo`` that is not one.

    NumPy numbers are numbers: ``FitConfig(epochs=np.int64(3), lr=np.float32(1e-3))`` holds
    the Python ``int`` 3 and ``float`` 0.001 (as float32 rounds it).

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
        self._as_python_numbers()
        for name in _INTEGERS:
            value = getattr(self, name)
            optional = name in ("max_steps_per_epoch", "eval_images")
            if value is None and optional:
                continue
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"FitConfig: {name}: expected an integer, got {value!r}")
            if name == "seed" and not 0 <= value < SEED_LIMIT:
                raise ValueError(f"FitConfig: seed: expected an integer in [0, 2**31), got "
                                 f"{value}")
            if name != "seed" and value < 1:
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
        _check_elbo(self.elbo)
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")

    def _as_python_numbers(self) -> None:
        """NumPy integers and reals (``np.int64(3)``, ``np.float32(1e-3)``) as Python's."""
        for name in _INTEGERS + _REALS:
            value = getattr(self, name)
            if isinstance(value, (bool, int, float)) or value is None:
                continue
            if isinstance(value, numbers.Integral):
                object.__setattr__(self, name, int(value))
            elif isinstance(value, numbers.Real) and name in _REALS:
                object.__setattr__(self, name, float(value))

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


def _check_elbo(elbo: Any) -> None:
    """A name of :data:`ELBO_NAMES` or an ELBO object (with ``differentiable_loss``)."""
    if isinstance(elbo, str):
        if elbo not in ELBO_NAMES:
            raise ValueError(f"elbo must be one of {ELBO_NAMES} or a Pyro ELBO, got {elbo!r}")
        return
    if isinstance(elbo, type):
        raise TypeError(f"FitConfig: elbo: expected an ELBO object or one of {ELBO_NAMES}, got "
                        f"the class {elbo.__name__}; pass an instance: {elbo.__name__}(...)")
    if not callable(getattr(elbo, "differentiable_loss", None)):
        raise TypeError(f"FitConfig: elbo: expected one of {ELBO_NAMES} or a Pyro ELBO object "
                        f"(with differentiable_loss), got {type(elbo).__name__} {elbo!r}")


def _positive(value: Any) -> bool:
    """A finite real number > 0 (NaN, infinity, strings and bools are not)."""
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value) and value > 0)
