"""Benchmark of one training step of the paper models: flowvae's step against the same model
trained by a hand-written PyTorch step, and the speed options of :func:`flowvae.train.fit`.

Models (1x32x32 MNIST-shaped images, the configurations of the examples):

* ``vapnev``: :class:`flowvae.models.VAPNEV` as in ``examples/vapnev.py`` (multi-scale
  conditional RealNVP likelihood), ``Trace_ELBO``;
* ``flowprior``: :class:`flowvae.models.FlowPriorVAE` as in ``examples/srvae.py`` (DenseNet
  networks, RealNVP prior over a 16x8x8 latent, logistic-mixture likelihood), ``Trace_ELBO``;
* ``ar1``: the rho-VAE's AR(1) guide in an MLP VAE on 1x28x28 binary images,
  ``TraceMeanField_ELBO`` (closed-form KL).

Candidates, each a separate copy of the model with the same initial weights, every call taking
one batch from a uint8 training set, preprocessing it and taking one Adam step:

* ``plain``: the reference: the same networks and distributions, but the negative ELBO written
  by hand (``q = posterior(x)``, ``z = q.rsample()``, ``log p(x|z) + log p(z) - log q(z)``, or
  the closed-form KL for ``ar1``), ``torch.optim.Adam``: no Pyro at all;
* ``flowvae``: the step :func:`flowvae.train.fit` takes (:func:`flowvae.train.training_step`
  on Pyro's differentiable ELBO, ``torch.optim.Adam``);
* ``pyro-svi``: ``pyro.infer.SVI.step`` with ``pyro.optim.Adam`` (what fit did before 0.2);
* ``jit``: ``flowvae`` with ``elbo="jit"`` (``JitTrace_ELBO`` / ``JitTraceMeanField_ELBO``);
* ``compile`` / ``bf16`` / ``compile+bf16``: ``flowvae`` after
  :func:`flowvae.train.accelerate` (models with couplings only);
* on CUDA also ``no-cudnn-benchmark`` (``flowvae`` with ``torch.backends.cudnn.benchmark``
  off; the others run with it on, as fit does) and ``data-on-host`` (``flowvae`` with the
  training set in host memory, copied batch by batch, as fit does on CPU).

Reported per model: median ms per step, the paired ratio to ``plain`` (per repeat, so that the
load of a shared machine cancels), throughput (images/s), peak memory of one step (CUDA: tensor
memory; CPU: growth of the peak resident set) and the FLOPs of one step (``FlopCounterMode``:
matmuls and convolutions, forward and backward) with the achieved rate against the device's
measured peak (a large float32 matmul on CPU, bfloat16 and float32 on CUDA), and the share of
those FLOPs in the coupling networks (:func:`coupling_flops`).

Usage::

    python benchmarks/steps.py --json steps.json
    python benchmarks/steps.py --device cuda --batch-size 256 --json steps-cuda.json
    python benchmarks/steps.py --quick            # tiny models, seconds (smoke test)
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime
import gc
import json
import os
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import pyro
import torch
from pyro.infer import (
    SVI,
    JitTrace_ELBO,
    JitTraceMeanField_ELBO,
    Trace_ELBO,
    TraceMeanField_ELBO,
)
from torch.distributions import kl_divergence

if __package__ in (None, ""):  # python benchmarks/steps.py: the repository root on the path
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.harness import (  # noqa: E402
    count_flops,
    log,
    machine_info,
    paired_ratio,
    peak_bytes,
    rss_follows_live_memory,
    summarise,
    synchronizer,
)
from flowvae.models import VAE, VAPNEV, FlowPriorVAE
from flowvae.train import DifferentiableELBO, accelerate, trainable_parameters, training_step
from flowvae.transforms import ConditionalRealNVP

MODELS = ("vapnev", "flowprior", "ar1")
LR = 1e-4


@dataclass(frozen=True)
class Config:
    device: str = "cpu"
    models: Tuple[str, ...] = MODELS
    batch_size: int = 64
    repeats: int = 15
    warmup: int = 2
    train_size: int = 2048
    compile: bool = True
    quick: bool = False
    seed: int = 0
    json: Optional[str] = None
    command: str = ""


def build(name: str, quick: bool):
    """``(model, elbo class, jit elbo class, image shape, binary images?)``."""
    if name == "vapnev":  # examples/vapnev.py's defaults on 32x32 (padded MNIST)
        flow = dict(hidden_channels=4, num_blocks=1) if quick else dict(
            hidden_channels=32, num_blocks=1, checkerboard="masked")
        model = VAPNEV((1, 32, 32), latent_dim=16, hidden=4 if quick else 16, flow_kwargs=flow)
        return model, Trace_ELBO, JitTrace_ELBO, (1, 32, 32), False
    if name == "flowprior":  # examples/srvae.py's defaults
        width = 4 if quick else 16
        model = FlowPriorVAE((1, 32, 32), (16, 8, 8), hidden=2 * width, growth=width,
                             num_layers=2, num_mixtures=5,
                             flow_kwargs=dict(hidden_channels=width, num_blocks=1))
        return model, Trace_ELBO, JitTrace_ELBO, (1, 32, 32), False
    if name == "ar1":  # the rho-VAE's vanilla MLP VAE with the AR(1) guide
        model = VAE((1, 28, 28), latent_dim=16, guide="ar1", likelihood="bernoulli",
                    network="mlp", hidden=16 if quick else 256)
        return model, TraceMeanField_ELBO, JitTraceMeanField_ELBO, (1, 28, 28), True
    raise ValueError(f"unknown model {name!r}; choose from {MODELS}")


def plain_loss(model, x, analytic_kl: bool):
    """The negative ELBO of the batch written by hand: no Pyro trace, plate or param store."""
    q = model.posterior(x)
    z = q.rsample()
    log_lik = model.likelihood(z).log_prob(x)
    if analytic_kl:
        return -(log_lik - kl_divergence(q, model.p_z(x))).sum()
    return -(log_lik + model.p_z(x).log_prob(z) - q.log_prob(z)).sum()


def check_same_objective(model, elbo, x, analytic_kl: bool, seed: int) -> float:
    """The relative difference between the hand-written loss and Pyro's ELBO loss of the same
    model on the same batch with the same draw of ``z`` (same seed); a RuntimeError if the
    reference is not the same objective."""
    with pyro.get_param_store().scope(), torch.no_grad():
        torch.manual_seed(seed)
        by_hand = plain_loss(model, x, analytic_kl).item()
        torch.manual_seed(seed)
        by_pyro = DifferentiableELBO(model, elbo)(x).item()
    diff = abs(by_hand - by_pyro) / abs(by_pyro)
    if not diff < 1e-4:
        raise RuntimeError(f"hand-written loss {by_hand} != Pyro's ELBO loss {by_pyro}")
    return diff


@dataclass
class Candidate:
    name: str
    model: object
    step: Callable[[], float]
    cudnn_benchmark: bool = True
    compile_s: Optional[float] = None
    #: this candidate's own Pyro param store (every copy of a PyroModule registers its
    #: parameters under the same names; a trace finding another copy's tensors in the global
    #: store would swap them into this model)
    params: dict = field(default_factory=lambda: {"params": {}, "constraints": {}})

    @contextlib.contextmanager
    def active(self, device: torch.device):
        """This candidate's param store and cudnn setting, for one or more steps."""
        with pyro.get_param_store().scope(self.params):
            if device.type == "cuda":
                torch.backends.cudnn.benchmark = self.cudnn_benchmark
            yield


def make_candidates(cfg: Config, name: str, device: torch.device):
    torch.manual_seed(cfg.seed)
    base, elbo_cls, jit_cls, shape, binary = build(name, cfg.quick)
    base.to(device)
    generator = torch.Generator().manual_seed(cfg.seed + 1)
    high = 2 if binary else 256
    data = torch.randint(0, high, (cfg.train_size, *shape), generator=generator,
                         dtype=torch.uint8)
    has_couplings = accelerate(copy.deepcopy(base)) > 0
    analytic = elbo_cls is TraceMeanField_ELBO
    x = base.preprocess(data[: cfg.batch_size].to(device))
    same = check_same_objective(base, elbo_cls(max_plate_nesting=1), x, analytic, cfg.seed)
    names = ["plain", "flowvae", "pyro-svi", "jit"]
    if has_couplings:
        names += ["bf16"] + (["compile", "compile+bf16"] if cfg.compile else [])
    if device.type == "cuda":
        names += ["no-cudnn-benchmark", "data-on-host"]
    candidates = []
    for cand_name in names:
        model = copy.deepcopy(base)
        images = data if cand_name == "data-on-host" else data.to(device)
        if cand_name == "plain":
            optim = torch.optim.Adam(model.parameters(), lr=LR)

            def step(x, model=model, optim=optim):
                optim.zero_grad(set_to_none=True)
                loss = plain_loss(model, x, analytic)
                loss.backward()
                optim.step()
                return loss.item() / len(x)
        elif cand_name == "pyro-svi":
            svi = SVI(model.model, model.guide, pyro.optim.Adam({"lr": LR}),
                      elbo_cls(max_plate_nesting=1))

            def step(x, svi=svi):
                return svi.step(x) / len(x)
        else:
            if "compile" in cand_name or "bf16" in cand_name:
                accelerate(model, compile="compile" in cand_name,
                           precision="bf16" if "bf16" in cand_name else "float32")
            elbo = (jit_cls if cand_name == "jit" else elbo_cls)(max_plate_nesting=1)
            objective = DifferentiableELBO(model, elbo)
            with pyro.get_param_store().scope():
                params = trainable_parameters(model, images[:2].to(device))
            optim = torch.optim.Adam(params, lr=LR)

            def step(x, objective=objective, optim=optim, params=params):
                return training_step(objective, optim, params, x)
        candidates.append(Candidate(cand_name, model, _with_batch(model, step, images, cfg,
                                                                  device),
                                    cudnn_benchmark=cand_name != "no-cudnn-benchmark"))
    return candidates, same


def _with_batch(model, step, images, cfg: Config, device: torch.device):
    """A call that takes the next batch of ``images`` (on the device or on the host),
    preprocesses it on the device and runs ``step`` on it, as one iteration of fit does."""
    position = [0]

    def run():
        start = position[0]
        position[0] = (start + cfg.batch_size) % (len(images) - cfg.batch_size)
        x = model.preprocess(images[start : start + cfg.batch_size].to(device))
        return step(x)
    return run


def coupling_flops(model, step: Callable[[], object]) -> int:
    """Matmul and convolution FLOPs of the coupling networks in one ``step``: every top-level
    :class:`~flowvae.transforms.ConditionalRealNVP` of ``model`` runs again alone, forward
    and backward, on the inputs and context its forward passes saw in ``step`` (with their
    ``requires_grad``). FlopCounterMode's own per-module breakdown double-counts under Pyro's
    traces, hence this replay."""
    flows = [m for m in model.modules() if isinstance(m, ConditionalRealNVP)]
    flows = [f for f in flows if not any(f is not g and f in set(g.modules()) for g in flows)]
    seen = []

    def record(module, args, kwargs, output):
        inputs = list(args) + [kwargs.get("context")] * (len(args) < 2)
        seen.append((module, [None if a is None else (a.detach(), a.requires_grad)
                              for a in inputs[:2]]))

    hooks = [f.register_forward_hook(record, with_kwargs=True) for f in flows]
    try:
        step()
    finally:
        for hook in hooks:
            hook.remove()

    def replay():
        for module, inputs in seen:
            args = [None if a is None else a[0].clone().requires_grad_(a[1]) for a in inputs]
            noise, logabsdet = module(*args)
            (noise.sum() + logabsdet.sum()).backward()

    return count_flops(replay) if seen else 0


def call(cand: Candidate, device: torch.device) -> float:
    with cand.active(device):
        return cand.step()


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int) -> float:
    """FLOP/s of a large square matmul: the device's practical peak for ``dtype``."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    sync = synchronizer(device)
    for _ in range(3):
        a @ b
    sync()
    times = []
    for _ in range(10 if device.type == "cuda" else 3):
        start = time.perf_counter()
        a @ b
        sync()
        times.append(time.perf_counter() - start)
    return 2 * n**3 / min(times)


def run_model(cfg: Config, name: str, device: torch.device) -> dict:
    sync = synchronizer(device)
    candidates, same = make_candidates(cfg, name, device)
    log(f"{name}: {[c.name for c in candidates]}")
    losses = {}
    for cand in candidates:  # warm-up; compiles and JIT traces happen here
        started = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit's tracer warnings (the jit candidate)
            losses[cand.name] = [call(cand, device) for _ in range(cfg.warmup)][0]
        sync()
        if cand.name in ("jit", "compile", "compile+bf16"):
            cand.compile_s = time.perf_counter() - started
    times: Dict[str, List[float]] = {c.name: [] for c in candidates}
    for r in range(cfg.repeats):
        order = candidates[r % len(candidates):] + candidates[:r % len(candidates)]
        for cand in order:
            with cand.active(device):
                sync()
                start = time.perf_counter()
                cand.step()
                sync()
                times[cand.name].append(time.perf_counter() - start)
    result = {"batch_size": cfg.batch_size, "plain_vs_pyro_loss_rel_diff": same,
              "params": sum(p.numel() for p in candidates[0].model.parameters()),
              "first_loss_per_image": losses, "candidates": {}}
    flops = count_flops(lambda: call(candidates[1], device))  # flowvae step, float32, eager
    result["step_flops"] = flops
    result["coupling_flops"] = coupling_flops(candidates[1].model,
                                              lambda: call(candidates[1], device))
    for cand in candidates:
        st = summarise(times[cand.name])
        st["paired_ratio_to_plain"] = paired_ratio(times[cand.name], times["plain"])
        st["images_per_s"] = cfg.batch_size / (st["median_ms"] / 1e3)
        st["achieved_tflops"] = flops / (st["median_ms"] / 1e3) / 1e12
        st["compile_s"] = cand.compile_s
        st["times_ms"] = [1e3 * t for t in times[cand.name]]
        result["candidates"][cand.name] = st
    return result, candidates


def measure_memory(report: dict, built: Dict[str, List[Candidate]], device: torch.device):
    """Peak bytes of one step of every candidate, after all timings. On CPU, glibc is first
    told to hand every freed block of 64 KiB or more back to the system and to release what it
    caches (``mallopt``, ``malloc_trim``), so that a step's peak resident set counts the memory
    it touches rather than the allocator's reuse of earlier steps' blocks."""
    if device.type == "cpu":
        try:
            libc = rss_follows_live_memory()
        except RuntimeError as error:
            log(f"peak memory not measured: {error}")
            return
    for name, candidates in built.items():
        for cand in candidates:
            call(cand, device)  # a step's one-time allocations (gradients) are steady state
            gc.collect()
            if device.type == "cpu":
                libc.malloc_trim(0)
            report["models"][name]["candidates"][cand.name]["peak_bytes"] = peak_bytes(
                lambda c=cand: call(c, device), device)


def markdown(name: str, result: dict, peaks: Dict[str, float]) -> str:
    share = result["coupling_flops"] / result["step_flops"]
    lines = [f"### {name} (B={result['batch_size']}, {result['params']:,} parameters, "
             f"{result['step_flops'] / 1e9:.1f} GFLOP per step, {100 * share:.0f}% of them in "
             "the coupling networks)", "",
             "| candidate | median ms | IQR ms | ratio to plain (paired median, IQR) | images/s "
             "| peak MiB | " + " | ".join(f"% of {k} peak" for k in peaks) + " |",
             "|---|---|---|---|---|---|" + "---|" * len(peaks)]
    for cand, st in result["candidates"].items():
        pr = st["paired_ratio_to_plain"]
        peak_mib = st.get("peak_bytes", float("nan")) / 2**20
        fractions = " | ".join(f"{100 * st['achieved_tflops'] * 1e12 / v:.1f}"
                               for v in peaks.values())
        lines.append(f"| {cand} | {st['median_ms']:.1f} | {st['q25_ms']:.1f}-{st['q75_ms']:.1f} "
                     f"| {pr['median']:.3f} ({pr['q25']:.3f}-{pr['q75']:.3f}) "
                     f"| {st['images_per_s']:.0f} | {peak_mib:.0f} "
                     f"| {fractions} |")
    return "\n".join(lines)


def parse_args(argv: Optional[Sequence[str]] = None) -> Config:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda, ...)")
    p.add_argument("--models", default=",".join(MODELS), help=f"comma list of {MODELS}")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--repeats", type=int, default=None, help="timed steps per candidate")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps per candidate")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile candidates")
    p.add_argument("--quick", action="store_true", help="tiny models (seconds): a smoke test")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, metavar="OUT.json")
    args = p.parse_args(argv)
    models = tuple(m.strip() for m in args.models.split(",") if m.strip())
    for m in models:
        if m not in MODELS:
            p.error(f"unknown model {m!r}; choose from {MODELS}")
    quick = args.quick

    def pick(value, full, small):
        return value if value is not None else (small if quick else full)

    return Config(device=args.device, models=models,
                  batch_size=pick(args.batch_size, 64, 4), repeats=pick(args.repeats, 15, 2),
                  warmup=pick(args.warmup, 2, 1), train_size=256 if quick else 2048,
                  compile=not args.no_compile, quick=quick, seed=args.seed, json=args.json,
                  command=" ".join(["python"] + [os.path.relpath(sys.argv[0])] + sys.argv[1:]))


def main(argv: Optional[Sequence[str]] = None) -> dict:
    cfg = parse_args(argv)
    device = torch.device(cfg.device)
    started = time.perf_counter()
    report = {"config": asdict(cfg), "machine": machine_info(device),
              "date": datetime.datetime.now().isoformat(timespec="seconds"), "models": {}}
    log("matmul peak")
    n = 256 if cfg.quick else (8192 if device.type == "cuda" else 2048)
    peaks = {"float32": matmul_peak(device, torch.float32, n)}
    if device.type == "cuda":
        peaks["bfloat16"] = matmul_peak(device, torch.bfloat16, n)
    report["matmul_peak_flops"] = peaks
    built = {}
    for name in cfg.models:
        report["models"][name], built[name] = run_model(cfg, name, device)
    log("peak memory")
    measure_memory(report, built, device)
    report["machine"]["load_average_end"] = os.getloadavg()
    report["wall_s"] = time.perf_counter() - started
    m = report["machine"]
    print(f"# Training-step benchmark ({report['date']})\n\n`{cfg.command}`\n\n"
          f"{m['cpu_model']}, {m['cpus_usable']} usable CPUs, torch {m['torch']} "
          f"({m['torch_threads']} threads), pyro {pyro.__version__}, device {m['device']}"
          f"{', ' + m['gpu'] if 'gpu' in m else ''}; {cfg.repeats} interleaved repeats; "
          f"measured matmul peak " + ", ".join(f"{k} {v / 1e12:.2f} TFLOP/s"
                                               for k, v in peaks.items())
          + f"; load average {m['load_average_start'][0]:.2f} -> "
          f"{m['load_average_end'][0]:.2f}; {report['wall_s']:.0f} s.\n")
    for name, result in report["models"].items():
        print(markdown(name, result, peaks) + "\n")
    compiled = {f"{n}/{c}": st["compile_s"] for n, r in report["models"].items()
                for c, st in r["candidates"].items() if st["compile_s"] is not None}
    if compiled:
        print("warm-up incl. compile/trace (s): " + ", ".join(f"{k} {v:.1f}"
                                                            for k, v in compiled.items()))
    if cfg.json:
        with open(cfg.json, "w") as f:
            json.dump(report, f, indent=1)
    return report


if __name__ == "__main__":
    main()
