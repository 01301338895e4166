"""VAPNEV: a VAE whose likelihood p(x|z) is a conditional multi-scale RealNVP.

Trains on the bundled 8x8 `digits` by default (offline, a few minutes on 2 CPU cores), prints
test ELBO and bits/dim (and IWAE bits/dim with --iwae K), and writes sample, reconstruction and
interpolation grids.

    python examples/vapnev.py                       # digits, CPU
    python examples/vapnev.py --dataset mnist --epochs 20 --device cuda
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass

import torch

from flowvae.data import DATASETS, load_dataset
from flowvae.infer import bits_per_dim, iwae_log_likelihood, save_grid
from flowvae.models import VAPNEV
from flowvae.models.components import DEQUANTIZATIONS
from flowvae.train import PRECISIONS, evaluate_elbo, fit


@dataclass(frozen=True)
class Config:
    dataset: str = "digits"
    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-3
    latent_dim: int = 16
    hidden: int = 16
    flow_channels: int = 32
    num_blocks: int = 1
    checkerboard: str = "masked"
    dequantization: str = "uniform"
    iwae: int = 0
    max_steps_per_epoch: int = 0
    device: str = "cpu"
    compile: bool = False
    precision: str = "float32"
    time_limit: float = 0.0
    out: str = "runs/vapnev"
    seed: int = 0


def parse_args() -> Config:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default=Config.dataset, choices=DATASETS)
    parser.add_argument("--epochs", type=int, default=Config.epochs)
    parser.add_argument("--batch-size", type=int, default=Config.batch_size)
    parser.add_argument("--lr", type=float, default=Config.lr)
    parser.add_argument("--latent-dim", type=int, default=Config.latent_dim,
                        help="size of z (the paper uses 256)")
    parser.add_argument("--hidden", type=int, default=Config.hidden,
                        help="base channels of encoder and decoder (paper: 32)")
    parser.add_argument("--flow-channels", type=int, default=Config.flow_channels,
                        help="conditioner width k of the flow's first scale (paper: 64)")
    parser.add_argument("--num-blocks", type=int, default=Config.num_blocks,
                        help="residual blocks per conditioner (paper: 2)")
    parser.add_argument("--checkerboard", default=Config.checkerboard,
                        choices=("masked", "squeezed"))
    parser.add_argument("--dequantization", default=Config.dequantization,
                        choices=DEQUANTIZATIONS,
                        help="uniform noise (the paper) or a learned q(u|x) (Flow++): tighter")
    parser.add_argument("--iwae", type=int, default=Config.iwae,
                        help="also report the IWAE bound with K samples (0: skip)")
    parser.add_argument("--max-steps-per-epoch", type=int, default=0,
                        help="cap on training steps per epoch (0: whole training set)")
    parser.add_argument("--device", default=Config.device)
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the coupling networks (fit's compile=True)")
    parser.add_argument("--precision", default=Config.precision, choices=PRECISIONS,
                        help="bf16: coupling networks in bfloat16 (fit's precision)")
    parser.add_argument("--time-limit", type=float, default=Config.time_limit,
                        help="minutes; stop after the first epoch past it (0: none); running "
                             "the same command again resumes from --out's checkpoint")
    parser.add_argument("--out", default=Config.out, help="folder for checkpoint, logs, grids")
    parser.add_argument("--seed", type=int, default=Config.seed)
    return Config(**{k.replace("-", "_"): v for k, v in vars(parser.parse_args()).items()})


def main(config: Config) -> dict:
    torch.manual_seed(config.seed)
    pad = 32 if config.dataset in ("mnist", "fashion-mnist") else None
    train = load_dataset(config.dataset, "train", pad_to=pad)
    test = load_dataset(config.dataset, "test", pad_to=pad)
    shape = tuple(train[0].shape)
    model = VAPNEV(shape, latent_dim=config.latent_dim, hidden=config.hidden,
                   flow_kwargs=dict(hidden_channels=config.flow_channels,
                                    num_blocks=config.num_blocks,
                                    checkerboard=config.checkerboard),
                   dequantization=config.dequantization)
    params = sum(p.numel() for p in model.parameters())
    print(f"VAPNEV on {config.dataset} {shape}: {params:,} parameters, device {config.device}")
    started = time.time()
    history = fit(model, train, test, epochs=config.epochs, batch_size=config.batch_size,
                  lr=config.lr, device=config.device, out_dir=config.out, seed=config.seed,
                  max_steps_per_epoch=config.max_steps_per_epoch or None,
                  resume=_can_resume(config), compile=config.compile,
                  precision=config.precision, time_limit=60 * config.time_limit or None)
    minutes = (time.time() - started) / 60
    done = history[-1]["epoch"] if history else 0
    if done < config.epochs:  # stopped by --time-limit: no evaluation until the run is done
        print(f"stopped after epoch {done} of {config.epochs} (--time-limit); the same command "
              f"resumes from {config.out}")
        return {"epoch": done}

    test_images = test.images[:1000]
    metrics = evaluate_elbo(model, test_images)
    rows = [("test -ELBO (nats)", f"{metrics['nelbo']:.2f}"),
            ("test bits/dim (ELBO)", f"{metrics['bpd']:.3f}")]
    device = next(model.parameters()).device
    if config.iwae:
        x = model.preprocess(test_images[:200].to(device))
        log_px = iwae_log_likelihood(model.model, model.guide, x, num_samples=config.iwae,
                                     chunk_size=min(config.iwae, 50))
        rows.append((f"test bits/dim (IWAE, K={config.iwae}, 200 images)",
                     f"{bits_per_dim(log_px.mean().item(), shape):.3f}"))
    rows.append(("training minutes", f"{minutes:.1f}"))
    width = max(len(r[0]) for r in rows)
    print("\n| metric" + " " * (width - 6) + " | value |\n|" + "-" * (width + 2) + "|-------|")
    for name, value in rows:
        print(f"| {name.ljust(width)} | {value} |")

    x = model.preprocess(test_images[:32].to(device))
    grids = {
        "samples.png": model.generate(64, temperature=0.8),
        "reconstructions.png": torch.cat([model.to_image(x), model.reconstruct(x)]),
        "interpolation.png": torch.cat([model.interpolate(x[i], x[i + 1], steps=8)
                                        for i in range(0, 16, 2)]),
    }
    for name, images in grids.items():
        print("wrote", save_grid(images, os.path.join(config.out, name)))
    return dict(metrics, minutes=minutes)


def _can_resume(config: Config) -> bool:
    return os.path.exists(os.path.join(config.out, "checkpoint.pt"))


if __name__ == "__main__":
    main(parse_args())
