"""Posterior flows (rNVP report): k amortised RealNVP steps vs 2k planar steps vs a diagonal q.

Trains one VAE per posterior on binarized MNIST (Larochelle's fixed binarization; or MNIST with
dynamic binarization, `--binarize dynamic`), with the same MLP encoder / decoder and Bernoulli
likelihood for all, and prints per model the test -ELBO, the test NLL by IWAE with K samples,
the reconstruction term (distortion) -E_q log p(x|z) (not an NLL), the rate KL(q(z|x) || p(z)),
in nats per image, the active units of z (Burda et al. 2016) and the estimate of I(x; z) (not
for planar posteriors, whose density is known only at their own draws).

    python examples/posterior_flows.py                       # minutes on CPU: k=2, 2 epochs
    python examples/posterior_flows.py --paper --device cuda  # the report's table (hours)

The defaults finish in minutes on a CPU; ``--paper`` sets the report's sizes (k = 2, 5, 10;
100 epochs; IWAE K=5000 on every test image), and flags given next to it still win. Each model
writes ``samples.png``, ``reconstructions.png`` and ``training_curve.png`` into
``--out/<model>``.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from typing import Tuple

from _flags import parse_config, run_example, write_results


@dataclass(frozen=True)
class Config:
    binarize: str = "fixed"
    steps: Tuple[int, ...] = (2,)
    models: Tuple[str, ...] = ("normal", "realnvp", "planar")
    epochs: int = 2
    batch_size: int = 100
    lr: float = 1e-3
    latent_dim: int = 40
    hidden: int = 300
    context_features: int = 32
    flow_hidden: int = 128
    iwae: int = 100
    eval_images: int = 500
    max_steps_per_epoch: int = 0
    device: str = "cpu"
    tensorboard: bool = False
    out: str = "runs/posterior_flows"
    resume: bool = False
    overwrite: bool = False
    seed: int = 0


PAPER = dict(steps=(2, 5, 10), epochs=100, iwae=5000, eval_images=0)
"""The report's sizes, which ``--paper`` selects."""

HELP = {"binarize": "fixed: Larochelle's binarized MNIST; dynamic: MNIST binarized afresh",
        "steps": "k (several allowed): RealNVP steps of 2 couplings each; planar gets 2k maps",
        "models": "posteriors to train: diagonal normal, amortised RealNVP, planar",
        "epochs": "training epochs per model", "batch_size": "images per SVI step",
        "lr": "Adam learning rate", "latent_dim": "size of z",
        "hidden": "width of the MLP encoder and decoder",
        "context_features": "encoder features each RealNVP coupling is conditioned on",
        "flow_hidden": "width of the RealNVP coupling MLPs",
        "iwae": "importance samples K of the test NLL",
        "eval_images": "test images evaluated (0: all 10,000)",
        "max_steps_per_epoch": "stop each epoch after this many steps (0: the whole set)",
        "device": "torch device, e.g. cuda", "seed": "seed of weights, data order and draws",
        "out": "folder for checkpoints, metrics, grids and curves"}
CHOICES = {"binarize": ("fixed", "dynamic"), "models": Config.models}


def parse_args(argv=None) -> Config:
    return parse_config(Config, __doc__.split("\n\n")[0], HELP, argv=argv, choices=CHOICES,
                        paper=PAPER, paper_help="the report's sizes")


if __name__ == "__main__":  # the flags first: --help and a bad flag answer before torch loads
    CONFIG = parse_args()

import torch  # noqa: E402
from _callbacks import callbacks  # noqa: E402

from flowvae.data import load_dataset  # noqa: E402
from flowvae.infer import (  # noqa: E402
    elbo_per_datapoint,
    iwae_log_likelihood,
    plot_training_curve,
    save_grid,
)
from flowvae.models import posterior_flow_vae  # noqa: E402
from flowvae.train import TrainingDiverged, evaluate_elbo, fit, prepare_out_dir  # noqa: E402
from flowvae.transforms.conditioners import parameter_count  # noqa: E402


def spread(images, n: int):
    """``n`` images evenly spaced over ``images`` (all for 0): the fixed test split is sorted by
    class, so its first 1,000 images are zeros and ones."""
    return images if not n or n >= len(images) else images[:: len(images) // n][:n]


def load(config: Config):
    """Train images (uint8; grey ones are binarized afresh every batch), fixed test images of
    the same grey levels, and those levels (the likelihood's ``data_levels``)."""
    if config.binarize == "fixed":
        data = load_dataset("binarized-mnist", "train")
        test = load_dataset("binarized-mnist", "test").images
    else:
        data = load_dataset("mnist", "train")
        grey = load_dataset("mnist", "test").images
        rng = torch.Generator().manual_seed(config.seed)
        # a fixed binarization as 8-bit extremes (0, 255), which binarizing leaves as they are
        test = torch.bernoulli(grey / 255.0, generator=rng).to(torch.uint8) * 255
    return data.images, spread(test, config.eval_images), data.levels


@torch.no_grad()
def evaluate(model, images, config: Config, batch_size: int = 100) -> dict:
    """Means over ``images``: -ELBO (10 samples), IWAE NLL, -E_q log p(x|z) (10 samples), and
    :func:`flowvae.train.evaluate_elbo`'s latent diagnostics (one draw per image): distortion,
    rate, rate_z, active_units_z and (but for planar posteriors) mutual_info_z."""
    device = next(model.parameters()).device
    total = dict(nelbo=0.0, nll=0.0, recon=0.0)
    for start in range(0, len(images), batch_size):
        x = model.preprocess(images[start : start + batch_size].to(device))
        total["nelbo"] -= elbo_per_datapoint(model.model, model.guide, x, 10).sum().item()
        total["nll"] -= iwae_log_likelihood(model.model, model.guide, x, config.iwae,
                                            chunk_size=min(config.iwae, 100)).sum().item()
        z = model.posterior(x).sample((10,))
        total["recon"] -= model.likelihood(z).log_prob(x).mean(0).sum().item()
    diagnostics = evaluate_elbo(model, images)
    del diagnostics["nelbo"], diagnostics["bpd"]  # the 10-sample -ELBO above is less noisy
    return {**{key: value / len(images) for key, value in total.items()}, **diagnostics}


def main(config: Config) -> list:
    torch.manual_seed(config.seed)
    train, test, levels = load(config)
    print(f"posterior flows on {config.binarize}-binarized MNIST: {len(train)} train, "
          f"{len(test)} test images; {config.epochs} epochs of batches of {config.batch_size}, "
          f"latent {config.latent_dim}, IWAE K={config.iwae}, device {config.device}")
    runs = [("normal", 0)] if "normal" in config.models else []
    runs += [(kind, k) for k in config.steps for kind in ("realnvp", "planar")
             if kind in config.models]
    rows = []
    for kind, k in runs:
        name = kind if kind == "normal" else f"{kind}-k{k}"
        model = posterior_flow_vae(kind, k, tuple(train.shape[1:]), latent_dim=config.latent_dim,
                                   hidden=config.hidden, context_features=config.context_features,
                                   flow_hidden=config.flow_hidden,
                                   likelihood_kwargs=dict(data_levels=levels))
        started = time.time()
        try:
            out = os.path.join(config.out, name)
            fit(model, train, None, epochs=config.epochs, batch_size=config.batch_size,
                lr=config.lr, device=config.device, out_dir=out, seed=config.seed,
                progress=False, max_steps_per_epoch=config.max_steps_per_epoch or None,
                callbacks=callbacks(config, out, name),
                resume=prepare_out_dir(out, config.resume, config.overwrite))
        except TrainingDiverged as err:
            print(f"{name}: {err}")
            rows.append(dict(model=name, params=parameter_count(model), diverged=True))
            continue
        minutes = (time.time() - started) / 60
        started = time.time()
        metrics = evaluate(model, test, config)
        rows.append(dict(model=name, params=parameter_count(model), train_min=minutes,
                         eval_min=(time.time() - started) / 60, **metrics))
        print(f"{name}: test -ELBO {metrics['nelbo']:.2f}, NLL (IWAE) {metrics['nll']:.2f}, "
              f"rate {metrics['rate_z']:.2f} nats; {minutes:.1f} min", flush=True)
        out = os.path.join(config.out, name)
        save_grid(model.generate(64), os.path.join(out, "samples.png"), title=f"{name}: samples")
        x = model.preprocess(spread(test, 16).to(config.device))
        save_grid(torch.cat([model.to_image(x), model.reconstruct(x)]),
                  os.path.join(out, "reconstructions.png"), 16,
                  row_labels=["input", "reconstruction"], title=f"{name}: reconstructions")
        plot_training_curve(os.path.join(out, "metrics.csv"), title=name)

    print(f"\n| posterior | flow steps | parameters | train min | test -ELBO | test NLL (IWAE, "
          f"K={config.iwae}) | -E log p(x|z) | rate KL | active units | I(x; z) |\n"
          "|---|---|---|---|---|---|---|---|---|---|")
    for row, (kind, k) in zip(rows, runs):
        steps = {"normal": "-", "realnvp": f"{k} x 2 couplings", "planar": f"{2 * k} planar"}
        if row.get("diverged"):
            print(f"| {row['model']} | {steps[kind]} | {row['params']:,} | diverged |"
                  + " |" * 6)
            continue
        print(f"| {row['model']} | {steps[kind]} | {row['params']:,} | {row['train_min']:.1f} | "
              f"{row['nelbo']:.2f} | {row['nll']:.2f} | {row['recon']:.2f} | "
              f"{row['rate_z']:.2f} | {row['active_units_z']}/{config.latent_dim} | "
              + (f"{row['mutual_info_z']:.2f} |" if "mutual_info_z" in row else "- |"))
    print("nats per image; I(x; z) is a Monte Carlo estimate (a small negative value is "
          "estimator noise around 0)")
    print("wrote", write_results(os.path.join(config.out, "results.json"),
                                 {"config": asdict(config), "rows": rows}))
    return rows


if __name__ == "__main__":
    run_example(main, CONFIG, "posterior_flows.py")
