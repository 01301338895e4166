"""srVAE: a VAE with a RealNVP prior and the two-level super-resolution VAE, against a
standard-normal-prior VAE with the same DenseNet networks and training budget.

Prints the test ELBO terms (RE_x, RE_y, KL_z, KL_u in nats, as the paper's Table 1), bits/dim
by ELBO and IWAE, and the PSNR of super_resolve(y) against bicubic upsampling of y, then the
latent diagnostics on the same test images: rate (KL per site u, z, nats), distortion (minus
the observations' expected log-likelihood, nats), active units of u and z (Burda et al. 2016)
and the estimates of I(x; u), I(x; z); writes
grids of generations (y, then x), reconstructions and super-resolutions, and training curves.
All three models start from the same data-dependent initialisation (--no-data-init: PyTorch's
default, under which srVAE's z collapses).

    python examples/srvae.py                         # Fashion-MNIST padded to 32x32, minutes
    python examples/srvae.py --models srvae          # one model
    python examples/srvae.py --paper --hidden 64 --device cuda      # CIFAR-10, 2000 epochs

The defaults (2,000 training images, 4 epochs) finish in minutes on a CPU; ``--paper`` sets
the paper's data and training length (CIFAR-10, every image, 2000 epochs, IWAE K=1000 on the
whole test set; the network widths stay the flags'), and flags given next to it still win.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass

from _flags import parse_config, run_example, write_results

from flowvae.choices import DATASET_NAMES as DATASETS

MODELS = ("normal", "flow", "srvae")


@dataclass(frozen=True)
class Config:
    dataset: str = "fashion-mnist"
    models: tuple = MODELS
    epochs: int = 4
    batch_size: int = 64
    lr: float = 2e-3
    train_size: int = 2000
    eval_images: int = 500
    latent_shape: tuple = (16, 8, 8)
    hidden: int = 32
    growth: int = 16
    num_layers: int = 2
    num_mixtures: int = 5
    flow_channels: int = 16
    flow_blocks: int = 1
    iwae: int = 20
    iwae_images: int = 100
    max_steps_per_epoch: int = 0
    data_init: bool = True
    device: str = "cpu"
    tensorboard: bool = False
    out: str = "runs/srvae"
    resume: bool = False
    overwrite: bool = False
    seed: int = 0


PAPER = dict(dataset="cifar10", train_size=0, eval_images=0, epochs=2000, iwae=1000,
             iwae_images=0)
"""The paper's data and training length, which ``--paper`` selects."""

HELP = {"dataset": "images (grey 28x28 ones are zero-padded to 32x32)",
        "models": "models to train (several allowed): N(0, I) prior, RealNVP prior, srVAE",
        "epochs": "training epochs per model", "batch_size": "images per SVI step",
        "lr": "Adamax learning rate", "train_size": "training images (0: all)",
        "eval_images": "test images of the ELBO terms and PSNR (0: all)",
        "latent_shape": "C H W of z (and of srVAE's u)", "hidden": "DenseNet base channels",
        "growth": "DenseNet growth rate", "num_layers": "layers per DenseNet block",
        "num_mixtures": "logistic mixture components", "flow_channels": "RealNVP width",
        "flow_blocks": "residual blocks per RealNVP conditioner",
        "iwae": "importance samples K of the IWAE bound",
        "iwae_images": "test images of the IWAE bound (0: all --eval-images)",
        "max_steps_per_epoch": "stop each epoch after this many steps (0: the whole set)",
        "data_init": "data-dependent initialisation on 256 training images",
        "device": "torch device, e.g. cuda", "out": "folder for runs, grids and curves",
        "seed": "seed of weights, data order and draws"}
CHOICES = {"dataset": DATASETS, "models": MODELS}


def parse_args(argv=None) -> Config:
    return parse_config(Config, __doc__.split("\n\n")[0], HELP, argv=argv, choices=CHOICES,
                        paper=PAPER, paper_help="the paper's data and length")


if __name__ == "__main__":  # the flags first: --help and a bad flag answer before torch loads
    CONFIG = parse_args()

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from _callbacks import callbacks  # noqa: E402

from flowvae.data import load_dataset  # noqa: E402
from flowvae.infer import (  # noqa: E402
    bits_per_dim,
    elbo_per_datapoint,
    iwae_log_likelihood,
    plot_training_curve,
    save_grid,
)
from flowvae.models import SRVAE, VAE, FlowPriorVAE  # noqa: E402
from flowvae.models.srvae import data_dependent_init  # noqa: E402
from flowvae.train import evaluate_elbo, fit, prepare_out_dir  # noqa: E402


def build(name: str, shape, c: Config):
    latent = tuple(c.latent_shape)
    flow = dict(hidden_channels=c.flow_channels, num_blocks=c.flow_blocks)
    net = dict(hidden=c.hidden, growth=c.growth, num_layers=c.num_layers,
               num_mixtures=c.num_mixtures)
    if name == "srvae":
        return SRVAE(shape, latent, flow_kwargs=flow, data_init=bool(c.data_init), **net)
    if name == "flow":
        return FlowPriorVAE(shape, latent, flow_kwargs=flow, **net)
    return VAE(shape, latent_dim=latent, network="dense", likelihood="logistic",
               hidden=c.hidden, likelihood_kwargs=dict(num_mixtures=c.num_mixtures),
               network_kwargs=dict(growth=c.growth, num_layers=c.num_layers))


def initialize(model, x):
    """Data-dependent init on 256 training images (SRVAE would otherwise do it on fit's first
    batch), the same for the single-level baselines' encoder and decoder."""
    if isinstance(model, SRVAE):
        model.initialize(x)
    else:
        data_dependent_init(lambda: elbo_per_datapoint(model.model, model.guide, x),
                            [model.encoder, model.decoder])


@torch.no_grad()
def elbo_terms(model, x):
    """Per-image terms of -ELBO in nats (positive: RE = -log p, KL = log q - log p)."""
    if isinstance(model, SRVAE):
        return {k: (-v if k.startswith("RE") else v) for k, v in model.elbo_terms(x).items()}
    q = model.posterior(x)
    z = q.sample()
    return {"RE_x": -model.likelihood(z).log_prob(x),
            "KL_z": q.log_prob(z) - model.p_z(x).log_prob(z)}


def psnr(a, b):
    return (10 * torch.log10(1 / ((a - b) ** 2).flatten(1).mean(1))).mean().item()


def evaluate(name, model, test, c: Config):
    dims = test[0].numel()
    sums = {}
    for i in range(0, len(test), 250):
        for k, v in elbo_terms(model, model.preprocess(test[i : i + 250])).items():
            sums[k] = sums.get(k, 0.0) + v.sum().item()
    row = {k: v / len(test) for k, v in sums.items()}
    row["elbo_bpd"] = sum(row.values()) / (dims * torch.log(torch.tensor(2.0)).item())
    x = model.preprocess(test[: c.iwae_images or None])
    log_px = torch.cat([iwae_log_likelihood(model.model, model.guide, x[i : i + 50],
                                            num_samples=c.iwae, chunk_size=min(c.iwae, 50))
                        for i in range(0, len(x), 50)])
    row["iwae_bpd"] = bits_per_dim(log_px.mean().item(), dims, dequantized=False)
    # rate per latent site, distortion, active units, I(x; z): every term at weight 1
    row.update(evaluate_elbo(model, test))
    if name == "srvae":
        x = model.preprocess(test[:500])
        y = model.downscale(x)
        truth = x / 255
        bicubic = F.interpolate(y / 255, scale_factor=2, mode="bicubic", align_corners=False)
        row["psnr_bicubic"] = psnr(bicubic.clamp(0, 1), truth)
        row["psnr_sample"] = psnr(model.super_resolve(y), truth)
        row["psnr_mean"] = psnr(torch.cat([model.super_resolve(y[i : i + 100], mean=True)
                                           for i in range(0, len(y), 100)]), truth)
        with torch.no_grad():  # what z carries: log p(x|y,z) for z ~ q(z|x) vs z ~ p(z|y,u)
            z_p = model.prior_z(y, model.posterior_u(y).sample()).sample()
            row["z_gain"] = (model.likelihood_x(y, model.posterior_z(x).sample()).log_prob(x)
                             - model.likelihood_x(y, z_p).log_prob(x)).mean().item()
    return row


def save_grids(name, model, test, out):
    x = model.preprocess(test[:16])
    rows = {"reconstructions": ["input", "reconstruction"]}
    if name == "srvae":
        gen_x, gen_y = model.generate(64, temperature=0.8, return_y=True)
        y = model.downscale(x)
        grids = {"generations_y": gen_y, "generations_x": gen_x,
                 "reconstructions": torch.cat([x / 255, model.reconstruct(x),
                                               model.generative_reconstruct(x)]),
                 "super_resolution": torch.cat([F.interpolate(y / 255, scale_factor=2),
                                                model.super_resolve(y), x / 255])}
        rows = {"reconstructions": ["input", "x' ~ p(x|y,z)", "from u ~ q(u|y)"],
                "super_resolution": ["low-res y", "super-resolved", "original"]}
    else:
        grids = {"generations": model.generate(64, temperature=0.8),
                 "reconstructions": torch.cat([x / 255, model.reconstruct(x)])}
    for key, images in grids.items():
        save_grid(images, os.path.join(out, f"{name}_{key}.png"), nrow=len(x) if key in rows
                  else 8, row_labels=rows.get(key), title=f"{name}: {key.replace('_', ' ')}")


def print_latent_table(results: dict, units: int, images: int) -> None:
    """Rate (KL per site), distortion, active units and I(x; site) of each model, nats per
    image; srVAE's distortion counts both observations (-E_q log p(x|y,z) - log p(y|u))."""
    def cell(row, key):
        if key not in row:  # a single-level model has no u
            return "-"
        return f"{row[key]}/{units}" if key.startswith("active") else f"{row[key]:.2f}"

    keys = ["rate_u", "rate_z", "distortion", "active_units_u", "active_units_z",
            "mutual_info_u", "mutual_info_z"]
    print("\n| model | " + " | ".join(keys) + " |\n|" + "---|" * (len(keys) + 1))
    for name, row in results.items():
        print(f"| {name} | " + " | ".join(cell(row, k) for k in keys) + " |")
    print(f"(latent diagnostics on {images} test images, nats per image: rate = KL(q || p) per "
          f"site, distortion = -E_q log p(observations | latents), active units of {units})")


def main(c: Config) -> dict:
    pad = 32 if c.dataset in ("mnist", "fashion-mnist") else None
    train = load_dataset(c.dataset, "train", pad_to=pad).images[: c.train_size or None]
    test = load_dataset(c.dataset, "test", pad_to=pad).images[: c.eval_images or None]
    shape = tuple(train.shape[1:])
    results = {}
    for name in c.models:
        torch.manual_seed(c.seed)
        model = build(name, shape, c)
        started = time.time()
        if c.data_init:
            initialize(model, model.preprocess(train[torch.randperm(len(train))[:256]]))
        out = os.path.join(c.out, name)
        history = fit(model, train, epochs=c.epochs, batch_size=c.batch_size, lr=c.lr,
            optimizer="adamax", device=c.device, out_dir=out, seed=c.seed,
            max_steps_per_epoch=c.max_steps_per_epoch or None, progress=False,
            callbacks=callbacks(c, out, name),
            resume=prepare_out_dir(out, c.resume, c.overwrite))
        minutes = (time.time() - started) / 60
        print(name, "train bits/dim by epoch:", [round(h["train_bpd"], 3) for h in history])
        test_dev = test.to(c.device)
        row = evaluate(name, model, test_dev, c)
        row.update(params=sum(p.numel() for p in model.parameters()), minutes=minutes)
        save_grids(name, model, test_dev, c.out)
        plot_training_curve(os.path.join(c.out, name, "metrics.csv"), title=name)
        results[name] = row
        print(f"{name}: ELBO {row['elbo_bpd']:.3f} bits/dim, IWAE {row['iwae_bpd']:.3f} "
              f"bits/dim; {minutes:.1f} min", flush=True)
    keys = ["params", "minutes", "RE_x", "RE_y", "KL_z", "KL_u", "elbo_bpd", "iwae_bpd",
            "z_gain", "psnr_bicubic", "psnr_sample", "psnr_mean"]
    print("\n| model | " + " | ".join(keys) + " |\n|" + "---|" * (len(keys) + 1))
    for name, row in results.items():
        cells = [f"{row[k]:,.0f}" if k == "params" else f"{row[k]:.3f}" if k in row else "-"
                 for k in keys]
        print(f"| {name} | " + " | ".join(cells) + " |")
    print(f"(IWAE: K={c.iwae} on {min(c.iwae_images or len(test), len(test))} test images; "
          f"ELBO terms on {len(test)})")
    print_latent_table(results, math.prod(c.latent_shape), len(test))
    print("wrote", write_results(os.path.join(c.out, "results.json"),
                                 {"config": asdict(c), "results": results}))
    return results


if __name__ == "__main__":
    run_example(main, CONFIG, "srvae.py")
