"""The ``flowvae`` command: ``train``, ``evaluate`` and ``sample`` subcommands::

    flowvae train --model vae --dataset digits --epochs 10 --out runs/vae
    flowvae evaluate runs/vae/checkpoint.pt --iwae 100
    flowvae sample runs/vae/checkpoint.pt --n 64 --temperature 0.8 -o samples.png

Each subcommand freezes its flags into a config dataclass (:class:`TrainConfig`,
:class:`EvaluateConfig`, :class:`SampleConfig`) and hands it to the library. ``train`` reads
the model from its recipe (:data:`flowvae.recipes.RECIPES`: which model flags apply, the
objective's defaults, how it is built) and the training options into a
:class:`~flowvae.train.FitConfig`; it writes ``run.json`` beside the checkpoint (dataset,
padding, every flag) so that ``evaluate`` knows which data the model was trained on.

Every flag is checked before anything is written. Errors the user can fix (a bad flag value, a
missing checkpoint or dataset, a file that is not a checkpoint, an output path that cannot be
written) are one line on stderr and exit status 2, not a traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Dict, List, Optional, Sequence, Tuple

import flowvae
from flowvae.choices import (
    CHECKERBOARDS,
    DATA_ENV_VAR,
    DATASET_NAMES,
    DEQUANTIZATIONS,
    FLOW_DEFAULTS,
    GUIDE_NAMES,
    NETWORKS,
    PRIOR_NAMES,
    likelihood_names,
)
from flowvae.recipes import MODEL_FLAGS, RECIPES, ModelRecipe
from flowvae.train.config import (
    CHECKPOINT,
    ELBO_NAMES,
    OPTIMIZER_NAMES,
    PRECISIONS,
    SEED_LIMIT,
    FitConfig,
)
from flowvae.train.rundir import RunDirectoryError, make_dir, prepare_out_dir, write_atomically

# torch, Pyro and the models are imported inside the commands: `flowvae --help` needs none

PROG = "flowvae"
RUN_FILE = "run.json"
"""Written by ``train`` beside the checkpoint: the dataset and padding the model was fit on."""

_FIT = FitConfig()  # the defaults the CLI shares with flowvae.train.fit
#: the :class:`FitConfig` fields ``flowvae train`` offers as flags (``--time-limit`` in minutes)
FIT_FLAGS = ("epochs", "batch_size", "lr", "optimizer", "clip_norm", "lr_decay", "elbo",
             "num_particles", "compile", "precision", "time_limit", "max_steps_per_epoch",
             "eval_images", "resume", "seed", "progress")
#: the size flags: a recipe's ``sizes_note`` is printed when all are left at their defaults
SIZE_FLAGS = ("latent_dim", "hidden", "hidden_channels", "num_blocks")


class CommandError(Exception):
    """A problem the user can fix; :func:`main` prints it and exits with status 2."""


# ---------------------------------------------------------------------------- configs
@dataclass(frozen=True)
class TrainConfig:
    """The flags of ``flowvae train``: the model flags (``None``: the model's own default;
    the flow flags are the keys of :data:`flowvae.choices.FLOW_DEFAULTS`), the training
    options as a :class:`~flowvae.train.FitConfig` (``fit``; its device, run folder and
    objective are set by :meth:`fit_config`), the objective's shaping and the run folder.

    Example:
        >>> TrainConfig(dataset="mnist").run_dir
        'runs/vae-mnist'
    """

    model: str = next(iter(RECIPES))  # the first recipe
    dataset: str = "digits"
    latent_dim: Optional[int] = None
    hidden: Optional[int] = None
    likelihood: Optional[str] = None
    network: Optional[str] = None
    guide: Optional[str] = None
    prior: Optional[str] = None
    hidden_channels: Optional[int] = None
    num_blocks: Optional[int] = None
    checkerboard: Optional[str] = None
    dequantization: Optional[str] = None
    fit: FitConfig = field(default_factory=FitConfig)
    free_bits: Optional[float] = None
    free_bits_group: str = "dimension"
    kl_warmup: int = 0
    out: Optional[str] = None
    overwrite: bool = False
    device: Optional[str] = None
    data_dir: Optional[str] = None
    download: bool = True
    pad_to: Optional[int] = None
    tensorboard: bool = False

    @property
    def recipe(self) -> ModelRecipe:
        """The model's recipe (:data:`flowvae.recipes.RECIPES`)."""
        return RECIPES[self.model]

    @property
    def options(self) -> Dict[str, Any]:
        """The model flags given (``None`` ones left out), by keyword name."""
        return {name: getattr(self, name) for name in MODEL_FLAGS
                if getattr(self, name) is not None}

    @property
    def run_dir(self) -> str:
        return self.out or os.path.join("runs", f"{self.model}-{self.dataset}")

    @property
    def resolved_free_bits(self) -> float:
        """``--free-bits``, else the recipe's default (:attr:`ModelRecipe.free_bits`)."""
        return self.recipe.free_bits if self.free_bits is None else self.free_bits

    def objective(self):
        """``--elbo``'s name, or a :class:`~flowvae.infer.GeneralizedELBO` with free bits and
        KL warm-up when either is on (``--elbo meanfield``: with the closed-form KL)."""
        if not (self.resolved_free_bits or self.kl_warmup):
            return self.fit.elbo
        from flowvae.infer import GeneralizedELBO

        particles = self.fit.num_particles
        return GeneralizedELBO(
            "elbo", free_bits=self.resolved_free_bits, free_bits_group=self.free_bits_group,
            warmup_steps=self.kl_warmup, analytic_kl=self.fit.elbo == "meanfield",
            num_particles=particles, vectorize_particles=particles > 1, max_plate_nesting=1)

    def fit_config(self, device) -> FitConfig:
        """:attr:`fit` with the ``device``, the run folder and the ELBO of :meth:`objective`."""
        return replace(self.fit, elbo=self.objective(), device=device, out_dir=self.run_dir)


@dataclass(frozen=True)
class EvaluateConfig:
    """The flags of ``flowvae evaluate``; ``dataset=None`` reads it from ``run.json``.

    Example:
        >>> EvaluateConfig(checkpoint="runs/vae/checkpoint.pt", iwae=100).split
        'test'
    """

    checkpoint: str
    dataset: Optional[str] = None
    split: str = "test"
    pad_to: Optional[int] = None
    iwae: int = 0
    chunk_size: int = 100
    batch_size: int = 100
    num_images: Optional[int] = None
    device: Optional[str] = None
    data_dir: Optional[str] = None
    download: bool = True
    seed: int = 0
    json: Optional[str] = None


@dataclass(frozen=True)
class SampleConfig:
    """The flags of ``flowvae sample``.

    Example:
        >>> SampleConfig(checkpoint="runs/vae/checkpoint.pt").output
        'samples.png'
    """

    checkpoint: str
    n: int = 64
    temperature: float = 1.0
    nrow: int = 8
    output: str = "samples.png"
    device: Optional[str] = None
    seed: int = 0


def _train_config(args: Dict[str, Any]) -> TrainConfig:
    """The parsed ``train`` flags as a :class:`TrainConfig`: the :data:`FIT_FLAGS` into its
    :class:`FitConfig` (``--time-limit`` minutes as seconds), checked there too."""
    fit = {name: args.pop(name) for name in FIT_FLAGS}
    if fit["time_limit"] is not None:
        fit["time_limit"] = 60 * fit["time_limit"]
    try:
        return TrainConfig(**args, fit=FitConfig(**fit))
    except (TypeError, ValueError) as err:
        raise CommandError(_one_line(err)) from None


# ---------------------------------------------------------------------------- argument types
def _dataset_name(value: str) -> str:
    key = value.strip().lower().replace("_", "-")
    if key not in DATASET_NAMES:
        raise argparse.ArgumentTypeError(
            f"unknown dataset {value!r}; known datasets: {', '.join(DATASET_NAMES)}")
    return key


def _int_in(low: int, high: Optional[int] = None):
    """An integer ``>= low`` (and ``< high``, if given)."""
    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r} is not an integer") from None
        if number < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {number}")
        if high is not None and number >= high:
            raise argparse.ArgumentTypeError(f"must be < {high}, got {number}")
        return number

    parse.__name__ = "int"  # argparse names the type in its error messages
    return parse


def _int_at_least(low: int):
    return _int_in(low)


def _finite_float(positive: bool):
    """A finite number ``> 0`` (``positive``) or ``>= 0``."""
    def parse(value: str) -> float:
        try:
            number = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
        if positive and not number > 0 or not number >= 0:
            raise argparse.ArgumentTypeError(f"must be {'>' if positive else '>='} 0, got "
                                             f"{number}")
        if not math.isfinite(number):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {number}")
        return number

    parse.__name__ = "float"
    return parse


_positive_float, _non_negative_float = _finite_float(True), _finite_float(False)
_seed = _int_in(0, SEED_LIMIT)


class _Parser(argparse.ArgumentParser):
    """argparse's parser whose usage errors are one line on stderr, exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())} (see --help)\n")


# ---------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    """The ``flowvae`` argument parser with its three subcommands."""
    parser = _Parser(
        prog=PROG, description="Train, evaluate and sample the models of flowvae.recipes.",
        epilog=f"Run '{PROG} COMMAND --help' for the flags of a command.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {flowvae.__version__}",
                        help="print the flowvae version and exit")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True,
                                     help="what to do (one of the commands below)")
    _add_train(commands)
    _add_evaluate(commands)
    _add_sample(commands)
    return parser


def _add_device_and_data(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default=None,
                        help="torch device: cpu, cuda, cuda:1, mps, ... "
                             "(default: cuda when available, else cpu)")
    parser.add_argument("--data-dir", default=None,
                        help=f"dataset root folder (default: ${DATA_ENV_VAR} if set, else ./data)")
    parser.add_argument("--no-download", dest="download", action="store_false",
                        help="fail when the dataset files are missing instead of downloading them")


def _add_train(commands) -> None:
    p = commands.add_parser(
        "train", help="train a model; writes checkpoint.pt, metrics.csv/.jsonl and run.json",
        description="Train a model of flowvae.recipes on a Pyro ELBO (flowvae.train.fit). "
                    f"Writes OUT/{CHECKPOINT} after every epoch, OUT/metrics.csv and "
                    f"OUT/metrics.jsonl, and OUT/{RUN_FILE} (the dataset and flags) for "
                    "'flowvae evaluate'.")
    _add_model_flags(p.add_argument_group("model"))
    data = p.add_argument_group("data")
    data.add_argument("--dataset", type=_dataset_name, default=TrainConfig.dataset,
                      help=f"one of {', '.join(DATASET_NAMES)}; digits is bundled with "
                           "scikit-learn (default: %(default)s)")
    data.add_argument("--pad-to", type=_int_at_least(1), default=None,
                      help="zero-pad images to PAD_TO x PAD_TO, e.g. 32 for MNIST under a "
                           "multi-scale flow (default: no padding)")
    _add_device_and_data(data)
    _add_optimization_flags(p.add_argument_group("optimization"))
    _add_objective_flags(p.add_argument_group("objective"))
    run = p.add_argument_group("output")
    run.add_argument("--out", default=None,
                     help="folder for checkpoint, metrics and run.json "
                          "(default: runs/MODEL-DATASET)")
    run.add_argument("--resume", action="store_true",
                     help=f"continue from OUT/{CHECKPOINT}: weights, optimizer, epoch and RNG "
                          "state; the other flags must describe the same model")
    run.add_argument("--overwrite", action="store_true",
                     help="start again in an OUT that holds a run: its checkpoint, metrics and "
                          "run.json are replaced (without --resume or --overwrite, an OUT "
                          "holding files is refused)")
    run.add_argument("--tensorboard", action="store_true",
                     help="also log every epoch's metrics, samples and reconstructions to "
                          "OUT/tensorboard (then: tensorboard --logdir OUT)")
    run.add_argument("--no-progress", dest="progress", action="store_false", default=None,
                     help="no progress bar and no per-epoch lines, only the final table "
                          "(default: both when stderr is a terminal)")
    p.set_defaults(handler=_train_command, config=_train_config)


def _per_model(flag: str) -> str:
    """``flag``'s default per model, from the recipes: "32 for a, 64 for b"."""
    return ", ".join(f"{r.defaults[flag]} for {name}" for name, r in RECIPES.items()
                     if flag in r.flags and flag in r.defaults)


def _flag_name(flag: str) -> str:
    """``--flag`` of a keyword name, with its older spelling if it has one."""
    old = _OLD_FLOW_FLAGS.get(flag, ())
    return f"--{flag.replace('_', '-')}" + (f" ({', '.join(old)})" if old else "")


def _takers(flag: str) -> str:
    return ", ".join(name for name, r in RECIPES.items() if flag in r.flags)


_FLOW_HELP = {
    "hidden_channels": "conditioner width at the first scale",
    "num_blocks": "residual blocks per conditioner",
    "checkerboard": "masked runs the conditioner at full resolution (RealNVP paper), "
                    "squeezed at half resolution (cheaper)",
}
#: an older spelling of a flow flag, still accepted
_OLD_FLOW_FLAGS = {"hidden_channels": ("--flow-channels",)}


def _add_model_flags(model) -> None:
    model.add_argument("--model", choices=tuple(RECIPES), default=TrainConfig.model,
                       help="; ".join(f"{n}: {r.summary}" for n, r in RECIPES.items())
                            + " (default: %(default)s)")
    model.add_argument("--latent-dim", type=_int_at_least(1), default=None,
                       help=f"size of the latent z (default: {_per_model('latent_dim')})")
    model.add_argument("--hidden", type=_int_at_least(1), default=None,
                       help=f"encoder/decoder width: MLP units or base conv channels (default: "
                            f"{_per_model('hidden')})")
    model.add_argument("--likelihood", choices=likelihood_names(), default=None,
                       help=f"{_takers('likelihood')}: p(x|z), one of "
                            "flowvae.parts.LIKELIHOODS; bernoulli binarizes the pixels, flow is "
                            "a conditional RealNVP, categorical a 256-way softmax per pixel "
                            f"(default: {_per_model('likelihood')})")
    model.add_argument("--network", choices=NETWORKS, default=None,
                       help=f"{_takers('network')}: encoder and decoder type (default: "
                            f"{_per_model('network')})")
    model.add_argument("--guide", choices=GUIDE_NAMES, default=None,
                       help="q(z|x): diagonal normal, AR(1) normal, RealNVP, delta or planar "
                            f"posterior (default: {_per_model('guide')})")
    model.add_argument("--prior", choices=PRIOR_NAMES, default=None,
                       help=f"p(z): standard normal or RealNVP prior (default: "
                            f"{_per_model('prior')})")
    for name, default in FLOW_DEFAULTS.items():  # the one table of flow defaults
        flags = (f"--{name.replace('_', '-')}", *_OLD_FLOW_FLAGS.get(name, ()))
        kind = dict(choices=CHECKERBOARDS) if name == "checkerboard" else dict(
            type=_int_at_least(1))
        model.add_argument(*flags, dest=name, default=None, **kind,
                           help=f"a likelihood with a flow: {_FLOW_HELP[name]} "
                                f"(default: {default})")
    model.add_argument("--dequantization", choices=DEQUANTIZATIONS, default=None,
                       help="a density likelihood (flow or gaussian): uniform noise, or a "
                            "learned q(u|x) that tightens the bound (default: "
                            f"{_per_model('dequantization')})")


def _add_optimization_flags(optim) -> None:
    optim.add_argument("--epochs", type=_int_at_least(1), default=_FIT.epochs,
                       help="total epochs, counting those done before --resume "
                            "(default: %(default)s)")
    optim.add_argument("--batch-size", type=_int_at_least(1), default=_FIT.batch_size,
                       help="images per optimizer step (default: %(default)s)")
    optim.add_argument("--lr", type=_positive_float, default=_FIT.lr,
                       help="learning rate (default: %(default)s)")
    optim.add_argument("--optimizer", choices=OPTIMIZER_NAMES, default=_FIT.optimizer,
                       help="optimizer (default: %(default)s)")
    optim.add_argument("--clip-norm", type=_positive_float, default=_FIT.clip_norm,
                       help="clip the gradients' global norm to this value "
                            "(default: no clipping)")
    optim.add_argument("--lr-decay", type=_positive_float, default=_FIT.lr_decay,
                       help="multiply the learning rate by this after every epoch "
                            "(default: %(default)s, constant)")
    optim.add_argument("--particles", dest="num_particles", type=_int_at_least(1),
                       default=_FIT.num_particles,
                       help="vectorized ELBO particles per step (default: %(default)s)")
    optim.add_argument("--compile", action="store_true",
                       help="torch.compile the coupling networks (first steps are slower)")
    optim.add_argument("--precision", choices=PRECISIONS, default=_FIT.precision,
                       help="bf16: coupling networks under bfloat16 autocast, log-determinants "
                            "and densities in float32 (default: %(default)s)")
    optim.add_argument("--time-limit", type=_positive_float, default=None, metavar="MINUTES",
                       help="stop after the first epoch that ends past this many minutes, "
                            "checkpoint written; --resume goes on (default: no limit)")
    optim.add_argument("--max-steps-per-epoch", type=_int_at_least(1),
                       default=_FIT.max_steps_per_epoch,
                       help="stop each epoch after this many steps (default: the whole "
                            "training set)")
    optim.add_argument("--eval-images", type=_int_at_least(1), default=_FIT.eval_images,
                       metavar="N", help="evaluate N test images after each epoch, evenly "
                                         "spaced over the test set (default: all)")
    optim.add_argument("--seed", type=_seed, default=_FIT.seed,
                       help="seed of the initialization, shuffling and sampling, in "
                            "[0, 2**31) (default: %(default)s)")


def _per_model_free_bits() -> str:
    return ", ".join(f"{r.free_bits:g} for {name}" for name, r in RECIPES.items())


def _add_objective_flags(objective) -> None:
    objective.add_argument("--elbo", choices=ELBO_NAMES, default=_FIT.elbo,
                           help="trace: Monte-Carlo ELBO; meanfield: analytic KL where one "
                                "exists; jit: Trace_ELBO compiled by torch.jit "
                                "(default: %(default)s)")
    objective.add_argument("--free-bits", type=_non_negative_float, default=None,
                           metavar="NATS",
                           help="free bits (Kingma et al. 2016): a latent group's KL below "
                                "NATS per image is not penalised, against posterior collapse; "
                                f"0: the plain ELBO (default: {_per_model_free_bits()})")
    objective.add_argument("--free-bits-group", choices=("dimension", "site"),
                           default=TrainConfig.free_bits_group,
                           help="a free-bits group is one latent dimension or a whole latent "
                                "site (default: %(default)s)")
    objective.add_argument("--kl-warmup", type=_int_at_least(0),
                           default=TrainConfig.kl_warmup, metavar="STEPS",
                           help="raise the KL weight from 0 to 1 over this many steps (Bowman "
                                "et al. 2016; default: 0, none)")


def _add_evaluate(commands) -> None:
    p = commands.add_parser(
        "evaluate", help="test -ELBO, bits/dim, latent diagnostics and the IWAE bound of a "
                         "checkpoint",
        description="Print the -ELBO (nats per image) and bits/dim of a trained model on a "
                    "dataset split, its rate, distortion, active units and mutual information "
                    "(does z carry information? flowvae.infer.evaluate), and with --iwae K the "
                    "importance-weighted log-likelihood (Burda et al., 2016), a tighter bound "
                    "that grows towards log p(x) with K.")
    p.add_argument("checkpoint", metavar="CKPT",
                   help=f"a checkpoint written by 'flowvae train', or its run folder "
                        f"(then FOLDER/{CHECKPOINT})")
    p.add_argument("--dataset", type=_dataset_name, default=None,
                   help=f"dataset to evaluate on (default: the one in {RUN_FILE} beside CKPT; "
                        f"required when there is none)")
    p.add_argument("--split", default=EvaluateConfig.split,
                   help="dataset split: train, test, or valid where the dataset has one "
                        "(default: %(default)s)")
    p.add_argument("--pad-to", type=_int_at_least(1), default=None,
                   help=f"zero-pad images to PAD_TO x PAD_TO (default: as in {RUN_FILE}, else "
                        "to the model's image size when the images are smaller)")
    p.add_argument("--iwae", type=_int_at_least(0), default=EvaluateConfig.iwae, metavar="K",
                   help="importance samples per image for the IWAE bound; 0 skips it "
                        "(default: %(default)s)")
    p.add_argument("--chunk-size", type=_int_at_least(1), default=EvaluateConfig.chunk_size,
                   help="importance samples drawn at once, to bound memory "
                        "(default: %(default)s)")
    p.add_argument("--batch-size", type=_int_at_least(1), default=EvaluateConfig.batch_size,
                   help="images per evaluation batch (default: %(default)s)")
    p.add_argument("--num-images", type=_int_at_least(1), default=None, metavar="N",
                   help="evaluate the first N images of the split (default: all)")
    _add_device_and_data(p)
    p.add_argument("--seed", type=_seed, default=EvaluateConfig.seed,
                   help="seed of the Monte-Carlo estimates (default: %(default)s)")
    p.add_argument("--json", default=None, metavar="PATH",
                   help="also write the numbers to this JSON file")
    p.set_defaults(handler=_evaluate_command, config=lambda args: EvaluateConfig(**args))


def _add_sample(commands) -> None:
    p = commands.add_parser(
        "sample", help="draw images from a checkpoint into a PNG grid",
        description="Draw z ~ p(z), x ~ p(x|z) from a trained model and save them as a PNG grid.")
    p.add_argument("checkpoint", metavar="CKPT",
                   help=f"a checkpoint written by 'flowvae train', or its run folder "
                        f"(then FOLDER/{CHECKPOINT})")
    p.add_argument("--n", type=_int_at_least(1), default=SampleConfig.n,
                   help="number of images (default: %(default)s)")
    p.add_argument("--temperature", type=_positive_float, default=SampleConfig.temperature,
                   help="scale of the prior's (and a flow likelihood's base) noise; below 1 "
                        "gives smoother, less varied images (default: %(default)s)")
    p.add_argument("--nrow", type=_int_at_least(1), default=SampleConfig.nrow,
                   help="images per row of the grid (default: %(default)s)")
    p.add_argument("-o", "--output", default=SampleConfig.output, metavar="PNG",
                   help="where to write the grid, a .png file (default: %(default)s)")
    p.add_argument("--device", default=None,
                   help="torch device (default: cuda when available, else cpu)")
    p.add_argument("--seed", type=_seed, default=SampleConfig.seed,
                   help="seed of the samples (default: %(default)s)")
    p.set_defaults(handler=_sample_command, config=lambda args: SampleConfig(**args))


# ---------------------------------------------------------------------------- entry point
def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the ``flowvae`` command line with ``argv`` (default: ``sys.argv[1:]``).

    Returns 0 on success; raises ``SystemExit(2)`` on a usage error (after printing one line
    on stderr, before anything is written) and ``SystemExit(1)`` when training diverges.
    """
    parser = build_parser()
    args = vars(parser.parse_args(argv))
    handler, make_config = args.pop("handler"), args.pop("config")
    args.pop("command")
    try:
        handler(make_config(args))
    except (CommandError, RunDirectoryError) as err:  # a RunDirectoryError says the fix
        print(f"{PROG}: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    except _training_diverged() as err:
        print(f"{PROG}: training diverged: {err}", file=sys.stderr)
        raise SystemExit(1) from None
    return 0


def _training_diverged():
    from flowvae.train import TrainingDiverged  # imported by then: a command ran

    return TrainingDiverged


# ---------------------------------------------------------------------------- train
def build_model(config: TrainConfig, shape: Tuple[int, int, int], levels: int = 256):
    """The model ``config`` describes, built by its recipe, for images of ``shape``
    ``(C, H, W)`` with ``levels`` grey levels (the dataset's ``levels``: 2 for binarized
    MNIST), which a likelihood that declares ``takes_data_levels`` is given as
    ``data_levels``."""
    return config.recipe.build(config.options, shape, levels)


def _likelihood_class(config: TrainConfig):
    """The likelihood part ``config`` asks for (fixed by some recipes)."""
    from flowvae.parts import LIKELIHOODS

    return LIKELIHOODS[config.recipe.likelihood_name(config.options)]


def _check_train_flags(config: TrainConfig) -> None:
    """Refuse flags that do not apply to the model, reading its recipe and what its likelihood
    declares."""
    if (config.resolved_free_bits or config.kl_warmup) and config.fit.elbo == "jit":
        raise CommandError("--free-bits and --kl-warmup train on flowvae's GeneralizedELBO: use "
                           "--elbo trace or meanfield, or --free-bits 0 for --elbo jit")
    recipe = config.recipe
    for flag in config.options:
        if flag not in recipe.flags:
            raise CommandError(f"{_flag_name(flag)} applies to --model "
                               f"{_takers(flag)} only ({recipe.refusal})")
    from flowvae.parts import LIKELIHOODS

    likelihood = _likelihood_class(config)
    if config.dequantization is not None and not likelihood.dequantizes:
        takers = [n for n, c in LIKELIHOODS.items() if c.dequantizes]
        raise CommandError("--dequantization applies to a density likelihood only "
                           f"(--likelihood {' or '.join(takers)})")
    for flag in FLOW_DEFAULTS:
        if getattr(config, flag) is not None and flag not in likelihood.flow_options:
            takers = [n for n, c in LIKELIHOODS.items() if flag in c.flow_options]
            raise CommandError(f"{_flag_name(flag)} applies to a flow likelihood only "
                               f"(--likelihood {' or '.join(takers)})")


def _check_out(config: TrainConfig, run_path: str) -> None:
    """The run folder's rule (:func:`flowvae.train.rundir.prepare_out_dir`), then a resumed
    run's dataset and padding against its ``run.json``."""
    resume = config.fit.resume
    try:
        resumable = prepare_out_dir(config.run_dir, resume, config.overwrite)
    except ValueError as err:  # --resume with --overwrite
        raise CommandError(str(err)) from None
    if resume and not resumable:
        raise CommandError(f"--resume: no {CHECKPOINT} in {config.run_dir}")
    if resume and os.path.isfile(run_path):
        before = _read_run(run_path)
        for key in ("dataset", "pad_to"):
            if before.get(key) != getattr(config, key):
                raise CommandError(f"--resume: {run_path} records {key}={before.get(key)!r}, "
                                   f"not {getattr(config, key)!r}")


def _objective_words(config: TrainConfig) -> str:
    words = "the ELBO"
    if config.resolved_free_bits:
        words = f"free bits {config.resolved_free_bits:g} nats per {config.free_bits_group}"
    if config.kl_warmup:
        words += f", KL warm-up over {config.kl_warmup} steps"
    return words


def _train_command(config: TrainConfig) -> None:
    import pyro

    from flowvae.train import fit, setup_distributed

    _check_train_flags(config)
    # under torchrun every process runs this; only rank 0 talks and writes
    rank, _, device = setup_distributed(_device(config.device))
    say = print if rank == 0 else _quiet
    out, run_path = config.run_dir, os.path.join(config.run_dir, RUN_FILE)
    if rank == 0:  # the others would see the folder rank 0 is writing
        _check_out(config, run_path)
    train = _load(config.dataset, "train", config.data_dir, config.download, config.pad_to)
    test = _load(config.dataset, "test", config.data_dir, config.download, config.pad_to)
    shape = tuple(train[0].shape)
    pyro.set_rng_seed(config.fit.seed)  # the initialization too, not only what fit seeds
    model = build_model(config, shape, getattr(train, "levels", 256))
    params = sum(p.numel() for p in model.parameters())
    say(f"{type(model).__name__} on {config.dataset} {shape}: {params:,} parameters, "
        f"device {device}, objective {_objective_words(config)}, writing to {out}")
    if config.recipe.sizes_note and all(getattr(config, f) is None for f in SIZE_FLAGS):
        say(f"note: {config.recipe.sizes_note}")
    run = dict(resolved_run(config, model, device),
               eval_images=min(config.fit.eval_images or len(test), len(test)))
    if not config.fit.resume and rank == 0:  # a resumed run records them once fit accepted them
        os.makedirs(out, exist_ok=True)
        _write_json(run_path, run)
    started = time.time()
    try:
        history = fit(model, train, test, config.fit_config(device),
                      callbacks=_tensorboard(config, out))
    except ValueError as err:  # --resume onto a checkpoint of another model or config
        if not config.fit.resume:
            raise
        raise CommandError(f"--resume: {_one_line(err)}") from None
    if rank != 0:
        return
    if config.fit.resume:
        _write_json(run_path, run)
    _print_train_table(history[-1], time.time() - started)
    if run["likelihood"] == "bernoulli":  # 1 bit/dim is a coin flip here, not 8
        print("note: bits/dim of binarized images under a Bernoulli (binary) likelihood, not "
              "comparable with bits/dim of 8-bit images")
    print("wrote", os.path.join(out, CHECKPOINT))


def _tensorboard(config: TrainConfig, out: str) -> list:
    """``--tensorboard``: :class:`~flowvae.train.tensorboard.TensorBoard` in OUT/tensorboard."""
    if not config.tensorboard:
        return []
    from flowvae.train.tensorboard import TensorBoard

    return [TensorBoard(os.path.join(out, "tensorboard"))]


def resolved_run(config: TrainConfig, model, device) -> Dict[str, Any]:
    """What ``run.json`` records: every flag with the value used (the training options as
    :class:`~flowvae.train.FitConfig` holds them, ``time_limit`` in seconds; a model default
    in place of ``None``: the model's own recorded hyper-parameters, else its recipe's or the
    flow table's default), the run folder, the device, the dataset root, the flowvae version,
    and the model's whole ``config``."""
    from flowvae.data import resolve_root

    run = {k: v for k, v in asdict(config).items() if k != "fit"}
    run.update({name: getattr(config.fit, name) for name in FIT_FLAGS})
    run.update(out=config.run_dir, device=str(device), data_dir=resolve_root(config.data_dir),
               flowvae_version=flowvae.__version__, free_bits=config.resolved_free_bits)
    if run["progress"] is None:
        run["progress"] = sys.stderr.isatty()
    recorded, defaults = model.config, config.recipe.defaults
    for flag in ("latent_dim", "hidden", "network", "guide", "prior"):
        if run[flag] is None:  # the model's recorded value, else its recipe's default
            run[flag] = recorded.get(flag, defaults.get(flag))
    likelihood = _likelihood_class(config)
    run["likelihood"] = likelihood.registered_name
    if likelihood.flow_options:
        flow = recorded.get("flow_kwargs") or recorded.get("likelihood_kwargs") or {}
        for flag, default in FLOW_DEFAULTS.items():
            if run[flag] is None:
                run[flag] = flow.get(flag, default)
    if likelihood.dequantizes and run["dequantization"] is None:
        run["dequantization"] = (recorded.get("likelihood_kwargs") or {}).get(
            "dequantization", defaults.get("dequantization", DEQUANTIZATIONS[0]))
    run["model_config"] = recorded
    return run


def _print_train_table(last: Dict[str, float], seconds: float) -> None:
    rows = [("epochs", str(last["epoch"])), ("steps", str(last["step"])),
            ("train -ELBO (nats)", f"{last['train_nelbo']:.2f}"),
            ("train bits/dim", f"{last['train_bpd']:.3f}")]
    if "test_nelbo" in last:
        rows += [("test -ELBO (nats)", f"{last['test_nelbo']:.2f}"),
                 ("test bits/dim", f"{last['test_bpd']:.3f}")]
    rows.append(("minutes", f"{seconds / 60:.1f}"))
    _print_table(rows)



# ---------------------------------------------------------------------------- evaluate
def _evaluate_command(config: EvaluateConfig) -> None:
    import pyro

    from flowvae.infer import evaluate

    device = _device(config.device)
    path = _checkpoint_path(config.checkpoint)
    model = _load_model(path, device)
    run_path = os.path.join(os.path.dirname(path), RUN_FILE)
    run = _read_run(run_path) if os.path.isfile(run_path) else {}
    dataset = config.dataset or run.get("dataset")
    if dataset is None:
        raise CommandError(f"no {RUN_FILE} beside {path} says which dataset the model was "
                           "trained on; pass --dataset")
    pad_to = config.pad_to if config.pad_to is not None else run.get("pad_to")
    images = _evaluation_images(config, dataset, pad_to, model.shape)
    pyro.set_rng_seed(config.seed)
    results: Dict[str, Any] = evaluate(model, images, batch_size=config.batch_size,
                                       iwae=config.iwae, chunk_size=config.chunk_size,
                                       device=device)
    results.update(checkpoint=path, dataset=dataset, split=config.split, pad_to=pad_to)
    print(f"{type(model).__name__} from {path} on {dataset} ({config.split})")
    _print_table(_evaluation_rows(results, config.iwae))
    if config.json:
        _write_json(config.json, results)
        print("wrote", config.json)


def _evaluation_images(config: EvaluateConfig, dataset: str, pad_to, model_shape):
    from flowvae.train import as_images

    data = _load(dataset, config.split, config.data_dir, config.download, pad_to)
    images = as_images(data)[: config.num_images]
    if pad_to is None and _fits_after_padding(images.shape[1:], model_shape):
        data = _load(dataset, config.split, config.data_dir, config.download, model_shape[-1])
        images = as_images(data)[: config.num_images]
    if tuple(images.shape[1:]) != model_shape:
        raise CommandError(f"the model takes images of shape {model_shape}, but {dataset!r} "
                           f"gives {tuple(images.shape[1:])}; pass --pad-to or another --dataset")
    return images


def _evaluation_rows(results: Dict[str, Any], k: int) -> List[Tuple[str, str]]:
    """The printed table: the bounds, then the latent diagnostics per site."""
    rows = [("images", str(results["num_images"])),
            ("-ELBO (nats)", f"{results['nelbo']:.2f}"),
            ("bits/dim (ELBO)", f"{results['bpd']:.3f}")]
    if k:
        rows += [(f"-log p(x), IWAE K={k} (nats)", f"{results['iwae_nll']:.2f}"),
                 (f"bits/dim (IWAE K={k})", f"{results['iwae_bpd']:.3f}")]
    if "rate" in results:
        rows += [("rate (nats)", f"{results['rate']:.2f}"),
                 ("distortion (nats)", f"{results['distortion']:.2f}")]
    for key, value in results.items():
        for prefix, label, form in (("active_units_", "active units ({})", "{}"),
                                    ("mutual_info_", "mutual information ({}, nats)", "{:.3f}")):
            if key.startswith(prefix):
                rows.append((label.format(key[len(prefix):]), form.format(value)))
    return rows


def _fits_after_padding(image_shape, model_shape) -> bool:
    channels, height, width = image_shape
    return (channels == model_shape[0] and model_shape[1] == model_shape[2]
            and height <= model_shape[1] and width <= model_shape[2]
            and (height, width) != tuple(model_shape[1:]))


# ---------------------------------------------------------------------------- sample
def _sample_command(config: SampleConfig) -> None:
    import pyro

    from flowvae.infer import save_grid

    _check_output(config.output)
    device = _device(config.device)
    path = _checkpoint_path(config.checkpoint)
    model = _load_model(path, device)
    pyro.set_rng_seed(config.seed)
    images = model.generate(config.n, temperature=config.temperature)
    title = f"{type(model).__name__}: {config.n} samples, temperature {config.temperature:g}"
    try:
        print("wrote", save_grid(images, config.output, nrow=config.nrow, title=title))
    except (OSError, ValueError) as err:  # e.g. a read-only file system
        raise CommandError(f"-o {config.output}: cannot write it: {_one_line(err)}") from None


def _check_output(path: str) -> None:
    """Refuse an output the grid cannot go to, before anything is computed or written: not a
    ``.png`` name, a folder, or below a file or an unwritable folder."""
    if os.path.isdir(path):
        raise CommandError(f"-o {path} is a folder; give a file name ending in .png")
    if not path.lower().endswith(".png"):
        raise CommandError(f"-o {path}: the grid is a PNG image; give a file name ending in "
                           ".png")
    folder = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(folder):  # save_grid creates the missing folders
        folder = os.path.dirname(folder)
    if not os.path.isdir(folder):
        raise CommandError(f"-o {path}: {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK) or (os.path.exists(path)
                                           and not os.access(path, os.W_OK)):
        raise CommandError(f"-o {path}: not writable; choose another path")


# ---------------------------------------------------------------------------- helpers
def _device(name: Optional[str]):
    import torch

    try:
        device = torch.device(name or ("cuda" if torch.cuda.is_available() else "cpu"))
    except RuntimeError as err:
        raise CommandError(f"--device: {_one_line(err)}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CommandError(f"--device {name}: CUDA is not available on this machine")
    return device


def _checkpoint_path(path: str) -> str:
    return os.path.join(path, CHECKPOINT) if os.path.isdir(path) else path


def _load_model(path: str, device):
    from flowvae.train import load_model

    if not os.path.isfile(path):
        raise CommandError(f"checkpoint not found: {path}")
    try:
        model = load_model(path, map_location=device)
    except ValueError as err:  # load_model's own message names the file and the problem
        raise CommandError(_one_line(err)) from None
    # A pickle of something other than a checkpoint dict, or weights that do not fit the
    # recorded config, fail inside load_model with these.
    except (AttributeError, KeyError, TypeError, RuntimeError) as err:
        raise CommandError(f"{path} is not a flowvae checkpoint: {_one_line(err)}") from None
    return model.to(device).eval()


def _load(name: str, split: str, root: Optional[str], download: bool, pad_to: Optional[int]):
    from flowvae.data import DatasetNotFoundError, load_dataset

    try:
        return load_dataset(name, split, root=root, download=download, pad_to=pad_to)
    # ValueError: an unknown dataset or split, or a pad_to smaller than the images
    except (DatasetNotFoundError, ValueError) as err:
        raise CommandError(str(err)) from None


def _read_run(path: str) -> Dict[str, Any]:
    try:
        with open(path) as f:
            run = json.load(f)
    except (OSError, ValueError) as err:
        raise CommandError(f"cannot read {path}: {_one_line(err)}") from None
    if not isinstance(run, dict):
        raise CommandError(f"{path} does not hold a JSON object")
    return run


def _write_json(path: str, data: Dict[str, Any]) -> None:
    """``data`` as indented JSON in ``path``, atomically (an OS error: one line, no .tmp)."""
    make_dir(os.path.dirname(os.path.abspath(path)))
    write_atomically(path, (json.dumps(data, indent=2) + "\n").encode())


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())


def _print_table(rows: List[Tuple[str, str]]) -> None:
    width = max(len("metric"), *(len(name) for name, _ in rows))
    value_width = max(len("value"), *(len(value) for _, value in rows))
    print(f"| {'metric'.ljust(width)} | {'value'.rjust(value_width)} |")
    print(f"|{'-' * (width + 2)}|{'-' * (value_width + 2)}|")
    for name, value in rows:
        print(f"| {name.ljust(width)} | {value.rjust(value_width)} |")


def _quiet(*args, **kwargs) -> None:
    pass


if __name__ == "__main__":  # `python -m flowvae.cli`, as torchrun runs it
    raise SystemExit(main())
