"""Posterior flows (rNVP report): k amortised RealNVP steps vs 2k planar steps vs a diagonal q.

Trains one VAE per posterior on binarized MNIST (Larochelle's fixed binarization; or MNIST with
dynamic binarization, `--binarize dynamic`), with the same MLP encoder / decoder and Bernoulli
likelihood for all, and prints per model the test -ELBO, the test NLL by IWAE with K samples
and the reconstruction term -E_q log p(x|z) (not an NLL), in nats per image.

    python examples/posterior_flows.py --steps 2 5 10 --iwae 5000 --device cuda   # the table
    python examples/posterior_flows.py --steps 2 --epochs 2 --test-images 500 --iwae 100  # CPU
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import asdict, dataclass
from typing import Tuple

import torch

from flowvae.data import load_dataset
from flowvae.infer import elbo_per_datapoint, iwae_log_likelihood, save_grid
from flowvae.models import posterior_flow_vae
from flowvae.train import TrainingDiverged, fit
from flowvae.transforms.conditioners import parameter_count


@dataclass(frozen=True)
class Config:
    binarize: str = "fixed"
    steps: Tuple[int, ...] = (2, 5, 10)
    kinds: Tuple[str, ...] = ("normal", "realnvp", "planar")
    epochs: int = 100
    batch_size: int = 100
    lr: float = 1e-3
    latent_dim: int = 40
    hidden: int = 300
    context_features: int = 32
    flow_hidden: int = 128
    iwae: int = 5000
    test_images: int = 0
    max_steps_per_epoch: int = 0
    device: str = "cpu"
    out: str = "runs/posterior_flows"
    seed: int = 0


def parse_args() -> Config:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binarize", default=Config.binarize, choices=("fixed", "dynamic"))
    parser.add_argument("--steps", type=int, nargs="+", default=Config.steps,
                        help="k: RealNVP steps (2 couplings each); planar gets 2k steps")
    parser.add_argument("--kinds", nargs="+", default=Config.kinds, choices=Config.kinds)
    for name in ("epochs", "batch-size", "latent-dim", "hidden", "context-features",
                 "flow-hidden", "iwae", "test-images", "max-steps-per-epoch", "seed"):
        parser.add_argument(f"--{name}", type=int, default=getattr(Config, name.replace("-", "_")))
    parser.add_argument("--lr", type=float, default=Config.lr)
    parser.add_argument("--device", default=Config.device)
    parser.add_argument("--out", default=Config.out, help="folder for checkpoints, logs, grids")
    args = {k: tuple(v) if isinstance(v, list) else v for k, v in vars(parser.parse_args()).items()}
    return Config(**args)


def load(config: Config):
    """Train images (uint8; grey ones are binarized afresh every batch) and fixed test images."""
    if config.binarize == "fixed":
        train = load_dataset("binarized-mnist", "train").images
        test = load_dataset("binarized-mnist", "test").images
    else:
        train = load_dataset("mnist", "train").images
        grey = load_dataset("mnist", "test").images
        rng = torch.Generator().manual_seed(config.seed)
        test = torch.bernoulli(grey / 255.0, generator=rng).to(torch.uint8)
    return train, test[: config.test_images or None]


@torch.no_grad()
def evaluate(model, images, config: Config, batch_size: int = 100) -> dict:
    """Means over ``images``: -ELBO (10 samples), IWAE NLL, -E_q log p(x|z) (10 samples)."""
    device = next(model.parameters()).device
    total = dict(nelbo=0.0, nll=0.0, recon=0.0)
    for start in range(0, len(images), batch_size):
        x = model.preprocess(images[start : start + batch_size].to(device))
        total["nelbo"] -= elbo_per_datapoint(model.model, model.guide, x, 10).sum().item()
        total["nll"] -= iwae_log_likelihood(model.model, model.guide, x, config.iwae,
                                            chunk_size=min(config.iwae, 100)).sum().item()
        z = model.posterior(x).sample((10,))
        total["recon"] -= model.likelihood(z).log_prob(x).mean(0).sum().item()
    return {key: value / len(images) for key, value in total.items()}


def main(config: Config) -> list:
    torch.manual_seed(config.seed)
    train, test = load(config)
    print(f"posterior flows on {config.binarize}-binarized MNIST: {len(train)} train, "
          f"{len(test)} test images; device {config.device}; {asdict(config)}")
    runs = [("normal", 0)] if "normal" in config.kinds else []
    runs += [(kind, k) for k in config.steps for kind in ("realnvp", "planar")
             if kind in config.kinds]
    rows = []
    for kind, k in runs:
        name = kind if kind == "normal" else f"{kind}-k{k}"
        model = posterior_flow_vae(kind, k, tuple(train.shape[1:]), latent_dim=config.latent_dim,
                                   hidden=config.hidden, context_features=config.context_features,
                                   flow_hidden=config.flow_hidden)
        started = time.time()
        try:
            fit(model, train, None, epochs=config.epochs, batch_size=config.batch_size,
                lr=config.lr, device=config.device, out_dir=os.path.join(config.out, name),
                seed=config.seed, progress=False,
                max_steps_per_epoch=config.max_steps_per_epoch or None)
        except TrainingDiverged as err:
            print(f"{name}: {err}")
            rows.append(dict(model=name, params=parameter_count(model), diverged=True))
            continue
        minutes = (time.time() - started) / 60
        started = time.time()
        metrics = evaluate(model, test, config)
        rows.append(dict(model=name, params=parameter_count(model), train_min=minutes,
                         eval_min=(time.time() - started) / 60, **metrics))
        print(rows[-1], flush=True)
        save_grid(model.generate(64), os.path.join(config.out, f"samples_{name}.png"))

    print(f"\n| posterior | flow steps | parameters | train min | test -ELBO | test NLL (IWAE, "
          f"K={config.iwae}) | -E log p(x|z) |\n|---|---|---|---|---|---|---|")
    for row, (kind, k) in zip(rows, runs):
        steps = {"normal": "-", "realnvp": f"{k} x 2 couplings", "planar": f"{2 * k} planar"}
        if row.get("diverged"):
            print(f"| {row['model']} | {steps[kind]} | {row['params']:,} | diverged | | | |")
            continue
        print(f"| {row['model']} | {steps[kind]} | {row['params']:,} | {row['train_min']:.1f} | "
              f"{row['nelbo']:.2f} | {row['nll']:.2f} | {row['recon']:.2f} |")
    return rows


if __name__ == "__main__":
    main(parse_args())
