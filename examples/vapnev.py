"""VAPNEV: a VAE whose likelihood p(x|z) is a conditional multi-scale RealNVP.

Trains on the bundled 8x8 `digits` by default (offline, a few minutes on 2 CPU cores) with free
bits, so that the latent z is used: trained on the plain ELBO, the flow models the pixels alone
and q(z|x) collapses to the prior (rate 0). Prints, for that model and for the same model trained
on the plain ELBO (--no-compare skips it): test ELBO and bits/dim, rate (KL), distortion, active
units, mutual information, the share of reconstructions a classifier gives their original's
label (and IWAE bits/dim with --iwae K); writes sample, reconstruction and interpolation grids
and the training curve.

    python examples/vapnev.py                       # digits, CPU
    python examples/vapnev.py --free-bits 0         # the plain ELBO: a collapsed latent
    python examples/vapnev.py --dataset mnist --epochs 20 --device cuda
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, replace

from _flags import parse_config, run_example, write_results

from flowvae.choices import CHECKERBOARDS, DATASET_NAMES, DEQUANTIZATIONS
from flowvae.train.config import PRECISIONS

PLAIN_ELBO = "plain-elbo"  # the sub-folder of the comparison run


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
    free_bits: float = 1.0
    free_bits_group: str = "dimension"
    kl_warmup: int = 0
    compare: bool = True
    eval_images: int = 1000
    iwae: int = 0
    max_steps_per_epoch: int = 0
    device: str = "cpu"
    compile: bool = False
    precision: str = "float32"
    time_limit: float = 0.0
    tensorboard: bool = False
    out: str = "runs/vapnev"
    resume: bool = False
    overwrite: bool = False
    seed: int = 0


HELP = {"dataset": "dataset (digits is bundled; the others are read from FLOWVAE_DATA)",
        "epochs": "training epochs", "batch_size": "images per step", "lr": "Adam learning rate",
        "latent_dim": "size of z (the paper uses 256)",
        "hidden": "base channels of encoder and decoder (paper: 32)",
        "flow_channels": "conditioner width k of the flow's first scale (paper: 64)",
        "num_blocks": "residual blocks per conditioner (paper: 2)",
        "checkerboard": "checkerboard couplings: masked, or on squeezed channels",
        "dequantization": "uniform noise (the paper) or a learned q(u|x) (Flow++): tighter",
        "free_bits": "free bits (Kingma et al. 2016), nats per latent group; 0: the plain ELBO, "
                     "whose latent collapses",
        "free_bits_group": "a group is one latent dimension, or all z (site)",
        "kl_warmup": "steps of KL warm-up from 0 to 1 (Bowman et al. 2016; 0: none)",
        "compare": "also train the same model on the plain ELBO, in OUT/plain-elbo",
        "eval_images": "test images to evaluate on (0: all)",
        "iwae": "also report the IWAE bound with K samples on 200 test images (0: skip)",
        "max_steps_per_epoch": "cap on training steps per epoch (0: whole training set)",
        "device": "torch device, e.g. cuda",
        "compile": "torch.compile the coupling networks (fit's compile=True)",
        "precision": "bf16: coupling networks in bfloat16 (fit's precision)",
        "time_limit": "minutes; stop after the first epoch past it (0: none); the same command "
                      "with --resume continues from --out's checkpoint",
        "tensorboard": "also log to OUT/tensorboard (tensorboard --logdir OUT)",
        "out": "folder for checkpoint, logs, grids", "seed": "seed of weights and data order"}
CHOICES = {"dataset": DATASET_NAMES, "checkerboard": CHECKERBOARDS,
           "dequantization": DEQUANTIZATIONS, "free_bits_group": ("dimension", "site"),
           "precision": PRECISIONS}


def parse_args(argv=None) -> Config:
    return parse_config(Config, __doc__.split("\n\n")[0], HELP, argv=argv, choices=CHOICES)


if __name__ == "__main__":  # the flags first: --help and a bad flag answer before torch loads
    CONFIG = parse_args()

import torch  # noqa: E402
from _callbacks import callbacks  # noqa: E402

from flowvae.data import load_dataset  # noqa: E402
from flowvae.infer import (  # noqa: E402
    GeneralizedELBO,
    bits_per_dim,
    iwae_log_likelihood,
    label_agreement,
    plot_training_curve,
    save_grid,
)
from flowvae.models import VAPNEV  # noqa: E402
from flowvae.train import evaluate_elbo, fit, prepare_out_dir  # noqa: E402


def main(config: Config) -> dict:
    pad = 32 if config.dataset in ("mnist", "fashion-mnist") else None
    train = load_dataset(config.dataset, "train", pad_to=pad)
    test = load_dataset(config.dataset, "test", pad_to=pad)
    shaped = config.free_bits > 0 or config.kl_warmup > 0
    runs = [("free bits" if config.free_bits else "KL warm-up", config)] if shaped else []
    if config.compare or not shaped:
        plain = replace(config, free_bits=0.0, kl_warmup=0,
                        out=os.path.join(config.out, PLAIN_ELBO) if shaped else config.out)
        runs.append(("plain ELBO", plain))
    results = {}
    for name, run in runs:
        model, metrics = train_and_evaluate(run, train, test)
        if metrics is None:  # stopped by --time-limit: no evaluation until the run is done
            return {"epoch": model}
        results[name] = metrics
        if run is runs[0][1]:
            write_pictures(model, test, run.out)
    print_table(results)
    print("wrote", write_results(os.path.join(config.out, "results.json"),
                                 {"config": asdict(config), "results": results}))
    return results[runs[0][0]]


def train_and_evaluate(config: Config, train, test):
    """Train one VAPNEV of ``config`` (resuming from ``config.out``) and measure it."""
    torch.manual_seed(config.seed)
    shape = tuple(train[0].shape)
    model = VAPNEV(shape, latent_dim=config.latent_dim, hidden=config.hidden,
                   flow_kwargs=dict(hidden_channels=config.flow_channels,
                                    num_blocks=config.num_blocks,
                                    checkerboard=config.checkerboard),
                   dequantization=config.dequantization)
    params = sum(p.numel() for p in model.parameters())
    print(f"VAPNEV on {config.dataset} {shape}: {params:,} parameters, device {config.device}, "
          f"{objective_name(config)}")
    elbo = "trace"
    if config.free_bits or config.kl_warmup:
        elbo = GeneralizedELBO("elbo", free_bits=config.free_bits,
                               free_bits_group=config.free_bits_group,
                               warmup_steps=config.kl_warmup, max_plate_nesting=1)
    started = time.time()
    history = fit(model, train, test, epochs=config.epochs, batch_size=config.batch_size,
                  lr=config.lr, elbo=elbo, device=config.device, out_dir=config.out,
                  seed=config.seed, max_steps_per_epoch=config.max_steps_per_epoch or None,
                  resume=prepare_out_dir(config.out, config.resume, config.overwrite),
                  compile=config.compile, callbacks=callbacks(config, config.out),
                  precision=config.precision, time_limit=60 * config.time_limit or None)
    minutes = (time.time() - started) / 60
    done = history[-1]["epoch"] if history else 0
    if done < config.epochs:
        print(f"stopped after epoch {done} of {config.epochs} (--time-limit); the same command "
              f"with --resume continues from {config.out}")
        return done, None
    shaped = "free bits" if config.free_bits else "KL warm-up" if config.kl_warmup else ""
    print("wrote", plot_training_curve(
        os.path.join(config.out, "metrics.csv"),
        train_label=f"training objective ({shaped})" if shaped else "train -ELBO"))
    return model, measure(model, config, train, test, minutes)


def objective_name(config: Config) -> str:
    parts = []
    if config.free_bits:
        parts.append(f"free bits {config.free_bits:g} nats per {config.free_bits_group}")
    if config.kl_warmup:
        parts.append(f"KL warm-up over {config.kl_warmup} steps")
    return "objective: " + (", ".join(parts) or "the plain ELBO")


def measure(model, config: Config, train, test, minutes: float) -> dict:
    """Test ELBO, bits/dim, rate, distortion, active units, MI, labels kept (, IWAE)."""
    device = next(model.parameters()).device
    images = test.images[: config.eval_images or None]
    metrics = evaluate_elbo(model, images)
    metrics["minutes"] = minutes
    if getattr(test, "labels", None) is not None and getattr(train, "labels", None) is not None:
        x = model.preprocess(images.to(device))
        reconstructions = model.reconstruct(x, temperature=0.5, mean=True)
        metrics.update(label_agreement(reconstructions.cpu(), test.labels[: len(images)],
                                       train.images, train.labels, originals=images))
    if config.iwae:
        x = model.preprocess(images[:200].to(device))
        log_px = iwae_log_likelihood(model.model, model.guide, x, num_samples=config.iwae,
                                     chunk_size=min(config.iwae, 50))
        metrics["iwae_bpd"] = float(bits_per_dim(log_px.mean().item(), model.shape))
    return metrics


ROWS = [  # (label, metric key, format)
    ("test -ELBO (nats)", "nelbo", "{:.2f}"),
    ("test bits/dim (ELBO)", "bpd", "{:.3f}"),
    ("rate KL(q(z|x) || p(z)) (nats)", "rate_z", "{:.2f}"),
    ("distortion -E_q log p(x|z) (nats)", "distortion", "{:.2f}"),
    ("active units of z", "active_units_z", "{:d}"),
    ("mutual information I(x; z) (nats)", "mutual_info_z", "{:.2f}"),
    ("labels kept by reconstructions", "labels_kept", "{:.1%}"),
    ("classifier accuracy on originals", "classifier_accuracy", "{:.1%}"),
    ("training minutes", "minutes", "{:.1f}"),
]


def print_table(results: dict) -> None:
    """One column per trained configuration, one row per metric."""
    any_result = next(iter(results.values()))
    rows = list(ROWS)
    if "iwae_bpd" in any_result:
        rows.insert(2, ("test bits/dim (IWAE, 200 images)", "iwae_bpd", "{:.3f}"))
    rows = [row for row in rows if row[1] in any_result]
    width = max(len(label) for label, _, _ in rows)
    print("\n| " + "metric".ljust(width) + " | " + " | ".join(results) + " |")
    print("|" + "-" * (width + 2) + "|" + "|".join("-" * (len(n) + 2) for n in results) + "|")
    for label, key, fmt in rows:
        cells = [fmt.format(r[key]).rjust(len(n)) for n, r in results.items()]
        print(f"| {label.ljust(width)} | " + " | ".join(cells) + " |")


def write_pictures(model, test, out: str) -> None:
    """Samples, labelled reconstructions (posterior mean, temperature 0.5) and interpolations
    with their endpoints, enlarged so that the digits can be seen."""
    device = next(model.parameters()).device
    x = model.preprocess(test.images[:32].to(device))
    originals = model.to_image(x)
    reconstructions = model.reconstruct(x[:24], temperature=0.5, mean=True)
    pairs = torch.stack([originals[:24].view(3, 8, *originals.shape[1:]),
                         reconstructions.view(3, 8, *reconstructions.shape[1:])], 1)
    print("wrote", save_grid(model.generate(64, temperature=0.8), os.path.join(out, "samples.png"),
                             title="samples x ~ p(x|z), z ~ p(z) (temperature 0.8)"))
    print("wrote", save_grid(pairs.flatten(0, 2), os.path.join(out, "reconstructions.png"),
                             row_labels=["input", "reconstruction"] * 3,
                             title="reconstructions from E_q[z] (temperature 0.5)"))
    rows = [torch.cat([originals[i : i + 1], model.interpolate(x[i], x[i + 1], steps=8),
                       originals[i + 1 : i + 2]]) for i in range(0, 12, 2)]
    print("wrote", save_grid(torch.cat(rows), os.path.join(out, "interpolation.png"), nrow=10,
                             column_labels=["x1", "z1", *[""] * 6, "z2", "x2"],
                             title="inputs x1, x2; decoded from z1 = E_q[z|x1] to z2"))


if __name__ == "__main__":
    run_example(main, CONFIG, "vapnev.py")
