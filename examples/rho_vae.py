"""rho-VAE: diagonal vs AR(1) Gaussian guides in vanilla, beta, convolutional and InfoVAE models.

For each dataset, variant and seed, trains the pair (diagonal, AR(1)) with the same seed and
budget (dynamically binarized training images, Bernoulli likelihood); prints the test negative
ELBO per epoch (IWAE NLL every ``--iwae-every`` epochs and at the end) on a fixed binarization of
the first ``--test-size`` test images; writes ``results.json`` per dataset, ``test_loss.png``
(one panel per dataset and variant) and sample grids.

    python examples/rho_vae.py --datasets mnist --seeds 0 --epochs 1 --train-size 1000
"""

from __future__ import annotations

import argparse
import glob
import itertools
import json
import os
import statistics
import time
from dataclasses import asdict, dataclass, fields

import matplotlib
import torch

from flowvae.data import load_dataset
from flowvae.data.pixels import binarize
from flowvae.infer import iwae_log_likelihood, plot_training_curve, save_grid
from flowvae.models.rho_vae import GUIDES, VARIANTS, rho_vae
from flowvae.train import evaluate_elbo, fit

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)

LABELS = {"normal": "diagonal", "ar1": "AR(1)"}


@dataclass(frozen=True)
class Config:
    datasets: tuple = ("mnist", "fashion-mnist")
    variants: tuple = VARIANTS
    seeds: tuple = (0, 1, 2)
    epochs: int = 5
    train_size: int = 6000
    test_size: int = 1000
    batch_size: int = 100
    lr: float = 1e-3
    latent_dim: int = 16
    hidden: int = 256
    conv_channels: int = 8
    per_dim_scale: bool = False
    beta: float = 4.0
    mmd_weight: float = 1000.0
    iwae: int = 20
    iwae_every: int = 0
    device: str = "cpu"
    out: str = "runs/rho_vae"


def parse_args() -> Config:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for f in fields(Config):
        many, flag = isinstance(f.default, tuple), "--" + f.name.replace("_", "-")
        if isinstance(f.default, bool):
            parser.add_argument(flag, action="store_true")
        else:
            parser.add_argument(flag, default=f.default, nargs="+" if many else None,
                                type=type(f.default[0] if many else f.default))
    args = vars(parser.parse_args())
    return Config(**{k: tuple(v) if isinstance(v, list) else v for k, v in args.items()})


def run(config: Config, dataset: str, variant: str, guide: str, seed: int, train, test):
    torch.manual_seed(seed)
    vae, elbo = rho_vae(variant, guide, tuple(train.shape[1:]), config.latent_dim,
                        hidden=config.conv_channels if variant == "conv" else config.hidden,
                        beta=config.beta, mmd_weight=config.mmd_weight,
                        per_dim_scale=config.per_dim_scale and guide == "ar1")
    out = os.path.join(config.out, dataset, f"{variant}-{guide}-{seed}")
    curve, started = [], time.time()
    for epoch in range(1, config.epochs + 1):  # one epoch per call (exact resume), then evaluate
        fit(vae, train, epochs=epoch, batch_size=config.batch_size, lr=config.lr, elbo=elbo,
            out_dir=out, resume=epoch > 1, seed=seed, progress=False, device=config.device)
        row = {"epoch": epoch, "nelbo": evaluate_elbo(vae, test)["nelbo"]}
        if epoch == config.epochs or (config.iwae_every and epoch % config.iwae_every == 0):
            torch.manual_seed(10_000 + seed)  # the same IWAE draws for both guides
            log_px = iwae_log_likelihood(vae.model, vae.guide, vae.preprocess(test),
                                         num_samples=config.iwae, chunk_size=config.iwae)
            row["iwae_nll"] = -log_px.mean().item()
        curve.append(row)
        print(f"{dataset:13s} {variant:7s} {LABELS[guide]:8s} seed {seed} epoch {epoch}: "
              + "  ".join(f"{k} {v:.2f}" for k, v in row.items() if k != "epoch"), flush=True)
    if seed == config.seeds[0]:
        with torch.no_grad():  # Bernoulli means of z ~ p(z): clearer than binary samples
            means = vae.likelihood(torch.randn(64, config.latent_dim, device=config.device)).mean
        save_grid(means, os.path.join(config.out, dataset, f"samples-{variant}-{guide}.png"),
                  title=f"{dataset} {variant}, {LABELS[guide]} q: Bernoulli means")
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

    def finals(cell, guide, key):
        return {k.rsplit("/", 1)[1]: r["curve"][-1][key] for k, r in results.items()
                if k.startswith(f"{cell}/{guide}/")}

    def fmt(values):
        spread = statistics.stdev(values) if len(values) > 1 else float("nan")
        return f"{statistics.mean(values):.2f} ± {spread:.2f}"

    print("\nfinal test NLL (nats), mean ± std over seeds; diff = AR(1) - diagonal, paired\n"
          "| dataset/variant | metric | diagonal | AR(1) | diff | seeds |\n|" + "---|" * 6)
    for cell, key in itertools.product([f"{d}/{v}" for d in datasets for v in variants],
                                       ("nelbo", "iwae_nll")):
        diag, ar1 = finals(cell, "normal", key), finals(cell, "ar1", key)
        seeds = sorted(set(diag) & set(ar1))
        if seeds:
            print(f"| {cell} | {key} | {fmt([diag[s] for s in seeds])} | "
                  f"{fmt([ar1[s] for s in seeds])} | {fmt([ar1[s] - diag[s] for s in seeds])} "
                  f"| {len(seeds)} |")
    fig, axes = plt.subplots(len(datasets), len(variants), squeeze=False,
                             figsize=(2.6 * len(variants), 2.3 * len(datasets)))
    for (i, dataset), (j, variant) in itertools.product(enumerate(datasets), enumerate(variants)):
        for guide, color in zip(GUIDES, ("tab:blue", "tab:red")):
            curves = [r["curve"] for k, r in results.items()
                      if k.startswith(f"{dataset}/{variant}/{guide}/")]
            for n, curve in enumerate(curves):  # one line per seed, one legend entry per guide
                axes[i][j].plot([x["epoch"] for x in curve], [x["nelbo"] for x in curve],
                                color=color, lw=1, label=None if n else LABELS[guide])
        axes[i][j].set_title(f"{dataset} {variant}", fontsize=8)
    axes[0][0].set_ylabel("test -ELBO (nats)")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(config.out, "test_loss.png"), dpi=80)


def main(config: Config) -> dict:
    runs: dict = {}
    for dataset in config.datasets:
        train = load_dataset(dataset, "train").images[: config.train_size]
        test = load_dataset(dataset, "test").images[: config.test_size]
        test = binarize(test, mode="dynamic", generator=torch.Generator().manual_seed(0))
        for variant, seed, guide in itertools.product(config.variants, config.seeds, GUIDES):
            key = f"{dataset}/{variant}/{guide}/{seed}"  # guides interleaved: same machine load
            runs[key] = run(config, dataset, variant, guide, seed, train, test.to(config.device))
            with open(os.path.join(config.out, dataset, "results.json"), "w") as f:
                json.dump({"config": asdict(config), "runs": {k: v for k, v in runs.items()
                                                              if k.startswith(dataset)}}, f)
    summarize(config)
    return runs


if __name__ == "__main__":
    main(parse_args())
