"""A zuko flow as a flowvae part: a VAE with a zuko neural spline flow prior, trained by SVI.

Registers ``"zuko-nsf"`` in :data:`flowvae.parts.PRIORS` (a class in this file, nothing edited
in flowvae), builds ``VAE(prior="zuko-nsf")`` and, beside it, the same VAE with the standard
Normal prior, and trains both with plain ``pyro.infer.SVI`` (``Trace_ELBO``, Pyro's Adam) on
the bundled 8x8 ``digits``; prints per epoch and in a final table the test -ELBO, bits/dim,
rate KL(q(z|x) || p(z)), distortion and active units of z, and writes ``results.json`` and
a grid of samples per prior. zuko (``pip install "flowvae[zuko]"``) gives the flow;
``pyro.contrib.zuko.ZukoToPyro`` makes its distribution a Pyro one.

    python examples/zuko_prior.py
    python examples/zuko_prior.py --latent-dim 8 --epochs 30
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from typing import Tuple

from _flags import parse_config, run_example, write_results


@dataclass(frozen=True)
class Config:
    epochs: int = 10
    batch_size: int = 100
    lr: float = 1e-3
    latent_dim: int = 4
    hidden: int = 128
    priors: Tuple[str, ...] = ("normal", "zuko-nsf")
    transforms: int = 3
    flow_hidden: int = 64
    device: str = "cpu"
    out: str = "runs/zuko_prior"
    resume: bool = False
    overwrite: bool = False
    seed: int = 0


HELP = {"epochs": "passes over the 1,500 training digits", "batch_size": "images per SVI step",
        "lr": "Adam learning rate", "latent_dim": "size of z",
        "hidden": "width of the MLP encoder and decoder",
        "priors": "priors to train (several allowed): standard Normal, zuko NSF",
        "transforms": "spline transforms of the NSF prior",
        "flow_hidden": "width of each NSF transform's two hidden layers",
        "device": "torch device, e.g. cuda", "seed": "seed of weights and data order",
        "out": "folder for results.json and each prior's samples.png"}


def parse_args(argv=None) -> Config:
    return parse_config(Config, __doc__.split("\n\n")[0], HELP, argv=argv,
                        choices={"priors": ("normal", "zuko-nsf")})


if __name__ == "__main__":  # the flags first: --help and a bad flag answer before torch loads
    CONFIG = parse_args()

import pyro  # noqa: E402
import torch  # noqa: E402
import zuko  # noqa: E402
from pyro.contrib.zuko import ZukoToPyro  # noqa: E402
from pyro.infer import SVI, Trace_ELBO  # noqa: E402
from pyro.optim import Adam  # noqa: E402
from torch import nn  # noqa: E402

from flowvae.data import load_dataset  # noqa: E402
from flowvae.infer import save_grid  # noqa: E402
from flowvae.models import VAE  # noqa: E402
from flowvae.parts import PRIORS  # noqa: E402
from flowvae.train import evaluate_elbo, prepare_out_dir  # noqa: E402


class ZukoDistribution(ZukoToPyro):
    """``ZukoToPyro`` with ``rsample`` (so ``sample``, which ``VAE.generate`` calls)."""

    def rsample(self, sample_shape=()):
        return self.dist.rsample(sample_shape)


@PRIORS.register("zuko-nsf")
class ZukoNSFPrior(nn.Module):
    """``p(z)``: zuko's neural spline flow (Durkan et al. 2019) over a vector latent ``(d,)``.
    The flow stays a plain torch module (``plain_torch_modules``): it is announced to Pyro
    with ``pyro.module`` when used, so SVI finds its parameters."""

    plain_torch_modules = ("flow",)

    def __init__(self, latent_shape, transforms: int = 3, hidden_features=(64, 64)):
        super().__init__()
        (features,) = latent_shape
        self.flow = zuko.flows.NSF(features, transforms=transforms,
                                   hidden_features=tuple(hidden_features))

    def forward(self, like: torch.Tensor):
        pyro.module(self._pyro_name + ".flow", self.flow)
        return ZukoDistribution(self.flow())


def train(config: Config, prior: str, train_x, test_images) -> dict:
    """SVI on one VAE with ``prior``; the test metrics after every epoch."""
    pyro.clear_param_store()
    pyro.set_rng_seed(config.seed)
    kwargs = dict(transforms=config.transforms, hidden_features=(config.flow_hidden,) * 2)
    vae = VAE((1, 8, 8), latent_dim=config.latent_dim, hidden=config.hidden, prior=prior,
              prior_kwargs=kwargs if prior == "zuko-nsf" else None).to(config.device)
    svi = SVI(vae.model, vae.guide, Adam({"lr": config.lr}), Trace_ELBO())
    x, started = vae.preprocess(train_x.to(config.device)), time.time()
    for epoch in range(1, config.epochs + 1):
        for batch in x[torch.randperm(len(x))].split(config.batch_size):
            svi.step(batch)
        metrics = evaluate_elbo(vae, test_images)
        print(f"{prior:8s} epoch {epoch}/{config.epochs}: test -ELBO {metrics['nelbo']:.2f}  "
              f"rate {metrics['rate_z']:.2f}  distortion {metrics['distortion']:.2f}",
              flush=True)
    metrics["seconds"] = time.time() - started
    out = os.path.join(config.out, prior)
    print("wrote", save_grid(vae.generate(64), os.path.join(out, "samples.png"),
                             title=f"Bernoulli samples, {prior} prior"))
    return metrics


ROWS = [("test -ELBO (nats)", "nelbo", "{:.2f}"), ("test bits/dim", "bpd", "{:.3f}"),
        ("rate (nats)", "rate_z", "{:.2f}"), ("distortion (nats)", "distortion", "{:.2f}"),
        ("active units of z", "active_units_z", "{:d}"), ("seconds", "seconds", "{:.0f}")]


def main(config: Config) -> dict:
    prepare_out_dir(config.out, config.resume, config.overwrite)
    train_x = load_dataset("digits", "train").images
    test_images = load_dataset("digits", "test").images
    results = {prior: train(config, prior, train_x, test_images) for prior in config.priors}
    print(f"\n| metric | {' | '.join(results)} |\n|---|" + "---|" * len(results))
    for label, key, fmt in ROWS:
        print(f"| {label} | " + " | ".join(fmt.format(r[key]) for r in results.values()) + " |")
    print("bits/dim of the binarized digits under a Bernoulli likelihood (a binary likelihood: "
          "not comparable with 8-bit bits/dim)")
    print("wrote", write_results(os.path.join(config.out, "results.json"),
                                 {"config": asdict(config), "results": results}))
    return results


if __name__ == "__main__":
    run_example(main, CONFIG, "zuko_prior.py")
