"""The examples' command lines, from their ``Config`` dataclass (shared by the scripts).

Every field of ``Config`` becomes a flag with its default shown: ``--field-name``; a tuple
field takes several values, a bool field ``--x`` / ``--no-x``. ``--paper`` (when the example
has paper settings) swaps in those defaults, and flags given beside it still win; ``--resume``
and ``--overwrite`` follow ``flowvae train``'s rule (:func:`flowvae.train.add_out_dir_flags`).
"""

from __future__ import annotations

import argparse
from dataclasses import fields
from typing import Callable, Dict, Optional, Sequence

from flowvae.train import OUT_DIR_FLAGS, add_out_dir_flags


def parse_config(config_cls, description: str, helps: Dict[str, str], *,
                 argv: Optional[Sequence[str]] = None,
                 choices: Optional[Dict[str, Sequence]] = None,
                 types: Optional[Dict[str, Callable]] = None,
                 paper: Optional[dict] = None, paper_help: str = ""):
    """``config_cls`` filled from the command line ``argv`` (``None``: ``sys.argv``)."""
    choices, types = choices or {}, types or {}
    parser = argparse.ArgumentParser(description=description,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    if paper is not None:
        parser.add_argument("--paper", action="store_true",
                            help=f"{paper_help}, {paper}; flags given with it still win")
    for f in fields(config_cls):
        if f.name in OUT_DIR_FLAGS:  # --resume, --overwrite: added below
            continue
        flag, help_ = "--" + f.name.replace("_", "-"), helps.get(f.name, " ")
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
    return config_cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in args.items()})
