"""The VAPNEV paper's comparison at equal data, budget and (roughly) parameter count:

(a) VAPNEV, (b) the same flow unconditional (a plain RealNVP density), (c) a VAE with a
discretized-logistic pixel likelihood, (d) VAPNEV with the concatenation conditioner.

    python examples/vapnev_compare.py                    # digits, a few minutes on 2 CPU cores
    python examples/vapnev_compare.py --dataset mnist --epochs 5 --train-size 10000
    python examples/vapnev_compare.py --dataset mnist --models a c --dequantization variational
    python examples/vapnev_compare.py --paper --device cuda

The defaults finish in minutes on a CPU; ``--paper`` trains on all of MNIST with the paper's
latent size (256) and conditioner width (64) for 20 epochs and evaluates every test image, and
flags given next to it still win. Each model writes samples.png and training_curve.png into
--out/<letter>. The table has per model the test bits/dim by IWAE and, from the ELBO on the same
test images, the rate KL(q(z|x) || p(z)) and distortion -E_q log p(x|z) in nats per 8-bit image
(a density of dequantized pixels gains D log 256), the active units of z (Burda et al. 2016)
and the estimate of I(x; z); "-" for (b), which has no latent.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass
from functools import partial

from _flags import parse_config, run_example, write_results

from flowvae.choices import DATASET_NAMES as DATASETS
from flowvae.choices import DEQUANTIZATIONS


@dataclass(frozen=True)
class Config:
    dataset: str = "digits"
    epochs: int = 30
    batch_size: int = 64
    train_size: int = 0
    eval_images: int = 300
    latent_dim: int = 16
    flow_channels: int = 32
    dequantization: str = "uniform"
    models: tuple = ("a", "b", "c", "d")
    iwae: int = 100
    device: str = "cpu"
    tensorboard: bool = False
    out: str = "runs/vapnev-compare"
    resume: bool = False
    overwrite: bool = False
    seed: int = 0


PAPER = dict(dataset="mnist", train_size=0, eval_images=0, epochs=20, latent_dim=256,
             flow_channels=64)
"""MNIST at the paper's latent size and conditioner width, which ``--paper`` selects."""

CHOICES = {"dataset": DATASETS, "dequantization": DEQUANTIZATIONS}
HELP = {"dataset": "training and test images", "epochs": "training epochs per model",
        "batch_size": "images per SVI step", "train_size": "training images (0: all)",
        "eval_images": "test images evaluated (0: all)", "latent_dim": "size of z",
        "flow_channels": "conditioner width of (a)'s flow; the others are matched to its size",
        "dequantization": "dequantization of the flows (a), (b), (d)",
        "models": "which of (a)-(d) to run, by letter: a c (or ac)",
        "iwae": "importance samples K of the test bits/dim", "device": "torch device, e.g. cuda",
        "out": "folder for results.json and each model's run",
        "seed": "seed of weights, data order and draws"}


def parse_args(argv=None) -> Config:
    return parse_config(Config, __doc__.split("\n\n")[0], HELP, argv=argv, choices=CHOICES,
                        paper=PAPER, paper_help="paper sizes on MNIST")


if __name__ == "__main__":  # the flags first: --help and a bad flag answer before torch loads
    CONFIG = parse_args()

import torch  # noqa: E402
from _callbacks import callbacks  # noqa: E402

from flowvae.data import load_dataset  # noqa: E402
from flowvae.infer import (  # noqa: E402
    bits_per_dim,
    iwae_log_likelihood,
    plot_training_curve,
    save_grid,
)
from flowvae.models import VAE, VAPNEV, FlowDensity  # noqa: E402
from flowvae.train import evaluate_elbo, fit, prepare_out_dir  # noqa: E402


def count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def candidates(shape, c: Config):
    """(name, build) per model; ``build()`` makes it, so that each starts from the same seed."""
    flow = dict(hidden_channels=c.flow_channels, num_blocks=1)
    deq = dict(dequantization=c.dequantization)  # of the flows (a), (b), (d)
    target = count(VAPNEV(shape, latent_dim=c.latent_dim, hidden=16, flow_kwargs=flow, **deq))

    def closest(build, widths):  # the width whose parameter count is nearest to (a)'s
        width = min(widths, key=lambda w: abs(count(build(w)) - target))
        return partial(build, width)

    yield "(a) VAPNEV", partial(VAPNEV, shape, latent_dim=c.latent_dim, hidden=16,
                                flow_kwargs=flow, **deq)
    yield "(b) RealNVP, no latent", closest(
        lambda w: FlowDensity(shape, flow_kwargs=dict(hidden_channels=w, num_blocks=1), **deq),
        range(16, 129, 8))
    yield "(c) VAE, logistic pixels", closest(
        lambda w: VAE(shape, latent_dim=c.latent_dim, likelihood="logistic", network="conv",
                      hidden=w), range(8, 129, 8))
    yield "(d) VAPNEV, concat conditioner", closest(
        lambda w: VAPNEV(shape, latent_dim=c.latent_dim, hidden=16, flow_kwargs=dict(
            flow, hidden_channels=w, conditioner="concat"), **deq), range(16, 129, 8))


def main(c: Config) -> list:
    train = load_dataset(c.dataset, "train").images
    test = load_dataset(c.dataset, "test").images[: c.eval_images or None]
    if c.train_size:
        train = train[: c.train_size]
    shape = tuple(train.shape[1:])
    rows = []
    for name, build in candidates(shape, c):
        if name[1] not in "".join(c.models):  # "(a) VAPNEV" -> "a"; --models ac or a c
            continue
        torch.manual_seed(c.seed)  # the same seed for every model's weights and training
        model = build()
        started, out = time.time(), os.path.join(c.out, name[1])
        fit(model, train, epochs=c.epochs, batch_size=c.batch_size, device=c.device,
            seed=c.seed, progress=False, out_dir=out, callbacks=callbacks(c, out, name),
            resume=prepare_out_dir(out, c.resume, c.overwrite))
        minutes = (time.time() - started) / 60
        x = model.preprocess(test.to(c.device))
        log_px = torch.cat([iwae_log_likelihood(model.model, model.guide, chunk,
                                                num_samples=c.iwae, chunk_size=50)
                            for chunk in x.split(100)])
        bpd = bits_per_dim(log_px.mean().item(), shape, dequantized=not model.p_x.discrete)
        rows.append(dict(model=name, parameters=count(model), minutes=minutes,
                         test_bpd_iwae=bpd, **diagnostics(model, test)))
        save_grid(model.generate(32, temperature=0.8), os.path.join(out, "samples.png"),
                  title=f"{name}: samples, T=0.8")
        plot_training_curve(os.path.join(out, "metrics.csv"), title=name)
        print(f"{name}: test bits/dim (IWAE) {bpd:.4f}; {minutes:.1f} min", flush=True)
    print(f"\n{c.dataset}, {c.epochs} epochs, IWAE K={c.iwae} on {len(test)} test images")
    print_table(rows, c)
    print("wrote", write_results(os.path.join(c.out, "results.json"),
                                 {"config": asdict(c), "rows": rows}))
    return rows


def diagnostics(model, test) -> dict:
    """:func:`flowvae.train.evaluate_elbo` on the test images: ``test_nelbo``,
    ``test_bpd_elbo``, ``distortion``, ``rate`` and per latent site (``z``; with variational
    dequantization also ``dequantization``) ``rate_<site>``, ``active_units_<site>``,
    ``mutual_info_<site>``; and ``distortion_8bit``, the distortion of the 8-bit image."""
    metrics = evaluate_elbo(model, test)
    metrics["test_nelbo"], metrics["test_bpd_elbo"] = metrics.pop("nelbo"), metrics.pop("bpd")
    dims = math.prod(model.shape)
    metrics["distortion_8bit"] = metrics["distortion"] + (
        0.0 if model.discrete else dims * math.log(256))
    return metrics


def print_table(rows: list, c: Config) -> None:
    """One row per model; a model without z (b) shows "-" in z's columns."""
    deq = any("rate_dequantization" in r for r in rows)  # the variational dequantizer's KL

    def cell(r, key, fmt="{:.2f}"):
        return fmt.format(r[key]) if key in r else "-"

    print("| model | parameters | minutes | test bits/dim (IWAE) | rate z (nats) | "
          + ("rate dequantization (nats) | " if deq else "")
          + "distortion (nats, 8-bit) | active units z | I(x; z) (nats) |\n|"
          + "---|" * (8 + deq))
    for r in rows:
        units = f"{r['active_units_z']}/{c.latent_dim}" if "active_units_z" in r else "-"
        print(f"| {r['model']} | {r['parameters']:,} | {r['minutes']:.2f} | "
              f"{r['test_bpd_iwae']:.4f} | "
              f"{cell(r, 'rate_z')} | "
              + (f"{cell(r, 'rate_dequantization')} | " if deq else "")
              + f"{cell(r, 'distortion_8bit')} | {units} | {cell(r, 'mutual_info_z')} |")


if __name__ == "__main__":
    run_example(main, CONFIG, "vapnev_compare.py")
