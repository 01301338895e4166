"""Does VAPNEV use its latent? A rate-distortion study of training objectives.

Trains the main job's VAPNEV (examples/vapnev.py) with several training objectives (the plain
ELBO, KL warm-up, a fixed KL weight, free bits per latent dimension or for all of z), plus two
references of about the same parameter count: the same flow without z (a RealNVP density with a
learned base) and a VAE with discretized-logistic pixels. Every setting has the same data,
batches and optimizer steps. Each is measured with the true ELBO (every KL weight 1): rate
KL(q(z|x) || p(z)), distortion -E_q log p(x|z), bits/dim, active units, and the share of
reconstructions a classifier gives their original's label. Writes results.json, a Markdown
table and rate_distortion.png (rate against distortion, one point per setting).

    python examples/vapnev_latent.py                          # digits, CPU
    python examples/vapnev_latent.py --dataset mnist --train-size 6000 --epochs 2 \\
        --flow-channels 16 --test-size 500 --settings elbo,free-bits-1,no-z,logistic \\
        --iwae 100 --iwae-images 200

A setting already in --out's results.json is not trained again (--overwrite trains every one
again; --resume continues an unfinished one).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from dataclasses import asdict, dataclass
from functools import partial

from _flags import parse_config, run_example

from flowvae.choices import DATASET_NAMES

#: name -> (label, training objective: None for the plain ELBO, else GeneralizedELBO kwargs)
SETTINGS = {
    "elbo": ("plain ELBO (collapsed)", None),
    "warmup": ("KL warm-up, 400 steps", dict(kind="elbo", warmup_steps=400)),
    "beta-0.3": ("KL weight 0.3", dict(kind="beta", beta=0.3)),
    "free-bits-0.5": ("free bits 0.5/dim", dict(kind="elbo", free_bits=0.5,
                                                free_bits_group="dimension")),
    "free-bits-1": ("free bits 1/dim (default)", dict(kind="elbo", free_bits=1.0,
                                                      free_bits_group="dimension")),
    "free-bits-2": ("free bits 2/dim", dict(kind="elbo", free_bits=2.0,
                                            free_bits_group="dimension")),
    "free-bits-16-site": ("free bits 16 for z", dict(kind="elbo", free_bits=16.0)),
    "no-z": ("same flow without z", None),
    "logistic": ("VAE, logistic pixels", None),
}


@dataclass(frozen=True)
class Config:
    dataset: str = "digits"
    settings: str = ",".join(SETTINGS)
    epochs: int = 30
    batch_size: int = 64
    train_size: int = 0
    test_size: int = 1000
    latent_dim: int = 16
    hidden: int = 16
    flow_channels: int = 32
    iwae: int = 0
    iwae_images: int = 500
    device: str = "cpu"
    tensorboard: bool = False
    out: str = "runs/vapnev-latent"
    resume: bool = False
    overwrite: bool = False
    seed: int = 0


HELP = {"dataset": "training and test images", "settings": f"comma-separated, from: "
        f"{', '.join(SETTINGS)}", "epochs": "training epochs per setting",
        "batch_size": "images per step", "train_size": "training images used (0: all)",
        "test_size": "test images evaluated", "latent_dim": "size of z",
        "hidden": "base channels of VAPNEV's encoder and decoder",
        "flow_channels": "conditioner width of VAPNEV's flow",
        "iwae": "importance samples K for IWAE bits/dim (0: skip)",
        "iwae_images": "test images of the IWAE bound",
        "out": "folder for results.json, rate_distortion.png and each setting's run"}


def settings(value: str) -> str:
    """``--settings``: names of :data:`SETTINGS`, comma-separated."""
    unknown = [name for name in value.split(",") if name not in SETTINGS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown setting {unknown[0]!r}; choose from "
                                         f"{', '.join(SETTINGS)}")
    return value


def parse_args(argv=None) -> Config:
    return parse_config(Config, __doc__.split("\n\n")[0], HELP, argv=argv,
                        choices={"dataset": DATASET_NAMES}, types={"settings": settings})


if __name__ == "__main__":  # the flags first: --help and a bad flag answer before torch loads
    CONFIG = parse_args()

import torch  # noqa: E402
from _callbacks import callbacks  # noqa: E402

from flowvae.data import ImageDataset, load_dataset  # noqa: E402
from flowvae.infer import (  # noqa: E402
    GeneralizedELBO,
    bits_per_dim,
    iwae_log_likelihood,
    label_agreement,
)
from flowvae.models import VAE, VAPNEV, FlowDensity  # noqa: E402
from flowvae.train import evaluate_elbo, fit, prepare_out_dir  # noqa: E402


def count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def build(name: str, shape, c: Config):
    """The model of a setting; the references get the width nearest VAPNEV's parameters."""
    flow = dict(hidden_channels=c.flow_channels, num_blocks=1)
    vapnev = partial(VAPNEV, shape, latent_dim=c.latent_dim, hidden=c.hidden, flow_kwargs=flow)
    if name not in ("no-z", "logistic"):
        return vapnev()
    target = count(vapnev())
    make = {
        "no-z": lambda w: FlowDensity(shape, flow_kwargs=dict(hidden_channels=w, num_blocks=1)),
        "logistic": lambda w: VAE(shape, latent_dim=c.latent_dim, likelihood="logistic",
                                  network="conv", hidden=w),
    }[name]
    width = min(range(8, 129, 4), key=lambda w: abs(count(make(w)) - target))
    return make(width)


def run(name: str, c: Config, train, test) -> dict:
    """Train one setting (resuming from its folder) and measure it."""
    torch.manual_seed(c.seed)
    model = build(name, tuple(train.images.shape[1:]), c)
    objective = SETTINGS[name][1]
    elbo = "trace" if objective is None else GeneralizedELBO(max_plate_nesting=1, **objective)
    out = os.path.join(c.out, name)
    started = time.time()
    fit(model, train, epochs=c.epochs, batch_size=c.batch_size, elbo=elbo, device=c.device,
        seed=c.seed, progress=False, out_dir=out, callbacks=callbacks(c, out, name),
        resume=prepare_out_dir(out, c.resume, c.overwrite))
    row = dict(setting=name, label=SETTINGS[name][0], parameters=count(model),
               minutes=(time.time() - started) / 60)
    row.update(evaluate_elbo(model, test.images))
    discrete = model.p_x.discrete
    dims = math.prod(model.shape)
    # distortion of the 8-bit image: a density of dequantized pixels gains D log 256
    row["distortion_8bit"] = row["distortion"] + (0.0 if discrete else dims * math.log(256))
    row.setdefault("rate_z", 0.0)
    if hasattr(model, "reconstruct"):
        x = model.preprocess(test.images.to(c.device))
        kwargs = dict(temperature=0.5, mean=True) if isinstance(model, VAPNEV) else {}
        recon = model.reconstruct(x, **kwargs).cpu()
        row.update(label_agreement(recon, test.labels, train.images, train.labels))
    if c.iwae:
        x = model.preprocess(test.images[: c.iwae_images].to(c.device))
        log_px = torch.cat([iwae_log_likelihood(model.model, model.guide, chunk,
                                                num_samples=c.iwae, chunk_size=50)
                            for chunk in x.split(100)])
        row["iwae_bpd"] = float(bits_per_dim(log_px.mean().item(), dims, not discrete))
    return row


def plot(rows, path: str, title: str) -> str:
    """Rate against distortion: one numbered point per setting, a legend with each setting's
    bits/dim and labels kept, and grey lines of equal -ELBO."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 7.5), dpi=100)
    rates = [r["rate_z"] for r in rows]
    distortions = [r["distortion_8bit"] for r in rows]
    for i, (r, x, y) in enumerate(zip(rows, rates, distortions), start=1):
        marker = "s" if r["setting"] in ("no-z", "logistic") else "o"
        kept = f", {r['labels_kept']:.0%} labels" if "labels_kept" in r else ""
        ax.scatter(x, y, marker=marker, s=45, zorder=3,
                   label=f"{i}  {r['label']}: {r['bpd']:.3f} bits/dim{kept}")
        ax.annotate(str(i), (x, y), fontsize=8, xytext=(4, 4), textcoords="offset points")
    totals = [r + d for r, d in zip(rates, distortions)]
    top = max(rates) * 1.1 + 1
    for level in torch.linspace(min(totals), max(totals), 4).tolist():  # rate + distortion
        ax.plot([0, top], [level, level - top], color="0.85", lw=0.8, zorder=0)
    ax.set_xlim(-0.5, top)
    pad = (max(distortions) - min(distortions)) * 0.08 + 1
    ax.set_ylim(min(distortions) - pad, max(distortions) + pad)
    ax.set_xlabel("rate: KL(q(z|x) || p(z)), nats per image")
    ax.set_ylabel("distortion: -E_q log P(x|z), nats per 8-bit image")
    ax.set_title(title, fontsize=9)
    ax.legend(loc="upper left", bbox_to_anchor=(0.0, -0.1), fontsize=9, frameon=False,
              title="setting: test bits/dim (ELBO), labels kept", title_fontsize=9)
    fig.text(0.01, 0.01, "grey lines: equal -ELBO (rate + distortion); squares: references "
             "without z in the flow", fontsize=7, color="0.4")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def main(c: Config) -> list:
    pad = 32 if c.dataset in ("mnist", "fashion-mnist") else None
    train = load_dataset(c.dataset, "train", pad_to=pad)
    test = load_dataset(c.dataset, "test", pad_to=pad)
    if c.train_size:
        train = ImageDataset(train.images[: c.train_size], train.labels[: c.train_size])
    test = ImageDataset(test.images[: c.test_size], test.labels[: c.test_size])
    os.makedirs(c.out, exist_ok=True)
    results_path = os.path.join(c.out, "results.json")
    done = {}
    if os.path.exists(results_path) and not c.overwrite:
        with open(results_path) as f:
            done = {r["setting"]: r for r in json.load(f)["rows"]}
    rows = []
    for name in c.settings.split(","):
        row = done.get(name) or run(name, c, train, test)
        rows.append(row)
        print(f"{row['label']}: rate {row['rate_z']:.2f} nats, bits/dim {row['bpd']:.3f}",
              flush=True)
        with open(results_path, "w") as f:
            json.dump({"config": asdict(c), "rows": list({**done, **{r["setting"]: r
                                                                     for r in rows}}.values())},
                      f, indent=1)
    print(f"\n{c.dataset}, {len(train.images)} training images, {c.epochs} epochs, "
          f"{len(test.images)} test images")
    iwae = (f" | bits/dim (IWAE K={c.iwae}, {min(c.iwae_images, len(test.images))} images)"
            if c.iwae else "")
    print(f"| setting | parameters | rate (nats) | distortion (nats, 8-bit) | active units | "
          f"labels kept | bits/dim (ELBO){iwae} |")
    print("|---|---|---|---|---|---|---|" + ("---|" if c.iwae else ""))
    for r in rows:
        kept = f"{r['labels_kept']:.1%}" if "labels_kept" in r else "-"
        units = r.get("active_units_z", "-")
        extra = f" | {r['iwae_bpd']:.3f}" if c.iwae else ""
        print(f"| {r['label']} | {r['parameters']:,} | {r['rate_z']:.2f} | "
              f"{r['distortion_8bit']:.2f} | {units} | {kept} | {r['bpd']:.3f}{extra} |")
    title = (f"VAPNEV on {c.dataset}: {len(train.images)} training images, {c.epochs} epochs, "
             f"latent {c.latent_dim}, flow width {c.flow_channels}")
    print("wrote", plot(rows, os.path.join(c.out, "rate_distortion.png"), title))
    return rows


if __name__ == "__main__":
    run_example(main, CONFIG, "vapnev_latent.py")
