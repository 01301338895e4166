"""VAPNEV on all of MNIST, epoch by epoch, beside the same flow without z (the paper's question).

Does a VAPNEV that uses its latent beat the same conditional RealNVP without ``z`` (a plain
RealNVP density, :class:`flowvae.models.FlowDensity`, at the nearest parameter count) for equal
steps? Both train on all 60,000 training images (zero-padded to 32x32), one epoch at a time,
with the same speed options, and after every epoch each is measured on the test set:

* test bits/dim from the ELBO on ``--eval-images`` test images (0: all 10,000), and from the
  IWAE bound with ``--iwae`` samples on ``--iwae-images`` evenly spaced test images;
* VAPNEV only: the rate KL(q(z|x) || p(z)) and distortion (nats), active units of z and I(x; z),
  and the share of reconstructions (``z ~ q(z|x)`` drawn, temperature 1) that a classifier,
  trained once on ``--classifier-images`` training images, labels like their originals.

Each model's rows go to ``<out>/<model>/epochs.json`` as soon as its epoch is measured (full
floats), and ``--resume`` goes on from the last finished epoch, so an interrupted run loses at
most one epoch. ``python examples/paper_results.py`` turns the rows into
``docs/results/vapnev_mnist.json``.

    python examples/vapnev_mnist.py --models vapnev --out runs/vapnev_mnist     # one process
    python examples/vapnev_mnist.py --models flow --out runs/vapnev_mnist       # the other
    python examples/vapnev_mnist.py --epochs 1 --max-steps-per-epoch 2 --eval-images 64 \\
        --iwae-images 4 --iwae 4 --label-images 64 --classifier-images 500 --no-compile  # smoke
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass
from functools import partial

from _flags import parse_config
from paper_results import commit_id, hardware

MODELS = ("vapnev", "flow")


@dataclass(frozen=True)
class Config:
    models: tuple = MODELS
    dataset: str = "mnist"
    epochs: int = 5
    batch_size: int = 64
    lr: float = 1e-3
    latent_dim: int = 16
    hidden: int = 16
    flow_channels: int = 32
    num_blocks: int = 1
    checkerboard: str = "squeezed"
    free_bits: float = 1.0
    compile: bool = True
    precision: str = "bf16"
    max_steps_per_epoch: int = 0
    eval_images: int = 0
    iwae: int = 100
    iwae_images: int = 200
    label_images: int = 1000
    classifier_images: int = 10000
    device: str = "cpu"
    seed: int = 0
    out: str = "runs/vapnev_mnist"
    resume: bool = False
    overwrite: bool = False


HELP = {"models": "vapnev (free bits), flow (the same RealNVP without z); several allowed",
        "dataset": "mnist or fashion-mnist (zero-padded to 32x32)",
        "epochs": "training epochs (938 steps each at batch 64)",
        "batch_size": "images per step", "lr": "Adam learning rate",
        "latent_dim": "size of z", "hidden": "base channels of VAPNEV's encoder and decoder",
        "flow_channels": "conditioner width of VAPNEV's flow; the flow without z is matched to "
                         "VAPNEV's parameter count",
        "num_blocks": "residual blocks per conditioner",
        "checkerboard": "checkerboard coupling: squeezed (faster) or masked",
        "free_bits": "free bits, nats per latent dimension (VAPNEV; 0: plain ELBO)",
        "compile": "torch.compile the coupling networks (both models)",
        "precision": "float32, or bf16 coupling networks (both models)",
        "max_steps_per_epoch": "cap on steps per epoch (0: the whole training set)",
        "eval_images": "test images for the ELBO (0: all)",
        "iwae": "importance samples K of the IWAE bits/dim",
        "iwae_images": "evenly spaced test images for the IWAE bound",
        "label_images": "test images reconstructed for the label check",
        "classifier_images": "training images of the label classifier",
        "device": "torch device", "seed": "seed of weights, data order and draws",
        "out": "folder: one sub-folder per model"}


def parse_args(argv=None) -> Config:
    return parse_config(Config, __doc__.split("\n\n")[0], HELP, argv=argv,
                        choices={"models": MODELS, "dataset": ("mnist", "fashion-mnist"),
                                 "checkerboard": ("masked", "squeezed"),
                                 "precision": ("float32", "bf16")})


def count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def builders(c: Config, shape) -> dict:
    """``model name -> build()``; the flow without z takes the conditioner width whose
    parameter count is nearest to VAPNEV's."""
    from flowvae.models import VAPNEV, FlowDensity

    flow = dict(num_blocks=c.num_blocks, checkerboard=c.checkerboard)
    vapnev = partial(VAPNEV, shape, latent_dim=c.latent_dim, hidden=c.hidden,
                     flow_kwargs=dict(flow, hidden_channels=c.flow_channels))
    target = count(vapnev())
    width = min(range(8, 257, 4), key=lambda w: abs(count(
        FlowDensity(shape, flow_kwargs=dict(flow, hidden_channels=w))) - target))
    return {"vapnev": vapnev,
            "flow": partial(FlowDensity, shape, flow_kwargs=dict(flow, hidden_channels=width))}


def evenly(total: int, n: int):
    """Indices of ``n`` evenly spaced items of ``total`` (all for ``n = 0``): a split sorted
    by class stays balanced."""
    import torch

    n = n if n and n < total else total
    return (torch.arange(n) * total) // n


def measure(model, c: Config, test, classifier) -> dict:
    """The epoch's numbers for one model (see the module docstring)."""
    import torch

    from flowvae.infer import bits_per_dim, iwae_log_likelihood
    from flowvae.train import evaluate_elbo

    device = next(model.parameters()).device
    images = test.images[evenly(len(test.images), c.eval_images)]
    row = {f"test_{k}": v for k, v in evaluate_elbo(model, images).items()}
    row["test_images"] = len(images)
    torch.manual_seed(c.seed + 1)
    x = model.preprocess(test.images[evenly(len(test.images), c.iwae_images)].to(device))
    log_px = torch.cat([iwae_log_likelihood(model.model, model.guide, chunk,
                                            num_samples=c.iwae, chunk_size=min(c.iwae, 50))
                        for chunk in x.split(50)])
    row["test_bpd_iwae"] = float(bits_per_dim(log_px.mean().item(), model.shape,
                                              dequantized=not model.p_x.discrete))
    row["iwae_images"] = len(x)
    if hasattr(model, "reconstruct") and "test_rate_z" in row:
        picked = evenly(len(test.images), c.label_images)
        x = model.preprocess(test.images[picked].to(device))
        with torch.no_grad():
            recon = model.reconstruct(x, temperature=1.0, mean=False).cpu()
        predicted = classifier.predict(recon.reshape(len(recon), -1).double().numpy())
        row["labels_kept"] = float((predicted == test.labels[picked].numpy()).mean())
        row["label_images"] = len(picked)
    return row


def train_classifier(c: Config, train, test):
    """Logistic regression on pixels / 255 of ``classifier_images`` training images, and its
    accuracy on all test originals (the ceiling of ``labels_kept``)."""
    from sklearn.linear_model import LogisticRegression

    picked = evenly(len(train.images), c.classifier_images)
    images, labels = train.images[picked], train.labels[picked]
    flat = lambda t: t.reshape(len(t), -1).double().numpy() / 255  # noqa: E731
    classifier = LogisticRegression(max_iter=1000).fit(flat(images), labels.numpy())
    return classifier, float(classifier.score(flat(test.images), test.labels.numpy()))


def run_model(name: str, build, c: Config, train, test, classifier, meta: dict) -> list:
    import torch

    from flowvae.infer import GeneralizedELBO
    from flowvae.train import fit, prepare_out_dir

    out = os.path.join(c.out, name)
    rows_path = os.path.join(out, "epochs.json")
    resume = prepare_out_dir(out, c.resume, c.overwrite)
    rows = json.load(open(rows_path))["rows"] if resume and os.path.exists(rows_path) else []
    torch.manual_seed(c.seed)
    model = build()
    elbo = (GeneralizedELBO("elbo", free_bits=c.free_bits, max_plate_nesting=1)
            if name == "vapnev" and c.free_bits else "trace")
    for epoch in range(len(rows) + 1, c.epochs + 1):
        history = fit(model, train, epochs=epoch, batch_size=c.batch_size, lr=c.lr, elbo=elbo,
                      device=c.device, out_dir=out, seed=c.seed, progress=False,
                      resume=resume or epoch > 1, compile=c.compile, precision=c.precision,
                      max_steps_per_epoch=c.max_steps_per_epoch or None)
        last = history[-1]
        row = {"epoch": epoch, "step": last["step"], "train_objective": last["train_nelbo"],
               "train_minutes": sum(r["seconds"] for r in history) / 60,
               "parameters": count(model), **measure(model, c, test, classifier)}
        rows.append(row)
        with open(rows_path + ".tmp", "w") as f:  # whole and atomic: a kill loses no row
            json.dump({**meta, "model": name, "rows": rows}, f, indent=1)
        os.replace(rows_path + ".tmp", rows_path)
        print(f"{name:6s} epoch {epoch} step {row['step']}: test bits/dim ELBO "
              f"{row['test_bpd']:.4f} IWAE {row['test_bpd_iwae']:.4f}"
              + (f", rate {row['test_rate_z']:.2f} nats, {row['test_active_units_z']} active "
                 f"units, labels kept {row['labels_kept']:.1%}" if "labels_kept" in row else "")
              + f" ({row['train_minutes']:.1f} training minutes)", flush=True)
    return rows


def main(c: Config) -> dict:
    import torch

    from flowvae.data import load_dataset

    train = load_dataset(c.dataset, "train", pad_to=32)
    test = load_dataset(c.dataset, "test", pad_to=32)
    build = builders(c, tuple(train[0].shape))
    classifier, accuracy = train_classifier(c, train, test)
    print(f"classifier accuracy on the test originals: {accuracy:.1%}", flush=True)
    meta = {"config": asdict(c), "command": " ".join(["python", *sys.argv]),
            "commit": commit_id(), "classifier_accuracy": accuracy,
            "train_images": len(train.images), "hardware": hardware(torch.get_num_threads())}
    return {name: run_model(name, build[name], c, train, test, classifier, meta)
            for name in c.models}


if __name__ == "__main__":
    main(parse_args())
