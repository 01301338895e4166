"""The benchmark suite: every flowvae benchmark in one process, results in one JSON file.

* ``transforms`` (:mod:`benchmarks.transforms`): ConditionalRealNVP log-prob, forward+backward
  and sampling against a plain-PyTorch implementation and the nflows-built flow, MNIST and
  CIFAR shapes, peak memory;
* ``steps`` (:mod:`benchmarks.steps`): one training step of VAPNEV, FlowPriorVAE and the AR(1)
  VAE against the same model trained by a hand-written PyTorch step and by ``pyro.infer.SVI``,
  the speed options (jit, compile, bf16; on CUDA cudnn.benchmark and data on the device),
  throughput, peak memory and achieved FLOP/s against the measured matmul peak.

Each benchmark interleaves its candidates (every repeat runs each once, in rotated order), so
only ratios within one run are meaningful on a shared machine. The markdown tables go to
stdout, everything (with the machine, library versions and raw timings) to ``--out``.

Usage::

    python -m benchmarks.run --device cpu --out results.json
    python -m benchmarks.run --device cuda --batch-size 256 --out results-cuda.json
    python -m benchmarks.run --quick --out /tmp/smoke.json      # tiny sizes, about a minute
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import List, Optional, Sequence

from benchmarks import steps, transforms

SUITES = ("transforms", "steps")


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda, ...)")
    p.add_argument("--out", default="results.json", help="JSON file for all results")
    p.add_argument("--suites", default=",".join(SUITES), help=f"comma list of {SUITES}")
    p.add_argument("--batch-size", type=int, default=None,
                   help="batch of every benchmark (default: each benchmark's own, 64)")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats per candidate")
    p.add_argument("--no-compile", action="store_true", help="skip torch.compile candidates")
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    args = p.parse_args(argv)
    args.suites = [s.strip() for s in args.suites.split(",") if s.strip()]
    for s in args.suites:
        if s not in SUITES:
            p.error(f"unknown suite {s!r}; choose from {SUITES}")
    return args


def common_flags(args: argparse.Namespace) -> List[str]:
    flags = ["--device", args.device]
    if args.batch_size is not None:
        flags += ["--batch-size", str(args.batch_size)]
    if args.repeats is not None:
        flags += ["--repeats", str(args.repeats)]
    if args.quick:
        flags.append("--quick")
    return flags


def coupling_fraction_of_peak(results: dict) -> List[dict]:
    """Achieved FLOP/s of ConditionalRealNVP's forward+backward (the coupling networks, from
    the transforms benchmark) as a fraction of the device's measured matmul peak (from the
    steps benchmark): bfloat16's where measured (CUDA), else float32's."""
    peaks = results["steps"]["matmul_peak_flops"]
    dtype = "bfloat16" if "bfloat16" in peaks else "float32"
    rows = []
    for shape, result in results["transforms"]["shapes"].items():
        timings = result["timings"].get("fwd+bwd", {})
        for name in ("flowvae-squeezed", "flowvae-squeezed-compiled", "flowvae-masked"):
            if name in timings:
                tflops = timings[name]["achieved_tflops"]
                rows.append({"shape": shape, "candidate": name, "tflops": tflops,
                             "peak_dtype": dtype, "fraction": tflops * 1e12 / peaks[dtype]})
    return rows


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = parse_args(argv)
    flags = common_flags(args)
    results = {"command": " ".join(["python -m benchmarks.run"] + list(
        sys.argv[1:] if argv is None else argv))}
    if "transforms" in args.suites:
        results["transforms"] = transforms.main(
            flags + ([] if args.no_compile else ["--compile"]))
    if "steps" in args.suites:
        results["steps"] = steps.main(flags + (["--no-compile"] if args.no_compile else []))
    if "transforms" in results and "steps" in results:
        results["coupling_fraction_of_peak"] = coupling_fraction_of_peak(results)
        for row in results["coupling_fraction_of_peak"]:
            print(f"coupling networks, {row['shape']} fwd+bwd, {row['candidate']}: "
                  f"{row['tflops']:.3f} TFLOP/s = {100 * row['fraction']:.1f}% of the measured "
                  f"{row['peak_dtype']} matmul peak")
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1)
    print(f"results written to {args.out}")
    return results


if __name__ == "__main__":
    main()
