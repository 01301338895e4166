"""Information preference (Zhao et al., sec. 4): a PixelCNN-decoder VAE, ELBO vs unregularized.

Trains the same VAE (MLP encoder, conditional gated PixelCNN likelihood) twice on binarized
MNIST, with R = KL (the ELBO) and with R = 0 (unregularized), through
``fit(..., elbo=GeneralizedELBO(kind))``, in rounds of ``--steps-per-round`` SVI steps. After each
round it prints the estimate of I(x; z) on ``--mi-images`` test images spread over the
classes (bounded by log M),
KL(q(z|x) || p(z)), the per-pixel NLL -E_q log p(x|z) / D (the distortion per pixel) and the
active units of z (Burda et al. 2016). It then writes, for both models,
ancestral samples z ~ p(z), x ~ p(x|z), and the states of the Gibbs chain z ~ q(z|x),
x ~ p(x|z) started from those samples and from test images. --resume continues from the
checkpoints in --out (and only samples when training is complete). q(z|x)'s scale is softly
bounded by exp(--max-log-scale) = 1: without the KL, an unbounded exp-parameterised scale runs
away (to 1e12 within 25 steps here) and drowns the code in noise.

    python examples/information_preference.py                       # the docs' CPU run
    python examples/information_preference.py --objectives elbo     # one objective
    python examples/information_preference.py --paper --device cuda

The defaults (6 rounds of 100 SVI steps per objective) finish in minutes of CPU time;
``--paper`` trains for 30 rounds of 500 steps (about 19 epochs), and flags given next to it
still win.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass
from typing import Optional, Tuple

from _flags import parse_config, run_example, write_results


@dataclass(frozen=True)
class Config:
    dataset: str = "binarized-mnist"
    objectives: Tuple[str, ...] = ("elbo", "unregularized")
    rounds: int = 6
    steps_per_round: int = 100
    batch_size: int = 64
    lr: float = 1e-3
    latent_dim: int = 16
    hidden: int = 256
    pixel_channels: int = 16
    pixel_blocks: int = 3
    context_channels: int = 4
    max_log_scale: Optional[float] = 0.0
    mi_images: int = 1000
    eval_images: int = 500
    samples: int = 16
    gibbs_steps: int = 5
    device: str = "cpu"
    tensorboard: bool = False
    out: str = "runs/information_preference"
    resume: bool = False
    overwrite: bool = False
    seed: int = 0


PAPER = dict(rounds=30, steps_per_round=500)
"""Longer training, which ``--paper`` selects."""

HELP = {"dataset": "training and test images", "objectives": "R of each run (several allowed): "
        "elbo = KL, unregularized = 0, beta = beta KL, mmd = InfoVAE's MMD",
        "rounds": "rounds of training; the metrics are measured after each",
        "steps_per_round": "SVI steps per round", "batch_size": "images per SVI step",
        "lr": "Adam learning rate", "latent_dim": "size of z", "hidden": "MLP encoder width",
        "pixel_channels": "PixelCNN channels", "pixel_blocks": "gated PixelCNN blocks",
        "context_channels": "channels of the decoder's conditioning map for the PixelCNN",
        "max_log_scale": "soft upper bound on log sigma of q(z|x) ('none': unbounded)",
        "mi_images": "test images M of the I(x;z) estimate (at most log M nats)",
        "eval_images": "test images of the KL and NLL (at most --mi-images)",
        "samples": "images per grid row", "gibbs_steps": "steps of each Gibbs chain",
        "device": "torch device, e.g. cuda", "seed": "seed of weights, data order and draws",
        "out": "folder for checkpoints, grids and curves (--resume continues from it)"}
CHOICES = {"dataset": ("binarized-mnist", "mnist", "fashion-mnist", "digits"),
           "objectives": ("elbo", "beta", "unregularized", "mmd")}


def parse_args(argv=None) -> Config:
    return parse_config(Config, __doc__.split("\n\n")[0], HELP, argv=argv, choices=CHOICES,
                        types={"max_log_scale": _optional_float},
                        paper=PAPER, paper_help="longer training")


def _optional_float(value: str):
    """``--max-log-scale none`` for no bound."""
    return None if value == "none" else float(value)


if __name__ == "__main__":  # the flags first: --help and a bad flag answer before torch loads
    CONFIG = parse_args()

import torch  # noqa: E402
from _callbacks import callbacks  # noqa: E402
from torch.distributions import kl_divergence  # noqa: E402

from flowvae.data import load_dataset  # noqa: E402
from flowvae.infer import (  # noqa: E402
    GeneralizedELBO,
    active_units,
    gibbs_chain,
    mutual_information,
    plot_training_curve,
    save_grid,
)
from flowvae.models import VAE  # noqa: E402
from flowvae.train import CHECKPOINT, fit, prepare_out_dir, read_checkpoint  # noqa: E402


def spread(images, n: int):
    """``n`` images evenly spaced over ``images``: binarized MNIST's test split is sorted by
    class, so its first 1,000 images are zeros and ones."""
    return images if n >= len(images) else images[:: len(images) // n][:n]


@torch.no_grad()
def measure(model, x_mi, x_eval) -> dict:
    """I(x; z) on ``x_mi``; KL, the reconstruction NLL (per pixel ``nll``, per image
    ``distortion``; nats) and the active units of z (of E_q[z|x]'s variance) on ``x_eval``."""
    q = model.posterior(x_eval)
    distortion = -model.likelihood(q.sample()).log_prob(x_eval).mean()
    kl = kl_divergence(q, model.p_z(x_eval)).mean()
    return {"mi": float(mutual_information(model.posterior, x_mi)), "kl": float(kl),
            "nll": float(distortion) / model.num_dims, "distortion": float(distortion),
            "active_units": active_units(q.mean)}


def train(kind: str, model, train_set, x_mi, x_eval, config: Config):
    out = os.path.join(config.out, kind)
    path = os.path.join(out, CHECKPOINT)
    resume = prepare_out_dir(out, config.resume, config.overwrite)
    done = read_checkpoint(path)["epoch"] if resume else 0
    history = []
    for r in range(done + 1, config.rounds + 1):  # fit resumes from out/checkpoint.pt
        epochs = fit(model, train_set, None, epochs=r, batch_size=config.batch_size,
                     lr=config.lr, elbo=GeneralizedELBO(kind, max_plate_nesting=1),
                     device=config.device, out_dir=out, resume=r > 1, seed=config.seed,
                     progress=False, max_steps_per_epoch=config.steps_per_round,
                     callbacks=callbacks(config, out, epoch_lines=False))  # lines: below
        row = dict(kind=kind, step=r * config.steps_per_round, **measure(model, x_mi, x_eval),
                   minutes=sum(e["seconds"] for e in epochs) / 60)
        print(f"{kind:>14} step {row['step']:5d}  I(x;z) {row['mi']:.3f} nats  "
              f"KL {row['kl']:.3g}  NLL/pixel {row['nll']:.4f}  active units "
              f"{row['active_units']}/{config.latent_dim}  {row['minutes']:.1f} min",
              flush=True)
        history.append(row)
    if not history:  # trained already: load the last checkpoint and measure it
        state = read_checkpoint(path)
        model.load_state_dict(state["state_dict"])
        history.append(dict(kind=kind, step=done * config.steps_per_round,
                            minutes=sum(e["seconds"] for e in state["history"]) / 60,
                            **measure(model, x_mi, x_eval)))
    return history


def main(config: Config) -> list:
    torch.manual_seed(config.seed)
    train_set = load_dataset(config.dataset, "train")
    test = load_dataset(config.dataset, "test").images
    shape = tuple(train_set[0].shape)
    finals = []
    for kind in config.objectives:
        torch.manual_seed(config.seed)
        model = VAE(shape, latent_dim=config.latent_dim, hidden=config.hidden,
                    guide_kwargs=dict(max_log_scale=config.max_log_scale),
                    likelihood="pixelcnn", likelihood_kwargs=dict(
                        hidden_channels=config.pixel_channels, num_blocks=config.pixel_blocks,
                        context_channels=config.context_channels,
                        data_levels=train_set.levels)).to(config.device)
        x_mi = model.preprocess(spread(test, config.mi_images).to(config.device))
        history = train(kind, model, train_set, x_mi, spread(x_mi, config.eval_images), config)
        started = time.time()
        torch.manual_seed(config.seed)
        ancestral = model.generate(config.samples)
        out = os.path.join(config.out, kind)
        save_grid(ancestral, os.path.join(out, "ancestral.png"), config.samples,
                  title=f"{kind}: ancestral samples")
        steps = [f"Gibbs step {t}" for t in range(1, config.gibbs_steps + 1)]
        data = spread(x_mi, config.samples)
        for start, name, first in ((ancestral, "gibbs_chain.png", "ancestral"),
                                   (data, "gibbs_from_data.png", "test image")):
            chain = gibbs_chain(model, start, config.gibbs_steps)
            save_grid(torch.cat([start, *chain]), os.path.join(out, name), config.samples,
                      row_labels=[first, *steps], title=f"{kind}: Gibbs chain from {first}s")
        plot_training_curve(os.path.join(out, "metrics.csv"), title=kind)
        finals.append(dict(history[-1], sampling_minutes=(time.time() - started) / 60))
    print(f"\nI(x;z) is bounded by log M = {math.log(config.mi_images):.3f} nats "
          f"(M = {config.mi_images}); NLL is -E_q log p(x|z) per pixel, nats")
    print("| objective | SVI steps | I(x;z) | KL(q(z|x)||p(z)) | NLL/pixel | active units | "
          "train min | sampling min |\n|---|---|---|---|---|---|---|---|")
    for f in finals:
        print(f"| {f['kind']} | {f['step']} | {f['mi']:.3f} | {f['kl']:.3g} | {f['nll']:.4f} | "
              f"{f['active_units']}/{config.latent_dim} | {f['minutes']:.1f} | "
              f"{f['sampling_minutes']:.1f} |")
    print("wrote", write_results(os.path.join(config.out, "results.json"),
                                 {"config": asdict(config), "finals": finals}))
    return finals


if __name__ == "__main__":
    run_example(main, CONFIG, "information_preference.py")
