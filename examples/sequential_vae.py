"""Sequential VAE (Zhao et al., sec. 3.2): T steps vs a one-step VAE of the same size.

Trains, per dataset (MNIST, Fashion-MNIST; Bernoulli likelihood, dynamic binarization), a
T-step SequentialVAE and a one-step VAE with the same total latent size and about the same
number of parameters. Prints per step the posterior variance of Proposition 5 (per-pixel MSE of
the decoder mean to the grey test image, an estimate of E Var_q(x|z_1:t)[x_i]) and the
sharpness of samples from noise (mean binary entropy of the generated pixel probabilities, in
bits: lower is sharper), KL_t, the nats step t's code carries, the active units of z_t
(Burda et al. 2016), the estimate of I(x; z_t) and the distortion -E_q log p(x|z_1:t) in nats
(x is observed at every step: the model's distortion is their sum); writes the samples and
reconstructions after each step. --resume continues from the checkpoints in --out.

    python examples/sequential_vae.py                      # the docs' CPU run, minutes
    python examples/sequential_vae.py --datasets mnist     # one dataset
    python examples/sequential_vae.py --paper --device cuda

The defaults (3 x 300 SVI steps per model) finish in minutes on a CPU; ``--paper`` trains for
20 full epochs and evaluates every test image (the paper's conv nets on CelebA/LSUN are not
built here), and flags given next to it still win.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Tuple

from _flags import parse_config, run_example, write_results


@dataclass(frozen=True)
class Config:
    datasets: Tuple[str, ...] = ("mnist", "fashion-mnist")
    steps: int = 3
    latent_dim: int = 8
    hidden: int = 256
    epochs: int = 3
    max_steps_per_epoch: int = 300
    batch_size: int = 128
    lr: float = 1e-3
    eval_images: int = 2000
    device: str = "cpu"
    tensorboard: bool = False
    out: str = "runs/sequential_vae"
    resume: bool = False
    overwrite: bool = False
    seed: int = 0


PAPER = dict(epochs=20, max_steps_per_epoch=0, eval_images=0)
"""Full-length training, which ``--paper`` selects."""

HELP = {"datasets": "datasets to run, one after the other (several allowed)",
        "steps": "T, the sequential model's number of steps",
        "latent_dim": "size of each step's z_t (the one-step VAE gets T times this)",
        "hidden": "MLP width of the sequential model (the one-step VAE's is matched to it)",
        "epochs": "training epochs per model",
        "max_steps_per_epoch": "stop each epoch after this many steps (0: the whole set)",
        "batch_size": "images per SVI step", "lr": "Adam learning rate",
        "eval_images": "test images evaluated (0: all)", "device": "torch device, e.g. cuda",
        "out": "folder for checkpoints, grids and curves (--resume continues from it)",
        "seed": "seed of weights, data order and draws"}


def parse_args(argv=None) -> Config:
    return parse_config(Config, __doc__.split("\n\n")[0], HELP, argv=argv,
                        choices={"datasets": ("mnist", "fashion-mnist", "digits")},
                        paper=PAPER, paper_help="full-length training")


if __name__ == "__main__":  # the flags first: --help and a bad flag answer before torch loads
    CONFIG = parse_args()

import torch  # noqa: E402
from _callbacks import callbacks  # noqa: E402
from torch.distributions import kl_divergence  # noqa: E402

from flowvae.data import load_dataset  # noqa: E402
from flowvae.infer import plot_training_curve, save_grid  # noqa: E402
from flowvae.models import SequentialVAE  # noqa: E402
from flowvae.train import evaluate_elbo, fit, prepare_out_dir  # noqa: E402


def count(model) -> int:
    return sum(p.numel() for p in model.parameters())


def matched_baseline(shape, config: Config) -> SequentialVAE:
    """A one-step VAE with latent ``steps * latent_dim`` and the hidden width whose parameter
    count is closest to the sequential model's."""
    target = count(SequentialVAE(shape, config.steps, config.latent_dim, hidden=config.hidden))
    latent = config.steps * config.latent_dim
    lo, hi = 1, 8 * config.hidden  # the count grows with the width: bisect
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if count(SequentialVAE(shape, 1, latent, hidden=mid)) < target else (
            lo, mid)
    return SequentialVAE(shape, 1, latent, hidden=hi)


def entropy_bits(p: torch.Tensor) -> float:
    p = p.clamp(1e-6, 1 - 1e-6)
    return float(-(p * p.log2() + (1 - p) * (1 - p).log2()).mean())


def run(dataset: str, config: Config) -> list:
    train = load_dataset(dataset, "train")
    test = load_dataset(dataset, "test").images[: config.eval_images or None]
    shape = tuple(train[0].shape)
    models = {f"sequential T={config.steps}": SequentialVAE(
                  shape, config.steps, config.latent_dim, hidden=config.hidden),
              "one-step VAE": matched_baseline(shape, config)}
    rows = []
    for name, model in models.items():
        out = os.path.join(config.out, dataset, name.split()[0].replace("-", ""))
        history = fit(model, train, None, epochs=config.epochs, batch_size=config.batch_size,
                      lr=config.lr, device=config.device, out_dir=out, seed=config.seed,
                      max_steps_per_epoch=config.max_steps_per_epoch or None, progress=False,
                      callbacks=callbacks(config, out, f"{dataset} {name}"),
                      resume=prepare_out_dir(out, config.resume, config.overwrite))
        minutes = sum(row["seconds"] for row in history) / 60
        torch.manual_seed(config.seed)
        images = test.to(config.device)
        x = model.preprocess(images)
        variance = model.posterior_variance(x, target=images.float() / 255, num_samples=4)
        with torch.no_grad():  # nats each step's code carries, KL(q_t(z_t|x) || p(z_t))
            kls = [float(kl_divergence(q, model.p_z(x)).mean()) for q in model.posteriors(x)]
        samples = model.generate(64, mean=True)
        gates = model.gates.mean(-1).tolist()
        diagnostics = evaluate_elbo(model, images)  # active units and I(x; z_t) per step
        with torch.no_grad():  # -E_q log p(x|z_1:t) per step, z_t ~ q_t(z_t|x)
            zs = [q.sample() for q in model.posteriors(x)]
            distortions = [float(-model.p_x(h, z).log_prob(x).mean())
                           for h, z in zip(model.decode(zs), zs)]
        for t, site in enumerate(model.latent_sites):
            rows.append((dataset, name, count(model), t + 1, float(variance[t]), kls[t],
                         entropy_bits(samples[t]), gates[t - 1] if t else float("nan"),
                         minutes, diagnostics[f"active_units_{site}"], model.latent_dim,
                         diagnostics[f"mutual_info_{site}"], distortions[t]))
        steps = [f"step {t + 1}" for t in range(model.steps)]
        save_grid(torch.cat([s[:16] for s in samples]), os.path.join(out, "samples.png"), 16,
                  row_labels=steps, title=f"{name}: samples")
        recon = model.reconstruct(x[:16], mean=True)
        save_grid(torch.cat([model.to_image(x[:16]), *recon]),
                  os.path.join(out, "reconstructions.png"), 16, row_labels=["input", *steps],
                  title=f"{name}: reconstructions")
        plot_training_curve(os.path.join(out, "metrics.csv"), title=f"{dataset}: {name}")
    return rows


def main(config: Config) -> list:
    torch.manual_seed(config.seed)
    rows = [row for dataset in config.datasets for row in run(dataset, config)]
    print("\n| dataset | model | params | step | posterior variance / pixel | KL_t (nats) | "
          "sample entropy (bits/pixel) | gate a_t | train min | active units of z_t | "
          "I(x; z_t) (nats) | distortion -E log p(x|z_1:t) (nats) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for d, name, params, t, var, kl, ent, gate, minutes, units, dims, mi, distortion in rows:
        gate = "-" if t == 1 else f"{gate:.3f}"
        print(f"| {d} | {name} | {params:,} | {t} | {var:.4f} | {kl:.1f} | {ent:.4f} | {gate} "
              f"| {minutes:.1f} | {units}/{dims} | {mi:.2f} | {distortion:.2f} |")
    print("wrote", write_results(os.path.join(config.out, "results.json"), {
        "config": asdict(config), "rows": [dict(zip(COLUMNS, row)) for row in rows]}))
    return rows


COLUMNS = ("dataset", "model", "params", "step", "posterior_variance", "kl", "sample_entropy_bits",
           "gate", "train_minutes", "active_units", "latent_dim", "mutual_info", "distortion")
"""The keys of a row of ``results.json`` (the table's columns, unrounded)."""


if __name__ == "__main__":
    run_example(main, CONFIG, "sequential_vae.py")
