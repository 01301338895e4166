"""The cost of flowvae's input validation on its flows (issue 30): the same flow, the same
inputs, timed side by side with Pyro's validation on and off, in one process.

Flows (``--flows``):

* ``vector``: the posterior-flow use case, ``ConditionalRealNVP((40,), context_features=32)``
  with 4 couplings of width 128 (``posterior_flow_vae``'s defaults), ``B = 256``;
* ``mnist`` / ``cifar``: the main job's image flow (``examples/vapnev.py``: width 32, one
  residual block, the masked checkerboard, ActNorm, a 16-dim context) on ``(1, 28, 28)`` and
  ``(3, 32, 32)``, ``B = 64``.

Modes: ``log_prob`` (forward under ``no_grad``), ``fwd+bwd`` (forward and backward of the
summed log-determinant and noise, a training step without the optimiser), ``sample``
(inverse under ``no_grad``).

Candidates, per flow and mode: ``on`` (``pyro.enable_validation(True)``: metadata checks and
the finiteness check of inputs, context and results), ``off`` (metadata checks only; no value
read on the host), ``unchecked`` (the flow's layers, ``flow.flow``, called directly: no check).
The numbers that matter are the paired ratios ``on / off`` (what validation costs; the target
is at most 1.03) and ``off / unchecked`` (what the always-on metadata checks cost), each the
median and quartiles of per-repeat ratios, ``on / off`` of the fastest samples (on a loaded
machine the least disturbed), and ``on / off`` from the checks' own time (:func:`check_costs`:
what one call's checks cost alone, with validation on and off, as a share of the call). Results
go to stdout as markdown and to ``--json``;
this is a script, gating no test.

Usage::

    python benchmarks/validation.py --json validation.json
    python benchmarks/validation.py --quick     # tiny sizes, a smoke test (seconds)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence

import pyro
import torch

if __package__ in (None, ""):  # python benchmarks/validation.py: the repository root on the path
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.harness import (  # noqa: E402
    log,
    machine_info,
    paired_ratio,
    summarise,
    synchronizer,
    time_interleaved,
)
from flowvae.transforms import ConditionalRealNVP  # noqa: E402
from flowvae.validation import check_finite  # noqa: E402

MODES = ("log_prob", "fwd+bwd", "sample")
CANDIDATES = ("on", "off", "unchecked")
IMAGE = dict(hidden_channels=32, num_blocks=1, checkerboard="masked", actnorm=True)
FLOWS = {  # name -> (shape, context_features, options, batch, calls per timed sample)
    "vector": ((40,), 32, dict(num_couplings=4, hidden_features=128), 256, 20),
    "mnist": ((1, 28, 28), 16, IMAGE, 64, 1),
    "cifar": ((3, 32, 32), 16, IMAGE, 64, 1),
}
QUICK_FLOWS = {
    "vector": ((8,), 4, dict(num_couplings=2, hidden_features=16), 32, 2),
    "mnist": ((1, 8, 8), 4, dict(IMAGE, hidden_channels=4), 4, 1),
}


@dataclass
class Candidate:
    name: str


def runs_for(flow, x, context, candidate: str, mode: str, calls: int) -> Callable[[], None]:
    """``calls`` calls of ``mode`` on ``flow`` with validation as ``candidate`` says (several
    per timed sample for a flow of a millisecond, so that one sample outlasts the jitter)."""
    inner = flow if candidate != "unchecked" else flow.flow  # the layers, run unchecked
    forward, inverse = inner.forward, inner.inverse
    validate = candidate == "on"

    def run() -> None:
        pyro.enable_validation(validate)
        for _ in range(calls):
            if mode == "fwd+bwd":
                noise, logabsdet = forward(x, context)
                (noise.square().sum() - logabsdet.sum()).backward()
                continue
            with torch.no_grad():
                (forward if mode == "log_prob" else inverse)(x, context)

    return run


def measure_flow(name: str, spec, modes, repeats: int, warmup: int, device) -> Dict:
    shape, context_features, options, batch, calls = spec
    torch.manual_seed(0)
    flow = ConditionalRealNVP(shape, context_features, **options).to(device)
    x = torch.randn(batch, *shape, device=device)
    context = torch.randn(batch, context_features, device=device)
    flow(x, context)  # ActNorm's data-dependent initialisation
    with torch.no_grad():  # off the identity initialisation
        for p in flow.parameters():
            p.add_(0.05 * torch.randn_like(p))
    candidates = [Candidate(c) for c in CANDIDATES]
    runs = {m: {c: runs_for(flow, x, context, c, m, calls) for c in CANDIDATES}
            for m in modes}
    for mode in modes:
        for run in runs[mode].values():
            for _ in range(warmup):
                run()
    log(f"{name}: {sum(p.numel() for p in flow.parameters()):,} parameters, batch {batch}, "
        f"{calls} calls per sample")
    times = time_interleaved(candidates, runs, modes, repeats, synchronizer(device))
    pyro.enable_validation(True)
    per_call = {m: {c: [t / calls for t in times[m][c]] for c in CANDIDATES} for m in modes}
    checks = check_costs(flow, x, context)
    return {mode: {
        "times": {c: summarise(per_call[mode][c]) for c in CANDIDATES},
        "on/off": paired_ratio(times[mode]["on"], times[mode]["off"]),
        "off/unchecked": paired_ratio(times[mode]["off"], times[mode]["unchecked"]),
        "checks_ms": checks,
        "on/off from the checks": 1 + (checks["on"] - checks["off"]) / (
            1e3 * statistics.median(per_call[mode]["off"])),
    } for mode in modes}


def check_costs(flow, x, context, calls: int = 200, repeats: int = 15) -> Dict[str, float]:
    """Milliseconds of the checks one flow call makes, alone, with validation on and off
    (median of ``repeats`` samples of ``calls`` calls, interleaved): the entry check of the
    arguments and the finiteness check of arguments and results
    (:class:`~flowvae.transforms.CheckedTransform`). On a loaded machine their share of a
    call, ``1 + (on - off) / call``, is steadier than a ratio of two whole calls."""
    with torch.no_grad():
        outputs, logabsdet = flow(x, context)

    def check() -> None:
        flow._check(x, context)
        check_finite(f"{flow.entry_name}.forward", dict(outputs=outputs, logabsdet=logabsdet),
                     inputs=x, context=context)

    samples: Dict[str, List[float]] = {"on": [], "off": []}
    for _ in range(repeats):
        for name in samples:
            pyro.enable_validation(name == "on")
            start = time.perf_counter()
            for _ in range(calls):
                check()
            samples[name].append(1e3 * (time.perf_counter() - start) / calls)
    pyro.enable_validation(True)
    return {name: statistics.median(values) for name, values in samples.items()}


def print_table(results: Dict) -> None:
    print("| flow | mode | off (ms per call) | on / off | on / off (fastest) | "
          "on / off (from the checks) | off / unchecked |")
    print("|---|---|---|---|---|---|---|")
    for flow, by_mode in results["flows"].items():
        for mode, r in by_mode.items():
            ratios = [r[k] for k in ("on/off", "off/unchecked")]
            cells = [f"{q['median']:.3f} [{q['q25']:.3f}, {q['q75']:.3f}]" for q in ratios]
            fastest = r["times"]["on"]["min_ms"] / r["times"]["off"]["min_ms"]
            print(f"| {flow} | {mode} | {r['times']['off']['median_ms']:.2f} | {cells[0]} | "
                  f"{fastest:.3f} | {r['on/off from the checks']:.4f} | {cells[1]} |")


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda, ...)")
    p.add_argument("--flows", default=None, help=f"comma list of {sorted(FLOWS)}")
    p.add_argument("--modes", default=",".join(MODES), help=f"comma list of {MODES}")
    p.add_argument("--repeats", type=int, default=None, help="timed calls per candidate")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="tiny flows: a smoke test")
    p.add_argument("--json", default=None, metavar="OUT.json")
    return p.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> Dict:
    args = parse_args(argv)
    table = QUICK_FLOWS if args.quick else FLOWS
    flows = args.flows.split(",") if args.flows else list(table)
    repeats = args.repeats or (5 if args.quick else 60)
    device = torch.device(args.device)
    results: Dict = {"machine": machine_info(device), "repeats": repeats, "flows": {}}
    for name in flows:
        results["flows"][name] = measure_flow(name, table[name], args.modes.split(","),
                                              repeats, args.warmup, device)
    print_table(results)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return results


if __name__ == "__main__":
    main()
