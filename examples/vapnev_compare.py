"""The VAPNEV paper's comparison at equal data, budget and (roughly) parameter count:

(a) VAPNEV, (b) the same flow unconditional (a plain RealNVP density), (c) a VAE with a
discretized-logistic pixel likelihood, (d) VAPNEV with the concatenation conditioner.

    python examples/vapnev_compare.py                    # digits, a few minutes on 2 CPU cores
    python examples/vapnev_compare.py --dataset mnist --epochs 5 --train-size 10000
    python examples/vapnev_compare.py --dataset mnist --models ac --dequantization variational

Each model writes samples.png and training_curve.png into --out/<letter>.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict, dataclass
from functools import partial

import torch

from flowvae.data import DATASETS, load_dataset
from flowvae.infer import bits_per_dim, iwae_log_likelihood, plot_training_curve, save_grid
from flowvae.models import VAE, VAPNEV, FlowDensity
from flowvae.models.components import DEQUANTIZATIONS
from flowvae.train import fit


@dataclass(frozen=True)
class Config:
    dataset: str = "digits"
    epochs: int = 30
    batch_size: int = 64
    train_size: int = 0
    test_size: int = 300
    latent_dim: int = 16
    flow_channels: int = 32
    dequantization: str = "uniform"
    models: str = "abcd"
    iwae: int = 100
    device: str = "cpu"
    out: str = "runs/vapnev-compare"
    seed: int = 0


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
    test = load_dataset(c.dataset, "test").images[: c.test_size]
    if c.train_size:
        train = train[: c.train_size]
    shape = tuple(train.shape[1:])
    rows = []
    for name, build in candidates(shape, c):
        if name[1] not in c.models:  # "(a) VAPNEV" -> "a"
            continue
        torch.manual_seed(c.seed)  # the same seed for every model's weights and training
        model = build()
        started, out = time.time(), os.path.join(c.out, name[1])
        fit(model, train, epochs=c.epochs, batch_size=c.batch_size, device=c.device,
            seed=c.seed, progress=False, out_dir=out)
        minutes = (time.time() - started) / 60
        x = model.preprocess(test.to(c.device))
        log_px = torch.cat([iwae_log_likelihood(model.model, model.guide, chunk,
                                                num_samples=c.iwae, chunk_size=50)
                            for chunk in x.split(100)])
        bpd = bits_per_dim(log_px.mean().item(), shape, dequantized=not model.p_x.discrete)
        rows.append(dict(model=name, parameters=count(model), minutes=round(minutes, 2),
                         test_bpd_iwae=round(bpd, 4)))
        save_grid(model.generate(32, temperature=0.8), os.path.join(out, "samples.png"),
                  title=f"{name}: samples, T=0.8")
        plot_training_curve(os.path.join(out, "metrics.csv"), title=name)
        print(rows[-1], flush=True)
    print(f"\n{c.dataset}, {c.epochs} epochs, IWAE K={c.iwae} on {len(test)} test images")
    print("| model | parameters | minutes | test bits/dim (IWAE) |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['parameters']:,} | {r['minutes']} | {r['test_bpd_iwae']} |")
    os.makedirs(c.out, exist_ok=True)
    with open(os.path.join(c.out, "results.json"), "w") as f:
        json.dump({"config": asdict(c), "rows": rows}, f, indent=1)
    return rows


CHOICES = {"dataset": DATASETS, "dequantization": DEQUANTIZATIONS}
HELP = {"train_size": "train images used (0: all)", "test_size": "test images evaluated",
        "models": "which of (a)-(d) to run, e.g. ac", "iwae": "importance samples K",
        "out": "folder for results.json and each model's run"}

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for field, default in asdict(Config()).items():
        flag = "--" + field.replace("_", "-")
        text = HELP.get(field, "") + f" (default: {default})"
        if field in CHOICES:
            parser.add_argument(flag, default=default, choices=CHOICES[field], help=text)
        else:
            parser.add_argument(flag, type=type(default), default=default, help=text)
    main(Config(**vars(parser.parse_args())))
