"""The examples' command lines, from their ``Config`` dataclass (shared by the scripts).

Every field of ``Config`` becomes a flag with its default shown: ``--field-name``; a tuple
field takes several values, a bool field ``--x`` / ``--no-x``. ``--paper`` (when the example
has paper settings) swaps in those defaults, and flags given beside it still win; ``--resume``
and ``--overwrite`` follow ``flowvae train``'s rule (:func:`flowvae.train.add_out_dir_flags`).
A bad flag or value is one line on stderr and exit status 2, as in ``flowvae train``.

Nothing here imports torch: an example parses its flags first (``--help`` answers at once)
and imports torch and flowvae's models afterwards. :func:`run_example` then runs its ``main``: a
missing dataset or an occupied ``--out`` is one line and exit status 2, with no folder left
behind, and the files it wrote are listed at the end.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import fields
from typing import Any, Callable, Dict, Optional, Sequence

from flowvae.train.rundir import OUT_DIR_FLAGS, add_out_dir_flags

POSITIVE = ("epochs", "batch_size", "lr", "latent_dim", "hidden", "flow_channels",
            "num_blocks", "num_layers", "rounds", "steps_per_round", "transforms", "growth",
            "num_mixtures")
"""Fields that must be > 0 when an example has them. Every other count (an int field) must be
>= 0 (0: the documented "none" / "all"), but ``seed``; so must these floats:"""
NON_NEGATIVE = ("free_bits", "time_limit", "beta", "mmd_weight")


COMMON_HELP = {"tensorboard": "also log to TensorBoard, in a tensorboard/ folder in each run's "
                              "folder (then: tensorboard --logdir OUT)",
               "device": "torch device, e.g. cuda", "seed": "seed of weights and data order"}
"""Help of the flags many examples share, unless the example says otherwise."""


class ExampleParser(argparse.ArgumentParser):
    """argparse, but an error is the one line ``prog: error: message`` (exit status 2)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (--help lists the flags)\n")


def _check_ranges(parser: argparse.ArgumentParser, args: Dict[str, Any]) -> None:
    for name, value in args.items():
        values = value if isinstance(value, (list, tuple)) else [value]
        numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        flag = "--" + name.replace("_", "-")
        if name in POSITIVE and any(not v > 0 for v in numbers):
            parser.error(f"{flag} must be > 0, got {value}")
        if any(not math.isfinite(v) for v in numbers):
            parser.error(f"{flag} must be a finite number, got {value}")
        counts = [v for v in numbers if isinstance(v, int)] if name != "seed" else []
        if any(v < 0 for v in counts) or (name in NON_NEGATIVE and any(v < 0 for v in numbers)):
            parser.error(f"{flag} must be >= 0, got {value}")


def parse_config(config_cls, description: str, helps: Dict[str, str], *,
                 argv: Optional[Sequence[str]] = None,
                 choices: Optional[Dict[str, Sequence]] = None,
                 types: Optional[Dict[str, Callable]] = None,
                 paper: Optional[dict] = None, paper_help: str = ""):
    """``config_cls`` filled from the command line ``argv`` (``None``: ``sys.argv``)."""
    choices, types = choices or {}, types or {}
    parser = ExampleParser(description=description,
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    if paper is not None:
        parser.add_argument("--paper", action="store_true",
                            help=f"{paper_help}, {paper}; flags given with it still win")
    for f in fields(config_cls):
        if f.name in OUT_DIR_FLAGS:  # --resume, --overwrite: added below
            continue
        flag = "--" + f.name.replace("_", "-")
        help_ = helps.get(f.name, COMMON_HELP.get(f.name, " "))
        if isinstance(f.default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default,
                                help=help_)
            continue
        many = isinstance(f.default, tuple)
        kind = types.get(f.name, type(f.default[0] if many else f.default))
        parser.add_argument(flag, default=f.default, type=kind, nargs="+" if many else None,
                            choices=choices.get(f.name), help=help_)
    add_out_dir_flags(parser)
    if paper is not None and parser.parse_known_args(argv)[0].paper:
        parser.set_defaults(**paper)
    args = vars(parser.parse_args(argv))
    args.pop("paper", None)
    _check_ranges(parser, args)
    if args.get("resume") and args.get("overwrite"):
        parser.error("--resume and --overwrite exclude each other")
    return config_cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in args.items()})


def run_example(main: Callable, config, prog: str):
    """``main(config)``; a missing dataset or an occupied, read-only or missing ``--out`` is
    one line ``prog: error: ...`` with exit status 2, and any folder of ``config.out`` left
    empty by it is removed. Lists the files written under ``config.out`` at the end."""
    from flowvae.data import DatasetNotFoundError  # torch: after the flags are parsed
    from flowvae.train import RunDirectoryError

    out, started = getattr(config, "out", None), time.time()
    try:
        result = main(config)
    except (DatasetNotFoundError, RunDirectoryError) as err:
        if out is not None:
            _remove_empty_folders(out)
        print(f"{prog}: error: {' '.join(str(err).split())}", file=sys.stderr)
        raise SystemExit(2) from None
    if out is not None:
        list_written(out, started)
    return result


def _remove_empty_folders(top: str) -> None:
    for folder, _, _ in sorted(os.walk(top), key=lambda entry: -len(entry[0])):
        if not os.listdir(folder):
            os.rmdir(folder)


def list_written(out: str, since: float) -> None:
    """Print every file under ``out`` modified since the time ``since``."""
    written = sorted(os.path.join(folder, name) for folder, _, names in os.walk(out)
                     for name in names if os.path.getmtime(os.path.join(folder, name)) >= since)
    print(f"\nfiles written under {out} ({len(written)}):")
    for path in written:
        print("  " + os.path.relpath(path, out))


def write_results(path: str, results: Any) -> str:
    """``results`` as indented JSON in ``path`` (full precision: the printout rounds)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(results, f, indent=1, default=str)
        f.write("\n")
    return path
