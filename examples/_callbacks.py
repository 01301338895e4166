"""The examples' callbacks of :func:`flowvae.train.fit` (imports torch: import it after the
flags are parsed): one line per epoch when stderr is not a terminal, and TensorBoard."""

from __future__ import annotations

import os
import sys
from typing import List

from flowvae.train import Callback
from flowvae.train.tensorboard import TensorBoard

SHOWN = ("train_nelbo", "test_nelbo", "test_bpd", "test_rate_z", "test_distortion",
         "test_active_units_z")
"""The metrics of an epoch line; ``metrics.csv`` has them all."""


class EpochLines(Callback):
    """``label epoch E/N step S: train_nelbo ... seconds`` on stdout after every epoch, when
    stderr is not a terminal (on a terminal ``fit``'s progress bar and its lines show)."""

    def __init__(self, label: str = ""):
        self.label = label + " " if label else ""
        self.enabled = not sys.stderr.isatty()

    def on_epoch(self, run, row) -> None:
        if not self.enabled:
            return
        shown = [f"{key} {row[key]:.4g}" if isinstance(row[key], float) else f"{key} {row[key]}"
                 for key in SHOWN if key in row]
        print(f"{self.label}epoch {row['epoch']}/{run.config.epochs} step {row['step']}: "
              + "  ".join(shown) + f"  seconds {row.get('seconds', 0):.0f}", flush=True)


def callbacks(config, out_dir: str, label: str = "", epoch_lines: bool = True) -> List:
    """:class:`EpochLines` (unless ``epoch_lines`` is off: the example prints its own) and,
    with ``--tensorboard``, :class:`~flowvae.train.tensorboard.TensorBoard` writing to
    ``out_dir/tensorboard`` (``tensorboard --logdir`` the example's ``--out``)."""
    chosen: List = [EpochLines(label)] if epoch_lines else []
    if getattr(config, "tensorboard", False):
        chosen.append(TensorBoard(os.path.join(out_dir, "tensorboard")))
    return chosen
