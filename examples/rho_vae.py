"""rho-VAE: diagonal vs AR(1) Gaussian guides in vanilla, beta, convolutional and InfoVAE models.

For each dataset, model variant and seed, trains the pair (diagonal, AR(1)) with the same seed
and budget (dynamically binarized training images, Bernoulli likelihood); prints the test
negative ELBO per epoch (IWAE NLL every ``--iwae-every`` epochs and at the end), with its rate
KL(q(z|x) || p(z)) and distortion -E_q log p(x|z) (nats), the active units of z (Burda et al.
2016) and the estimate of I(x; z), on a fixed binarization of the first ``--eval-images`` test
images, and a final table of them all; writes ``results.json`` per dataset,
``test_loss.png`` (one panel per dataset and variant), and per model of the first seed sample
and reconstruction grids and a training curve.

    python examples/rho_vae.py                                  # MNIST, one seed: minutes
    python examples/rho_vae.py --datasets mnist fashion-mnist --seeds 0 1 2   # the docs' run
    python examples/rho_vae.py --paper --device cuda            # full training sets, 50 epochs

The defaults (MNIST, seed 0, 6,000 training images, 5 epochs) finish in minutes on a CPU;
``--paper`` sets a paper-length run (both datasets, 3 seeds, every training and test image,
50 epochs, IWAE K=1000), and flags given next to it still win.
"""

from __future__ import annotations

import glob
import itertools
import json
import os
import statistics
import time
from dataclasses import asdict, dataclass

from _flags import parse_config, run_example

VARIANTS = ("vanilla", "beta", "conv", "infovae")
"""flowvae.models.rho_vae.VARIANTS, named here so that --help needs no torch (a test checks)."""
GUIDES = ("normal", "ar1")
"""flowvae.models.rho_vae.GUIDES, likewise."""
LABELS = {"normal": "diagonal", "ar1": "AR(1)"}
DIAGNOSTICS = ("rate_z", "distortion", "active_units_z", "mutual_info_z")
"""Latent diagnostics of :func:`flowvae.train.evaluate_elbo` kept per epoch and tabulated."""


@dataclass(frozen=True)
class Config:
    datasets: tuple = ("mnist",)
    models: tuple = VARIANTS
    seeds: tuple = (0,)
    epochs: int = 5
    train_size: int = 6000
    eval_images: int = 1000
    batch_size: int = 100
    lr: float = 1e-3
    latent_dim: int = 16
    hidden: int = 256
    conv_channels: int = 8
    per_dim_scale: bool = False
    beta: float = 4.0
    mmd_weight: float = 100.0
    iwae: int = 20
    iwae_every: int = 0
    device: str = "cpu"
    tensorboard: bool = False
    out: str = "runs/rho_vae"
    resume: bool = False
    overwrite: bool = False


PAPER = dict(datasets=("mnist", "fashion-mnist"), seeds=(0, 1, 2), train_size=0,
             eval_images=0, epochs=50, iwae=1000)
"""A paper-length run, which ``--paper`` selects."""

HELP = {"datasets": "datasets to run, one after the other (several allowed)",
        "models": "model variants (several allowed); each trains with both guides",
        "seeds": "seeds (several allowed); both guides of a seed share it",
        "epochs": "training epochs per model", "train_size": "training images (0: all)",
        "eval_images": "test images evaluated (0: all 10,000)",
        "batch_size": "images per SVI step", "lr": "Adam learning rate",
        "latent_dim": "size of z", "hidden": "width of the MLP encoder and decoder",
        "conv_channels": "channels of the conv variant's first layer",
        "per_dim_scale": "AR(1) guide with one scale per dimension instead of one per image",
        "beta": "KL weight of the beta variant", "mmd_weight": "MMD weight of InfoVAE",
        "iwae": "importance samples K of the test NLL",
        "iwae_every": "also evaluate IWAE every this many epochs (0: at the end only)",
        "device": "torch device, e.g. cuda", "out": "folder for runs, results, plots, grids"}
CHOICES = {"datasets": ("mnist", "fashion-mnist"), "models": VARIANTS}


def parse_args(argv=None) -> Config:
    return parse_config(Config, __doc__.split("\n\n")[0], HELP, argv=argv, choices=CHOICES,
                        paper=PAPER, paper_help="a paper-length run")


if __name__ == "__main__":  # the flags first: --help and a bad flag answer before torch loads
    CONFIG = parse_args()

import matplotlib  # noqa: E402
import torch  # noqa: E402
from _callbacks import callbacks  # noqa: E402

from flowvae.data import load_dataset  # noqa: E402
from flowvae.data.pixels import binarize  # noqa: E402
from flowvae.infer import iwae_log_likelihood, plot_training_curve, save_grid  # noqa: E402
from flowvae.models.rho_vae import rho_vae  # noqa: E402
from flowvae.train import CHECKPOINT, evaluate_elbo, fit, prepare_out_dir, read_checkpoint  # noqa

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)


def run(config: Config, dataset: str, variant: str, guide: str, seed: int, train, test):
    torch.manual_seed(seed)
    vae, elbo = rho_vae(variant, guide, tuple(train.shape[1:]), config.latent_dim,
                        hidden=config.conv_channels if variant == "conv" else config.hidden,
                        beta=config.beta, mmd_weight=config.mmd_weight,
                        per_dim_scale=config.per_dim_scale and guide == "ar1")
    out = os.path.join(config.out, dataset, f"{variant}-{guide}-{seed}")
    curve, started = [], time.time()
    resume = prepare_out_dir(out, config.resume, config.overwrite)
    done = read_checkpoint(os.path.join(out, CHECKPOINT))["epoch"] if resume else 0
    # one epoch per call (exact resume), then evaluate; --resume: the curve goes on from the
    # checkpoint (a finished run is loaded and evaluated once)
    for epoch in range(min(done + 1, config.epochs), config.epochs + 1):
        fit(vae, train, epochs=epoch, batch_size=config.batch_size, lr=config.lr, elbo=elbo,
            out_dir=out, resume=resume or epoch > 1, seed=seed, progress=False,
            callbacks=callbacks(config, out, epoch_lines=False),  # it prints its own lines
            device=config.device)
        metrics = evaluate_elbo(vae, test)  # every term at weight 1 (beta, MMD: not counted)
        row = {"epoch": epoch, **{k: metrics[k] for k in ("nelbo", *DIAGNOSTICS)}}
        if epoch == config.epochs or (config.iwae_every and epoch % config.iwae_every == 0):
            torch.manual_seed(10_000 + seed)  # the same IWAE draws for both guides
            log_px = torch.cat([iwae_log_likelihood(vae.model, vae.guide, vae.preprocess(x),
                                                    config.iwae, chunk_size=min(config.iwae, 100))
                                for x in test.split(1000)])
            row["iwae_nll"] = -log_px.mean().item()
        curve.append(row)
        print(f"{dataset:13s} {variant:7s} {LABELS[guide]:8s} seed {seed} epoch {epoch}: "
              + "  ".join(f"{k} {v}" if isinstance(v, int) else f"{k} {v:.2f}"
                          for k, v in row.items() if k != "epoch"), flush=True)
    if seed == config.seeds[0]:
        with torch.no_grad():  # Bernoulli means of z ~ p(z): clearer than binary samples
            means = vae.likelihood(torch.randn(64, config.latent_dim, device=config.device)).mean
            x = vae.preprocess(test[:16])
            recon = vae.likelihood(vae.posterior(x).mean).mean  # Bernoulli means at E q(z|x)
        save_grid(means, os.path.join(config.out, dataset, f"samples-{variant}-{guide}.png"),
                  title=f"{dataset} {variant}, {LABELS[guide]} q: Bernoulli means")
        save_grid(torch.cat([vae.to_image(x), recon]),
                  os.path.join(config.out, dataset, f"reconstructions-{variant}-{guide}.png"), 16,
                  row_labels=["input", "reconstruction"],
                  title=f"{dataset} {variant}, {LABELS[guide]} q: reconstructions")
        plot_training_curve(os.path.join(out, "metrics.csv"),
                            title=f"{dataset} {variant}, {LABELS[guide]} q, seed {seed}")
    return {"curve": curve, "seconds": time.time() - started}


def summarize(config: Config) -> None:
    """Table and plot from every ``results.json`` under ``config.out`` (other processes' too)."""
    results: dict = {}
    for path in sorted(glob.glob(os.path.join(config.out, "*", "results.json"))):
        with open(path) as f:
            results.update(json.load(f)["runs"])
    datasets = sorted({k.split("/")[0] for k in results})
    variants = [v for v in VARIANTS if any(k.split("/")[1] == v for k in results)]

    def finals(cell, guide, key):  # older results.json files lack the latent diagnostics
        return {k.rsplit("/", 1)[1]: r["curve"][-1][key] for k, r in results.items()
                if k.startswith(f"{cell}/{guide}/") and key in r["curve"][-1]}

    def fmt(values, units=""):  # one seed: no spread to show; units: "/<latent dims>"
        if len(values) == 1:
            return f"{values[0]}{units}" if units else f"{values[0]:.2f}"
        return f"{statistics.mean(values):.2f}{units} ± {statistics.stdev(values):.2f}"

    print("\nfinal test NLL, rate, distortion, I(x; z) (nats) and active units of z, mean ± std "
          "over seeds; diff = AR(1) - diagonal, paired\n"
          "| dataset/variant | metric | diagonal | AR(1) | diff | seeds |\n|" + "---|" * 6)
    for cell, key in itertools.product([f"{d}/{v}" for d in datasets for v in variants],
                                       ("nelbo", "iwae_nll", *DIAGNOSTICS)):
        diag, ar1 = finals(cell, "normal", key), finals(cell, "ar1", key)
        seeds = sorted(set(diag) & set(ar1))
        units = f"/{config.latent_dim}" if key.startswith("active_units") else ""
        if seeds:
            print(f"| {cell} | {key} | {fmt([diag[s] for s in seeds], units)} | "
                  f"{fmt([ar1[s] for s in seeds], units)} | "
                  f"{fmt([ar1[s] - diag[s] for s in seeds])} | {len(seeds)} |")
    print("I(x; z) is a Monte Carlo estimate (one z per test image, q(z) from the batch's own "
          "images): a small negative value is estimator noise around 0, as mutual information "
          "is never negative")
    fig, axes = plt.subplots(len(datasets), len(variants), squeeze=False,
                             figsize=(2.6 * len(variants), 2.3 * len(datasets)))
    for (i, dataset), (j, variant) in itertools.product(enumerate(datasets), enumerate(variants)):
        for guide, color in zip(GUIDES, ("tab:blue", "tab:red")):
            curves = [r["curve"] for k, r in results.items()
                      if k.startswith(f"{dataset}/{variant}/{guide}/")]
            for n, curve in enumerate(curves):  # one line per seed, one legend entry per guide
                axes[i][j].plot([x["epoch"] for x in curve], [x["nelbo"] for x in curve],
                                color=color, lw=1, marker="o", markersize=3,
                                label=None if n else LABELS[guide])
        axes[i][j].set_title(f"{dataset} {variant}", fontsize=9)
        axes[i][j].set_xlabel("epoch", fontsize=8)
    axes[0][0].set_ylabel("test -ELBO (nats)")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(config.out, "test_loss.png"), dpi=100)
    print("wrote", os.path.join(config.out, "test_loss.png"))


def main(config: Config) -> dict:
    runs: dict = {}
    for dataset in config.datasets:
        train = load_dataset(dataset, "train").images[: config.train_size or None]
        test = load_dataset(dataset, "test").images[: config.eval_images or None]
        # a fixed binarization as 8-bit extremes (0, 255): the model's binarization of 8-bit
        # images (its data_levels, 256) leaves them as they are
        test = binarize(test, mode="dynamic", generator=torch.Generator().manual_seed(0)) * 255
        for variant, seed, guide in itertools.product(config.models, config.seeds, GUIDES):
            key = f"{dataset}/{variant}/{guide}/{seed}"  # guides interleaved: same machine load
            runs[key] = run(config, dataset, variant, guide, seed, train, test.to(config.device))
            with open(os.path.join(config.out, dataset, "results.json"), "w") as f:
                json.dump({"config": asdict(config), "runs": {k: v for k, v in runs.items()
                                                              if k.startswith(dataset)}}, f)
    summarize(config)
    return runs


if __name__ == "__main__":
    run_example(main, CONFIG, "rho_vae.py")
