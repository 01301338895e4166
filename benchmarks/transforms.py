"""Benchmark of :class:`flowvae.transforms.ConditionalRealNVP` (data -> noise, nflows direction).

Times, per image shape, three operations of a conditional multi-scale RealNVP with a 32-dim
context:

* ``log_prob``: ``log N(f(x); 0, I) + log|det df/dx|`` under ``torch.no_grad()`` (scoring);
* ``fwd+bwd``: the same with gradients, then ``backward()`` of ``-mean(log_prob)`` (a training
  step without the optimiser);
* ``sample``: ``f^{-1}(noise)`` under ``torch.no_grad()`` (sampling).

Candidates, all with about the same number of parameters (``--params``; hidden widths are
searched for each candidate, and printed):

* ``plain-masked`` / ``plain-squeezed``: a plain PyTorch conditional multi-scale RealNVP written
  here, with the VAPNEV multiplicative conditioner
  ``h = alpha F(x_A) G(z) + beta1 F(x_A) + beta2 G(z) + bias``; they are the references;
* ``flowvae-masked`` / ``flowvae-squeezed``: ``ConditionalRealNVP`` with the same weights as the
  plain reference of its checkerboard realisation (checked to give the same outputs);
* ``nflows``: the closest flow nflows builds by itself: ``MultiscaleCompositeTransform`` of
  ``SqueezeTransform`` + ``AffineCouplingTransform`` (sub-pixel checkerboard and channel masks)
  with ``ConvResidualNet`` conditioners that see the context as extra, spatially broadcast
  channels;
* ``flowvae-squeezed-compiled`` (``--compile``): ``torch.compile`` of ``flowvae-squeezed``;
* ``flowvae-squeezed-compiled-bf16`` (``--compile``): the same with bfloat16 conditioner networks
  (:func:`flowvae.train.accelerate`, ``precision="bf16"``); still checked to be an exact
  bijection, and its outputs are compared with the float32 flow's.

Architecture (RealNVP paper defaults): 2 scales, 3 checkerboard + 3 channel-wise couplings per
scale, 4 final checkerboard couplings, 2 residual blocks, widths doubling per scale.

Timings are interleaved in one process (every repeat runs every candidate once, in a rotated
order) so that the load of a shared machine hits all candidates alike; the ratios to the plain
reference of the same realisation are the meaningful numbers. Peak memory is measured separately
(see :func:`measure_memory`). Results go to stdout as markdown and to ``--json``. This is a
script: it writes JSON and gates no test.

Usage::

    python benchmarks/transforms.py --json transforms.json
    python benchmarks/transforms.py --quick    # tiny shapes and flows, seconds (smoke test)
"""

from __future__ import annotations

import argparse
import copy
import datetime
import gc
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

if __package__ in (None, ""):  # python benchmarks/transforms.py: the repository root on the path
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
    time_interleaved,
)
from benchmarks.reference_flows import PlainRealNVP, nflows_flow  # noqa: E402
from flowvae.train import accelerate  # noqa: E402
from flowvae.transforms import ConditionalRealNVP  # noqa: E402

SHAPES = {"mnist": (1, 28, 28), "cifar": (3, 32, 32)}
QUICK_SHAPES = {"mnist": (1, 8, 8), "cifar": (3, 8, 8)}
MODES = ("log_prob", "fwd+bwd", "sample")
# RealNVP paper defaults, shared by every candidate.
ARCH = dict(num_scales=2, num_checkerboard=3, num_channelwise=3, num_final=4, num_blocks=2)
QUICK_ARCH = dict(num_scales=2, num_checkerboard=2, num_channelwise=2, num_final=2, num_blocks=1)
REFERENCE = {
    "plain-masked": None,
    "flowvae-masked": "plain-masked",
    "plain-squeezed": None,
    "flowvae-squeezed": "plain-squeezed",
    "nflows": "plain-squeezed",
    "flowvae-squeezed-compiled": "plain-squeezed",
    "flowvae-squeezed-compiled-bf16": "plain-squeezed",
}



# --------------------------------------------------------------------------------------------
# Candidates
# --------------------------------------------------------------------------------------------


@dataclass
class Candidate:
    """A flow under test, behind one interface: ``forward(x, z) -> (noise, logabsdet)``."""

    name: str
    width: int
    module: nn.Module
    forward: Callable[[Tensor, Tensor], Tuple[Tensor, Tensor]]
    inverse: Callable[[Tensor, Tensor], Tuple[Tensor, Tensor]]
    flat_noise: bool = False  # nflows' multi-scale transform returns (B, D) noise
    compile_s: Optional[float] = None

    @property
    def reference(self) -> Optional[str]:
        return REFERENCE[self.name]

    def log_prob(self, x: Tensor, z: Tensor) -> Tensor:
        noise, logabsdet = self.forward(x, z)
        flat = noise.flatten(1)
        return logabsdet - 0.5 * (flat ** 2).sum(1) - 0.5 * flat.shape[1] * math.log(2 * math.pi)

    def noise_from(self, image_noise: Tensor) -> Tensor:
        return image_noise.flatten(1) if self.flat_noise else image_noise


def build_module(kind: str, shape, width: int, cfg: Config) -> nn.Module:
    arch = QUICK_ARCH if cfg.quick else ARCH
    if kind.startswith("flowvae-"):
        return ConditionalRealNVP(
            shape, context_features=cfg.context_features, hidden_channels=width,
            conditioner="multiplicative", checkerboard=kind.split("-")[1], **arch,
        )
    if kind.startswith("plain-"):
        return PlainRealNVP(shape, cfg.context_features, width, kind.split("-")[1], **arch)
    if kind == "nflows":
        return nflows_flow(shape, cfg.context_features, cfg.context_channels, width, **arch)
    raise ValueError(f"unknown candidate {kind!r}")


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def width_for(kind: str, shape, target: int, cfg: Config) -> int:
    """The hidden width whose parameter count is closest to ``target`` (counts grow with it)."""
    def count(width):
        return parameter_count(build_module(kind, shape, width, cfg))

    low, high = 1, 2
    while count(high) < target:
        low, high = high, 2 * high
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if count(mid) < target else (low, mid)
    return min((low, high), key=lambda w: abs(count(w) - target))


def perturb_zero_init(module: nn.Module, std: float, generator: torch.Generator) -> None:
    """flowvae zero-initialises the last conditioner layer (every flow starts as the identity);
    give such parameters small random values so that the benchmarked flows are not trivial."""
    with torch.no_grad():
        for p in module.parameters():
            if not p.any():
                p.copy_(std * torch.randn(p.shape, generator=generator))


def copy_parameters(source: nn.Module, target: nn.Module) -> bool:
    """Copy parameters in registration order; False (nothing copied) if the shapes differ."""
    src, dst = list(source.parameters()), list(target.parameters())
    if len(src) != len(dst) or any(a.shape != b.shape for a, b in zip(src, dst)):
        return False
    with torch.no_grad():
        for a, b in zip(src, dst):
            b.copy_(a)
    return True


def build_candidates(names: Sequence[str], shape, widths: Dict[str, int], cfg: Config,
                     device: torch.device) -> Tuple[List[Candidate], Dict[str, object]]:
    """Build the candidates; plain references get the weights of their flowvae counterpart."""
    built: Dict[str, nn.Module] = {}
    shared: Dict[str, object] = {}
    generator = torch.Generator().manual_seed(cfg.seed)
    for name in names:
        if name.startswith("flowvae-squeezed-compiled"):
            continue
        torch.manual_seed(cfg.seed)
        module = build_module(name, shape, widths[name], cfg)
        if name.startswith("flowvae-"):
            perturb_zero_init(module, cfg.init_std, generator)
        built[name] = module
    for name, module in built.items():
        twin = "flowvae-" + name.split("-")[1] if name.startswith("plain-") else None
        if twin in built:
            shared[name] = copy_parameters(built[twin], module)
    candidates = []
    for name in names:
        if name.startswith("flowvae-squeezed-compiled"):
            module = built["flowvae-squeezed"]
            if name.endswith("-bf16"):
                module = copy.deepcopy(module)
                accelerate(module, precision="bf16")
            candidates.append(Candidate(
                name, widths["flowvae-squeezed"], module,
                torch.compile(module, dynamic=False), torch.compile(module.inverse, dynamic=False),
            ))
            continue
        module = built[name].to(device)
        candidates.append(Candidate(name, widths[name], module, module, module.inverse,
                                    flat_noise=name == "nflows"))
    return candidates, shared


# --------------------------------------------------------------------------------------------
# Operations, checks, timing and memory
# --------------------------------------------------------------------------------------------


def operation(mode: str, cand: Candidate, x: Tensor, z: Tensor, noise: Tensor) -> Callable:
    if mode == "log_prob":
        def run():
            with torch.no_grad():
                cand.log_prob(x, z)
    elif mode == "fwd+bwd":
        params = list(cand.module.parameters())

        def run():
            for p in params:
                p.grad = None
            (-cand.log_prob(x, z).mean()).backward()
    elif mode == "sample":
        flat = cand.noise_from(noise)

        def run():
            with torch.no_grad():
                cand.inverse(flat, z)
    else:
        raise ValueError(f"unknown mode {mode!r}")
    return run


def check(cand: Candidate, x: Tensor, z: Tensor) -> Dict[str, float]:
    """Shapes, inverse(forward(x)) == x and opposite log-dets; raises if they fail."""
    with torch.no_grad():
        noise, logdet = cand.forward(x, z)
        back, logdet_back = cand.inverse(noise, z)
    if noise.numel() != x.numel() or logdet.shape != (x.shape[0],) or back.shape != x.shape:
        raise RuntimeError(f"{cand.name}: noise {tuple(noise.shape)}, log-det "
                           f"{tuple(logdet.shape)}, inverse {tuple(back.shape)} for x "
                           f"{tuple(x.shape)}")
    err = (back - x).abs().max().item()
    err_logdet = (logdet + logdet_back).abs().max().item()
    # bfloat16 networks: a network input that rounds to another bfloat16 value in the inverse
    # pass than in the forward pass changes s and t by a bfloat16 step (see accelerate)
    loose = 20 if cand.name.endswith("-bf16") else 1
    if err > 1e-3 * loose or err_logdet > 1e-4 * loose * (1 + logdet.abs().max().item()):
        raise RuntimeError(f"{cand.name}: |inverse(forward(x)) - x| = {err:.2e}, "
                           f"|logdet + inverse logdet| = {err_logdet:.2e}")
    return {"inverse_max_abs_err": err, "logdet_sum_max_abs": err_logdet,
            "logdet_mean": logdet.mean().item()}


def same_outputs(a: Candidate, b: Candidate, x: Tensor, z: Tensor) -> float:
    """Largest difference between the noises and log-dets of two candidates."""
    with torch.no_grad():
        (na, la), (nb, lb) = a.forward(x, z), b.forward(x, z)
    return max((na - nb).abs().max().item(), ((la - lb).abs() / (1 + lb.abs())).max().item())


def measure_memory(cfg: Config, plan: Dict[str, dict]) -> Dict[str, Dict[str, Dict[str, int]]]:
    """Peak bytes per shape, mode and candidate (the compiled candidate is left out).

    On CPU this runs in a fresh subprocess that makes glibc return every allocation of 64 KiB
    or more to the system when it is freed (``mallopt(M_MMAP_THRESHOLD)``), so that the resident
    set follows the live memory instead of the allocator's cache; on CUDA it runs here."""
    if torch.device(cfg.device).type == "cuda":
        return _memory_probe(cfg, plan)
    cmd = [sys.executable, os.path.abspath(__file__), "--_memory-probe",
           json.dumps({"config": asdict(cfg), "plan": plan})]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"memory probe failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _memory_probe(cfg: Config, plan: Dict[str, dict]) -> Dict[str, Dict[str, Dict[str, int]]]:
    device = torch.device(cfg.device)
    if device.type == "cpu":
        rss_follows_live_memory()
    out: Dict[str, Dict[str, Dict[str, int]]] = {}
    for shape_name, info in plan.items():
        names = [n for n in info["widths"] if not n.startswith("flowvae-squeezed-compiled")]
        candidates, _ = build_candidates(names, tuple(info["shape"]), info["widths"], cfg, device)
        x, z, noise = make_inputs(cfg, tuple(info["shape"]), device)
        out[shape_name] = {mode: {} for mode in cfg.modes}
        gc.collect()  # once: tensors are freed by reference counting, a collection takes 0.1 s
        for cand in candidates:
            for mode in cfg.modes:
                run = operation(mode, cand, x, z, noise)
                run()  # one-time allocations (oneDNN primitives, grads) are not the steady state
                out[shape_name][mode][cand.name] = peak_bytes(run, device)
        del candidates
    return out


def make_inputs(cfg: Config, shape, device) -> Tuple[Tensor, Tensor, Tensor]:
    generator = torch.Generator().manual_seed(cfg.seed + 1)
    x = torch.randn(cfg.batch_size, *shape, generator=generator)
    z = torch.randn(cfg.batch_size, cfg.context_features, generator=generator)
    noise = torch.randn(cfg.batch_size, *shape, generator=generator)
    return x.to(device), z.to(device), noise.to(device)


# --------------------------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------------------------


def targets(result: dict, modes: Sequence[str]) -> List[dict]:
    """The issue's targets: flowvae within 5% of its plain counterpart; flowvae-squeezed faster
    than the nflows-built flow (both on ratios of medians)."""
    rows = []
    for mode in modes:
        stats = result["timings"][mode]
        for name in ("flowvae-masked", "flowvae-squeezed"):
            if name in stats and stats[name]["ratio"] is not None:
                ratio = stats[name]["ratio"]
                rows.append({"mode": mode, "target": f"{name} / {REFERENCE[name]} <= 1.05",
                             "value": ratio, "met": ratio <= 1.05})
        if "flowvae-squeezed" in stats and "nflows" in stats:
            ratio = stats["flowvae-squeezed"]["median_ms"] / stats["nflows"]["median_ms"]
            rows.append({"mode": mode, "target": "flowvae-squeezed / nflows < 1",
                         "value": ratio, "met": ratio < 1})
            if mode == "fwd+bwd":  # issue 11's GPU target, any realisation of the flow
                fastest = min((st["median_ms"], name) for name, st in stats.items()
                              if name.startswith("flowvae-squeezed"))
                speedup = stats["nflows"]["median_ms"] / fastest[0]
                rows.append({"mode": mode, "target": f"throughput {fastest[1]} / nflows >= 2 "
                                                     "(GPU target, batch 256)",
                             "value": speedup, "met": speedup >= 2})
    return rows


def markdown(shape_name: str, result: dict, modes: Sequence[str]) -> str:
    b = result["batch_size"]
    lines = [f"### {shape_name} (B={b}, {' x '.join(map(str, result['shape']))}, context 32)", "",
             "| mode | candidate | width | params | median ms | IQR ms | min ms | ratio "
             "| paired ratio [IQR] | peak MB | GFLOP | TFLOP/s |", "|---|---|" + "---:|" * 10]
    for mode in modes:
        for name, st in result["timings"][mode].items():
            info = result["candidates"][name]
            ratio = "ref" if st["ratio"] is None else f"{st['ratio']:.2f}"
            paired = "" if st["paired"] is None else (
                f"{st['paired']['median']:.2f} [{st['paired']['q25']:.2f}, "
                f"{st['paired']['q75']:.2f}]")
            mem = st.get("peak_bytes")
            mem = "n/a" if mem is None else f"{mem / 2 ** 20:.1f}"
            lines.append(
                f"| {mode} | {name} | {info['width']} | {info['params'] / 1e6:.3f}M "
                f"| {st['median_ms']:.1f} | {st['q25_ms']:.1f}-{st['q75_ms']:.1f} "
                f"| {st['min_ms']:.1f} | {ratio} | {paired} | {mem} "
                f"| {st['flops'] / 1e9:.1f} | {st['achieved_tflops']:.3f} |")
    spread = result["params_max_over_min"]
    checks = result["checks"]
    inverse_err = max(c["inverse_max_abs_err"] for c in checks.values())
    same = [f"{n} = {c['same_outputs_as']}: {c['max_output_diff']:.1e}" if c["same_outputs_as"]
            else f"{n}: NOT CHECKED (parameters do not line up)"
            for n, c in checks.items() if "same_outputs_as" in c]
    lines += ["", f"Parameter counts: largest / smallest = {spread:.3f}"
              + ("" if spread <= 1.1 else " (NOT within 10%: widths are too coarse here)")
              + f". Checks: max |inverse(forward(x)) - x| = {inverse_err:.1e} over candidates; "
              "same weights, same outputs (max diff): " + "; ".join(same) + "."]
    lines += ["", "| mode | target | value | met |", "|---|---|---:|---|"]
    for row in result["targets"]:
        lines.append(f"| {row['mode']} | {row['target']} | {row['value']:.2f} "
                     f"| {'yes' if row['met'] else 'NO'} |")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    device: str = "cpu"
    repeats: int = 10
    warmup: int = 2
    batch_size: int = 64
    shapes: Tuple[str, ...] = ("mnist", "cifar")
    modes: Tuple[str, ...] = MODES
    quick: bool = False
    params: int = 1_800_000
    context_features: int = 32
    context_channels: int = 4
    init_std: float = 0.01
    compile: bool = False
    memory: bool = True
    seed: int = 0
    json: Optional[str] = None
    command: str = field(default="", compare=False)


def parse_args(argv: Optional[Sequence[str]] = None) -> Config:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1, ...)")
    p.add_argument("--repeats", type=int, default=None, help="timed calls per candidate and mode")
    p.add_argument("--warmup", type=int, default=None, help="untimed calls before timing")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--shapes", default="mnist,cifar", help=f"comma list of {sorted(SHAPES)}")
    p.add_argument("--modes", default=",".join(MODES), help=f"comma list of {MODES}")
    p.add_argument("--params", type=int, default=None,
                   help="target parameter count; each candidate's width is chosen to match it")
    p.add_argument("--context-channels", type=int, default=4,
                   help="channels the context is projected to for the nflows flow")
    p.add_argument("--compile", action="store_true",
                   help="add torch.compile'd flowvae-squeezed as a candidate")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurement")
    p.add_argument("--quick", action="store_true",
                   help="tiny shapes, batch and architecture (seconds): a smoke test")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, metavar="OUT.json", help="write all results here")
    p.add_argument("--_memory-probe", dest="memory_probe", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.memory_probe is not None:
        return args  # type: ignore[return-value]
    shapes = tuple(s.strip() for s in args.shapes.split(",") if s.strip())
    modes = tuple(m.strip() for m in args.modes.split(",") if m.strip())
    for s in shapes:
        if s not in SHAPES:
            p.error(f"unknown shape {s!r}; choose from {sorted(SHAPES)}")
    for m in modes:
        if m not in MODES:
            p.error(f"unknown mode {m!r}; choose from {MODES}")
    quick = args.quick

    def pick(value, full, small):
        return value if value is not None else (small if quick else full)

    return Config(
        device=args.device, repeats=pick(args.repeats, 10, 2), warmup=pick(args.warmup, 2, 1),
        batch_size=pick(args.batch_size, 64, 2), shapes=shapes, modes=modes, quick=quick,
        params=pick(args.params, 1_800_000, 20_000), context_channels=args.context_channels,
        compile=args.compile, memory=not args.no_memory, seed=args.seed, json=args.json,
        command=" ".join(["python"] + [os.path.relpath(sys.argv[0])] + sys.argv[1:]),
    )


def run_shape(cfg: Config, shape_name: str, device: torch.device, sync) -> dict:
    shape = (QUICK_SHAPES if cfg.quick else SHAPES)[shape_name]
    names = ["plain-masked", "flowvae-masked", "plain-squeezed", "flowvae-squeezed", "nflows"]
    widths = {n: width_for(n, shape, cfg.params, cfg)
              for n in ("flowvae-masked", "flowvae-squeezed", "nflows")}
    widths["plain-masked"], widths["plain-squeezed"] = (widths["flowvae-masked"],
                                                        widths["flowvae-squeezed"])
    if cfg.compile:
        names += ["flowvae-squeezed-compiled", "flowvae-squeezed-compiled-bf16"]
        widths["flowvae-squeezed-compiled"] = widths["flowvae-squeezed"]
        widths["flowvae-squeezed-compiled-bf16"] = widths["flowvae-squeezed"]
    log(f"{shape_name}: widths {widths}")
    candidates, shared = build_candidates(names, shape, widths, cfg, device)
    x, z, noise = make_inputs(cfg, shape, device)
    by_name = {c.name: c for c in candidates}

    checks: Dict[str, dict] = {}
    for cand in candidates:
        if cand.name.startswith("flowvae-squeezed-compiled"):
            start = time.perf_counter()
            checks[cand.name] = check(cand, x, z)
            cand.compile_s = time.perf_counter() - start  # compiling forward and inverse
        else:
            checks[cand.name] = check(cand, x, z)
        twin = {"plain-masked": "flowvae-masked", "plain-squeezed": "flowvae-squeezed",
                "flowvae-squeezed-compiled": "flowvae-squeezed",
                "flowvae-squeezed-compiled-bf16": "flowvae-squeezed"}.get(cand.name)
        if twin is not None and (shared.get(cand.name, True)):
            diff = same_outputs(by_name[twin], cand, x, z)
            checks[cand.name]["same_outputs_as"] = twin
            checks[cand.name]["max_output_diff"] = diff
            # bfloat16 networks carry ~3 significant digits through every coupling
            if diff > (0.1 if cand.name.endswith("-bf16") else 1e-3):
                raise RuntimeError(f"{cand.name} and {twin} share weights but differ by {diff}")
        elif twin is not None:
            checks[cand.name]["same_outputs_as"] = None  # parameters did not line up

    runs = {m: {c.name: operation(m, c, x, z, noise) for c in candidates} for m in cfg.modes}
    log(f"{shape_name}: checks passed, warming up")
    for cand in candidates:
        for mode in cfg.modes:
            start = time.perf_counter()
            for _ in range(cfg.warmup):
                runs[mode][cand.name]()
            if cand.name.startswith("flowvae-squeezed-compiled") and mode == "fwd+bwd":
                # the grad-mode graph and its backward compile on the first warm-up call
                cand.compile_s = (cand.compile_s or 0) + time.perf_counter() - start
    sync()
    times = time_interleaved(candidates, runs, cfg.modes, cfg.repeats, sync)

    result = {
        "shape": list(shape), "batch_size": cfg.batch_size,
        "candidates": {c.name: {"width": c.width, "params": parameter_count(c.module),
                                "reference": c.reference, "compile_s": c.compile_s}
                       for c in candidates},
        "checks": checks, "timings": {},
    }
    for mode in cfg.modes:
        result["timings"][mode] = {}
        for cand in candidates:
            st = summarise(times[mode][cand.name])
            ref = cand.reference
            st["ratio"] = None if ref is None else (
                st["median_ms"] / summarise(times[mode][ref])["median_ms"])
            st["paired"] = None if ref is None else paired_ratio(times[mode][cand.name],
                                                                 times[mode][ref])
            st["times_ms"] = [1e3 * t for t in times[mode][cand.name]]
            result["timings"][mode][cand.name] = st
    for mode in cfg.modes:  # FLOPs (matmuls, convolutions) of one call; compiled = its twin's
        flops = {c.name: count_flops(runs[mode][c.name]) for c in candidates
                 if not c.name.startswith("flowvae-squeezed-compiled")}
        for cand in candidates:
            st = result["timings"][mode][cand.name]
            st["flops"] = flops[cand.name.split("-compiled")[0]]
            st["achieved_tflops"] = st["flops"] / (st["median_ms"] / 1e3) / 1e12
    counts = [info["params"] for info in result["candidates"].values()]
    result["params_max_over_min"] = max(counts) / min(counts)
    result["plan"] = {"shape": list(shape), "widths": widths}
    return result


def main(argv: Optional[Sequence[str]] = None) -> dict:
    cfg = parse_args(argv)
    if not isinstance(cfg, Config):  # the memory probe subprocess
        spec = json.loads(cfg.memory_probe)
        conf = spec["config"]
        conf["shapes"], conf["modes"] = tuple(conf["shapes"]), tuple(conf["modes"])
        print(json.dumps(_memory_probe(Config(**conf), spec["plan"])))
        return {}
    device = torch.device(cfg.device)
    sync = synchronizer(device)
    report = {"config": asdict(cfg), "machine": machine_info(device),
              "architecture": QUICK_ARCH if cfg.quick else ARCH,
              "date": datetime.datetime.now().isoformat(timespec="seconds"), "shapes": {}}
    started = time.perf_counter()
    for shape_name in cfg.shapes:
        report["shapes"][shape_name] = run_shape(cfg, shape_name, device, sync)
    if cfg.memory:
        plan = {s: r["plan"] for s, r in report["shapes"].items()}
        log("peak memory (subprocess)" if device.type == "cpu" else "peak memory")
        try:
            peaks = measure_memory(cfg, plan)
        except (RuntimeError, OSError) as error:  # keep the timings
            log(f"peak memory not measured: {error}")
            report["memory_error"], peaks = str(error), {}
        for s, per_mode in peaks.items():
            for mode, per_cand in per_mode.items():
                for name, value in per_cand.items():
                    report["shapes"][s]["timings"][mode][name]["peak_bytes"] = value
    report["memory_measure"] = None if not cfg.memory else (
        "torch.cuda.max_memory_allocated minus memory allocated before the call"
        if device.type == "cuda" else
        "growth of peak RSS (VmHWM after clear_refs) over RSS before one call, in a subprocess "
        "with mallopt(M_MMAP_THRESHOLD=64KiB); includes oneDNN scratch and allocator slack")
    report["machine"]["load_average_end"] = os.getloadavg()
    report["wall_s"] = time.perf_counter() - started
    for result in report["shapes"].values():
        result["targets"] = targets(result, cfg.modes)
    m = report["machine"]
    print(f"# ConditionalRealNVP benchmark ({report['date']})\n\n"
          f"`{cfg.command}`\n\n"
          f"{m['cpu_model']}, {m['cpus_usable']} usable CPUs, torch {m['torch']} "
          f"({m['torch_threads']} threads), nflows {m['nflows']}, device {m['device']}"
          f"{', ' + m['gpu'] if 'gpu' in m else ''}; {cfg.repeats} interleaved repeats, "
          f"{cfg.warmup} warm-up calls; load average {m['load_average_start'][0]:.2f} -> "
          f"{m['load_average_end'][0]:.2f}; {report['wall_s']:.0f} s.\n")
    for s, result in report["shapes"].items():
        print(markdown(s, result, cfg.modes) + "\n")
    compiled = {s: r["candidates"].get("flowvae-squeezed-compiled", {}).get("compile_s")
                for s, r in report["shapes"].items()}
    if cfg.compile:
        print("compile time (s): " + ", ".join(f"{s} {v:.0f}" for s, v in compiled.items()))
    if cfg.json:
        with open(cfg.json, "w") as f:
            json.dump(report, f, indent=1)
    return report


if __name__ == "__main__":
    main()
