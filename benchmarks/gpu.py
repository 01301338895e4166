"""Everything a lent GPU should check and measure, in one command of at most 9 minutes.

1. ``device_tests``: ``pytest tests/test_device.py`` (its CUDA half runs where CUDA is);
2. ``transforms``: ``benchmarks/transforms.py`` at batch 256 (MNIST 1x28x28 and 3x32x32),
   forward+backward of flowvae's ``ConditionalRealNVP`` eager, compiled and compiled with
   bfloat16 networks against the nflows-built flow (eager) and the plain-PyTorch reference,
   with the achieved TFLOP/s as a share of the card's bfloat16 matmul peak, measured here
   (an 8192^3 product);
3. ``vapnev``: VAPNEV on MNIST (padded to 32x32, the example's configuration) trained by
   :func:`flowvae.train.fit` for a fixed time (5 minutes), its images/s and peak memory, then
   its test bits/dim by IWAE (K=100) on the first 1000 test images;
4. ``summary.json`` and ``summary.md`` under ``--out``, with the other parts' logs.

Each part's failure is recorded and the next part still runs. The transform benchmark runs in
one subprocess per shape, stopped when it would leave less than the training time (and 75 s for
the evaluation) in the 9 minutes; the training time is cut if the parts before it overran.
``--dry-run`` runs the same code on the CPU at tiny sizes (synthetic images, no compilation,
seconds): the test suite runs it. docs/benchmarks.md gives the device call (wheels, data).

Usage::

    python -m benchmarks.gpu --out gpu_results --data .gpu_data
    python -m benchmarks.gpu --out /tmp/dry --dry-run
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from typing import Dict, List, Optional, Sequence

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHAPES = ("mnist", "cifar")


@dataclass(frozen=True)
class Config:
    out: str
    data: Optional[str]
    device: str
    dry_run: bool
    budget_s: float
    train_s: float
    batch_size: int
    train_batch_size: int
    iwae_k: int
    eval_images: int
    peak_n: int


def parse_args(argv: Optional[Sequence[str]] = None) -> Config:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="folder for summary.json, summary.md and logs")
    p.add_argument("--data", default=None,
                   help="dataset root holding MNIST/raw/*-ubyte[.gz] (default: FLOWVAE_DATA)")
    p.add_argument("--device", default="cuda")
    p.add_argument("--dry-run", action="store_true",
                   help="the same code on the CPU at tiny sizes, synthetic data (seconds)")
    p.add_argument("--budget-minutes", type=float, default=9.0)
    p.add_argument("--train-minutes", type=float, default=5.0)
    p.add_argument("--batch-size", type=int, default=256, help="of the transform benchmark")
    p.add_argument("--train-batch-size", type=int, default=64, help="of VAPNEV's training")
    args = p.parse_args(argv)
    dry = args.dry_run
    return Config(
        out=args.out, data=args.data or os.environ.get("FLOWVAE_DATA"),
        device="cpu" if dry else args.device, dry_run=dry,
        budget_s=60 * args.budget_minutes, train_s=2.0 if dry else 60 * args.train_minutes,
        batch_size=4 if dry else args.batch_size,
        train_batch_size=8 if dry else args.train_batch_size,
        iwae_k=4 if dry else 100, eval_images=8 if dry else 1000, peak_n=256 if dry else 8192,
    )


def log(message: str) -> None:
    print(f"[gpu {time.strftime('%H:%M:%S')}] {message}", flush=True)


def run_logged(command: List[str], log_path: str, timeout: float) -> Dict[str, object]:
    """Run ``command`` in the repository root, its output to ``log_path``; never raises."""
    started = time.time()
    with open(log_path, "w") as out:
        try:
            rc = subprocess.run(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                timeout=max(timeout, 1)).returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
    with open(log_path) as f:
        tail = f.read().strip().splitlines()[-1:] or [""]
    return {"command": " ".join(command), "rc": rc, "seconds": time.time() - started,
            "last_line": tail[0]}


def device_tests(cfg: Config) -> Dict[str, object]:
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs",
               "tests/test_device.py"]
    if cfg.dry_run:  # one test: the suite itself runs this file
        command += ["-k", "a_fresh_actnorm"]
    return run_logged(command, os.path.join(cfg.out, "device_tests.log"), timeout=240)


def matmul_peak(cfg: Config) -> float:
    """FLOP/s of an ``n x n x n`` bfloat16 product (best of 10 after 3 warm-ups)."""
    from benchmarks.steps import matmul_peak as measure

    return measure(torch.device(cfg.device), torch.bfloat16, cfg.peak_n)


def transforms(cfg: Config, peak: float, deadline: float) -> Dict[str, object]:
    """One subprocess per shape (MNIST first), each stopped at ``deadline`` (``time.time()``),
    so that a slow compilation costs one shape's results, not both."""
    result: Dict[str, object] = {"shapes": {}, "rows": []}
    for shape in ("mnist",) if cfg.dry_run else SHAPES:
        path = os.path.join(cfg.out, f"transforms_{shape}.json")
        command = [sys.executable, "-m", "benchmarks.transforms", "--device", cfg.device,
                   "--batch-size", str(cfg.batch_size), "--shapes", shape,
                   "--modes", "fwd+bwd", "--no-memory", "--json", path]
        command += (["--quick", "--repeats", "1", "--warmup", "1"] if cfg.dry_run
                    else ["--compile", "--repeats", "10", "--warmup", "3"])
        run = run_logged(command, os.path.join(cfg.out, f"transforms_{shape}.log"),
                         deadline - time.time())
        result["shapes"][shape] = run
        if run["rc"] == 0 and os.path.exists(path):
            with open(path) as f:
                result["rows"] += _rows(json.load(f), peak)
    return result


def _rows(report: dict, peak: float) -> List[Dict[str, object]]:
    rows = []
    for shape, per_shape in report["shapes"].items():
        timings = per_shape["timings"]["fwd+bwd"]
        nflows_ms = timings["nflows"]["median_ms"]
        for name, st in timings.items():
            rows.append({"shape": shape, "shape_dims": per_shape["shape"], "candidate": name,
                         "median_ms": st["median_ms"],
                         "params": per_shape["candidates"][name]["params"],
                         "tflops": st["achieved_tflops"],
                         "share_of_bf16_peak": st["achieved_tflops"] * 1e12 / peak,
                         "speed_vs_nflows": nflows_ms / st["median_ms"]})
    return rows


def mnist(cfg: Config):
    """Train and test images ``(N, 1, 32, 32)`` uint8: MNIST padded, or tiny synthetic ones."""
    if cfg.dry_run:
        gen = torch.Generator().manual_seed(0)
        return (torch.randint(0, 256, (32, 1, 16, 16), dtype=torch.uint8, generator=gen),
                torch.randint(0, 256, (8, 1, 16, 16), dtype=torch.uint8, generator=gen))
    from flowvae.data import load_dataset

    train, test = (load_dataset("mnist", split, root=cfg.data, download=False, pad_to=32)
                   for split in ("train", "test"))
    return train.images, test.images[: cfg.eval_images]


def vapnev(cfg: Config, train_s: float) -> Dict[str, object]:
    from flowvae.infer import bits_per_dim, iwae_log_likelihood
    from flowvae.models import VAPNEV
    from flowvae.train import fit

    train, test = mnist(cfg)
    torch.manual_seed(0)
    size = dict(latent_dim=2, hidden=4, flow_kwargs=dict(hidden_channels=4, num_blocks=1)) \
        if cfg.dry_run else dict(latent_dim=16, hidden=16,
                                 flow_kwargs=dict(hidden_channels=32, num_blocks=1))
    model = VAPNEV(tuple(train.shape[1:]), **size)  # examples/vapnev.py's defaults
    started = time.time()
    with tempfile.TemporaryDirectory() as run_dir:  # checkpoints stay out of --out
        history = fit(model, train, epochs=10_000, batch_size=cfg.train_batch_size,
                      device=cfg.device, out_dir=run_dir, progress=False, time_limit=train_s,
                      max_steps_per_epoch=2 if cfg.dry_run else 200)
    trained_s = time.time() - started
    seconds = sum(row["seconds"] for row in history)
    images = sum(row["images_per_s"] * row["seconds"] for row in history)
    model.eval()
    started = time.time()
    log_px = []
    for start in range(0, len(test), 100):
        x = model.preprocess(test[start : start + 100].to(cfg.device))
        log_px.append(iwae_log_likelihood(model.model, model.guide, x, num_samples=cfg.iwae_k,
                                          chunk_size=min(cfg.iwae_k, 50)).cpu())
    bpd = bits_per_dim(torch.cat(log_px).mean().item(), model.shape, not model.p_x.discrete)
    return {
        "config": {**size, "shape": list(model.shape), "batch_size": cfg.train_batch_size,
                   "steps_per_epoch": 2 if cfg.dry_run else 200, "time_limit_s": train_s},
        "parameters": sum(p.numel() for p in model.parameters()),
        "steps": history[-1]["step"], "images": int(round(images)), "train_s": trained_s,
        "images_per_s": images / seconds,
        "peak_memory_gib": max((row["peak_memory_gib"] for row in history
                                if "peak_memory_gib" in row), default=None),
        "final_train_bpd": history[-1]["train_bpd"],
        "test_bpd_iwae": bpd, "iwae_k": cfg.iwae_k, "test_images": len(test),
        "eval_s": time.time() - started,
    }


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [f"# GPU run ({report['date']})", "", f"`{report['command']}`", "",
             f"{m.get('gpu', m['device'])}, torch {m['torch']}, {m['cpu_count']} CPUs; "
             f"bf16 matmul peak {report['bf16_peak_tflops']:.0f} TFLOP/s "
             f"(n={report['config']['peak_n']}); {report['wall_s']:.0f} s in all.", ""]
    tests = report["device_tests"]
    lines += [f"**Device tests:** rc {tests.get('rc')}, {tests.get('last_line')}", ""]
    rows = report["transforms"]["rows"]
    lines += [f"**Transforms, fwd+bwd, batch {report['config']['batch_size']}:**", ""]
    if rows:
        lines += ["| shape | candidate | params | median ms | TFLOP/s | share of bf16 peak | "
                  "speed vs nflows |", "|---|---|---|---|---|---|---|"]
        lines += [f"| {r['shape']} {'x'.join(map(str, r['shape_dims']))} | {r['candidate']} | "
                  f"{r['params']:,} | {r['median_ms']:.2f} | {r['tflops']:.2f} | "
                  f"{100 * r['share_of_bf16_peak']:.1f}% | {r['speed_vs_nflows']:.2f}x |"
                  for r in rows]
    else:
        lines.append(f"not measured: {report['transforms']['shapes']}")
    v = report["vapnev"]
    lines += ["", "**VAPNEV on MNIST:**", ""]
    if "test_bpd_iwae" in v:
        lines.append(
            f"{v['steps']} steps of batch {v['config']['batch_size']} in {v['train_s']:.0f} s "
            f"(limit {v['config']['time_limit_s']:.0f} s): {v['images_per_s']:.0f} images/s, "
            f"peak memory {_gib(v['peak_memory_gib'])}; train bits/dim "
            f"{v['final_train_bpd']:.3f}; test bits/dim {v['test_bpd_iwae']:.3f} (IWAE "
            f"K={v['iwae_k']}, {v['test_images']} images, {v['eval_s']:.0f} s).")
    else:
        lines.append(f"not measured: {v}")
    return "\n".join(lines) + "\n"


def _gib(value: Optional[float]) -> str:
    return "n/a (not CUDA)" if value is None else f"{value:.2f} GiB"


def main(argv: Optional[Sequence[str]] = None) -> dict:
    from benchmarks.harness import machine_info

    cfg = parse_args(argv)
    os.makedirs(cfg.out, exist_ok=True)
    started = time.time()
    report: dict = {"command": " ".join(["python -m benchmarks.gpu"] + list(
        sys.argv[1:] if argv is None else argv)), "config": asdict(cfg),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": machine_info(
            torch.device(cfg.device))}
    log("device tests")
    report["device_tests"] = device_tests(cfg)
    log(f"device tests: {report['device_tests']['last_line']}")
    peak = matmul_peak(cfg)
    report["bf16_peak_tflops"] = peak / 1e12
    log(f"bf16 matmul peak {peak / 1e12:.1f} TFLOP/s; transform benchmark")
    eval_reserve = 10 if cfg.dry_run else 75  # IWAE and the last epoch's overrun
    deadline = started + cfg.budget_s - cfg.train_s - eval_reserve
    report["transforms"] = transforms(cfg, peak, deadline)
    log(f"transforms: {[r['rc'] for r in report['transforms']['shapes'].values()]}; VAPNEV")
    train_s = min(cfg.train_s, cfg.budget_s - (time.time() - started) - eval_reserve)
    try:
        report["vapnev"] = vapnev(cfg, train_s)
    except Exception as err:  # keep what the other parts measured
        report["vapnev"] = {"error": f"{type(err).__name__}: {err}"}
    report["wall_s"] = time.time() - started
    with open(os.path.join(cfg.out, "summary.json"), "w") as f:
        json.dump(report, f, indent=1)
    with open(os.path.join(cfg.out, "summary.md"), "w") as f:
        f.write(markdown(report))
    log(f"done in {report['wall_s']:.0f} s: {cfg.out}/summary.md")
    print(markdown(report))
    return report


if __name__ == "__main__":
    main()
