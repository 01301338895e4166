"""Benchmark of the rho-VAE's AR(1) Gaussian guide against the diagonal Gaussian guide.

Two workloads, each timed for ``guide="normal"`` (diagonal) and ``guide="ar1"``:

* ``svi_step/<variant>``: one ``pyro.infer.SVI`` step (trace, closed-form KL, backward, Adam) of
  :func:`flowvae.models.rho_vae.rho_vae` on MNIST-shaped random images, the training step of
  ``examples/rho_vae.py``; the pair differs only in the guide.
* ``distribution/d=<d>``: the guide's distribution alone, from encoder outputs to
  ``backward()``: build ``q(z|x)``, ``rsample``, ``log_prob`` of the sample and
  ``kl_divergence(q, N(0, I))`` (the AR(1) sampler is a parallel scan of ``ceil(log2 d)``
  steps, the diagonal one a single multiply-add), so the guide's own overhead shows.

Timings are interleaved in one process (every repeat runs both guides, in alternating order) so
that the load of a shared machine hits both alike. Each call is timed twice: CPU time of the
process (``time.process_time``, which a busy machine's preemptions do not inflate; run with
``OMP_NUM_THREADS=1`` so that it is the compute time) and wall-clock time. The medians per call
and the ratios ``AR(1) / diagonal`` are reported (target: at most 1.1 for ``svi_step``).
Results go to stdout as markdown and to ``--json``. This is a script: it writes JSON and gates
no test.

Usage::

    python benchmarks/rho_vae_guides.py --json rho_vae_guides.json
    python benchmarks/rho_vae_guides.py --quick          # tiny sizes, a few seconds
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Callable, Dict, List, Tuple

import pyro
import pyro.distributions as dist
import torch
from pyro.infer import SVI
from pyro.optim import Adam
from torch.distributions import kl_divergence

from flowvae.models.rho_vae import GUIDES, rho_vae
from flowvae.parts import AR1Guide, DiagonalNormalGuide

LABELS = {"normal": "diagonal", "ar1": "AR(1)"}


@dataclass(frozen=True)
class Config:
    shape: Tuple[int, int, int] = (1, 28, 28)
    batch_size: int = 100
    latent_dim: int = 16
    hidden: int = 256
    conv_channels: int = 8
    variants: Tuple[str, ...] = ("vanilla", "conv")
    dims: Tuple[int, ...] = (16, 64, 256)
    repeats: int = 30
    warmup: int = 3
    seed: int = 0


def svi_step(config: Config, variant: str, guide: str) -> Callable[[], None]:
    vae, elbo = rho_vae(variant, guide, config.shape, config.latent_dim,
                        hidden=config.conv_channels if variant == "conv" else config.hidden)
    images = torch.randint(0, 256, (config.batch_size, *config.shape), dtype=torch.uint8)
    x = vae.preprocess(images)
    svi = SVI(vae.model, vae.guide, Adam({"lr": 1e-3}), elbo)

    def step() -> None:
        # PyroModule parameters are registered in the global param store by name, and both
        # models use the same names: clear it so each step traces its own model's parameters.
        pyro.clear_param_store()
        svi.step(x)

    return step


def distribution_step(config: Config, d: int, guide: str) -> Callable[[], None]:
    family = AR1Guide(d) if guide == "ar1" else DiagonalNormalGuide(d)
    params = torch.randn(config.batch_size, family.num_params, requires_grad=True)
    prior = dist.Normal(torch.zeros(d), 1.0).to_event(1)

    def step() -> None:
        q = family(0.1 * params)
        z = q.rsample()
        loss = kl_divergence(q, prior).sum() - q.log_prob(z).sum() + z.pow(2).sum()
        loss.backward()
        params.grad = None

    return step


def time_pair(steps: Dict[str, Callable[[], None]], repeats: int, warmup: int
              ) -> Dict[str, Dict[str, List[float]]]:
    """Wall-clock (``perf_counter``) and CPU (``process_time``) seconds per call, per step."""
    for step in steps.values():
        for _ in range(warmup):
            step()
    times: Dict[str, Dict[str, List[float]]] = {name: {"wall": [], "cpu": []} for name in steps}
    names = list(steps)
    for repeat in range(repeats):
        for name in names if repeat % 2 == 0 else names[::-1]:  # alternate who goes first
            wall, cpu = time.perf_counter(), time.process_time()
            steps[name]()
            times[name]["cpu"].append(time.process_time() - cpu)
            times[name]["wall"].append(time.perf_counter() - wall)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=Config.batch_size)
    parser.add_argument("--latent-dim", type=int, default=Config.latent_dim)
    parser.add_argument("--variants", nargs="+", default=Config.variants)
    parser.add_argument("--dims", nargs="+", type=int, default=Config.dims)
    parser.add_argument("--repeats", type=int, default=Config.repeats)
    parser.add_argument("--warmup", type=int, default=Config.warmup)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    config = Config(batch_size=args.batch_size, latent_dim=args.latent_dim,
                    variants=tuple(args.variants), dims=tuple(args.dims), repeats=args.repeats,
                    warmup=args.warmup)
    if args.quick:
        config = Config(shape=(1, 8, 8), batch_size=16, latent_dim=4, hidden=16, dims=(8,),
                        repeats=3, warmup=1)
    pyro.set_rng_seed(config.seed)
    workloads = {f"svi_step/{v}": lambda g, v=v: svi_step(config, v, g) for v in config.variants}
    workloads.update({f"distribution/d={d}": lambda g, d=d: distribution_step(config, d, g)
                      for d in config.dims})
    rows = []
    print("| workload | diagonal CPU ms | AR(1) CPU ms | ratio (CPU) | ratio (wall) |\n"
          "|---|---|---|---|---|")
    for name, make in workloads.items():
        times = time_pair({guide: make(guide) for guide in GUIDES}, config.repeats,
                          config.warmup)
        median = {guide: {clock: statistics.median(t[clock]) for clock in ("cpu", "wall")}
                  for guide, t in times.items()}
        ratio = {clock: median["ar1"][clock] / median["normal"][clock] for clock in ("cpu", "wall")}
        rows.append({"workload": name, "median_s": median, "ratio": ratio, "times_s": times})
        print(f"| {name} | {1e3 * median['normal']['cpu']:.2f} | {1e3 * median['ar1']['cpu']:.2f} "
              f"| {ratio['cpu']:.3f} | {ratio['wall']:.3f} |", flush=True)
    if args.json:
        meta = {"date": datetime.datetime.now().isoformat(timespec="seconds"),
                "machine": platform.processor() or platform.machine(),
                "python": platform.python_version(), "torch": torch.__version__,
                "pyro": pyro.__version__, "threads": torch.get_num_threads()}
        config_json = {k: list(v) if isinstance(v, tuple) else v
                       for k, v in asdict(config).items()}
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "config": config_json, "results": rows}, f, indent=1)
        print("wrote", args.json)


if __name__ == "__main__":
    main()
