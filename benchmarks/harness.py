"""The measuring harness shared by the benchmark scripts (``transforms.py``, ``steps.py``,
``gpu.py``): FLOP counting, device synchronisation, interleaved timing, peak memory (device or
resident set), the machine's description and the summaries of timing samples."""

from __future__ import annotations

import ctypes
import importlib.metadata
import os
import platform
import statistics
import subprocess
import sys
import time
from typing import Callable, Dict, List

import torch
from torch.utils.flop_counter import FlopCounterMode


def count_flops(run: Callable[[], None]) -> int:
    """Matmul and convolution FLOPs of one call, forward and backward
    (``torch.utils.flop_counter``)."""
    counter = FlopCounterMode(display=False)
    with counter:
        run()
    return counter.get_total_flops()


def synchronizer(device: torch.device) -> Callable[[], None]:
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def time_interleaved(candidates, runs, modes, repeats, sync) -> Dict[str, Dict[str, List[float]]]:
    """Seconds per call; each repeat visits every (mode, candidate) once, order rotated."""
    times: Dict[str, Dict[str, List[float]]] = {m: {c.name: [] for c in candidates} for m in modes}
    for r in range(repeats):
        log(f"repeat {r + 1}/{repeats}")
        order = candidates[r % len(candidates):] + candidates[:r % len(candidates)]
        for mode in modes:
            for cand in order:
                run = runs[mode][cand.name]
                sync()
                start = time.perf_counter()
                run()
                sync()
                times[mode][cand.name].append(time.perf_counter() - start)
    return times


def _status_kib(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def _reset_peak_rss() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)


def peak_bytes(run: Callable[[], None], device: torch.device) -> int:
    """Peak memory of one call above what was in use just before it.

    CUDA: ``torch.cuda.max_memory_allocated`` (tensors only). CPU: growth of the process's
    peak resident set (``VmHWM``, reset through ``/proc/self/clear_refs``), which counts every
    allocation touched (tensors, oneDNN scratch space, allocator slack)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        run()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    _reset_peak_rss()
    before = _status_kib("VmRSS")
    run()
    return (_status_kib("VmHWM") - before) * 1024


def rss_follows_live_memory() -> ctypes.CDLL:
    """Make glibc hand every freed block of 64 KiB or more back to the system
    (``mallopt(M_MMAP_THRESHOLD)``, ``mallopt(M_TRIM_THRESHOLD)``), so that the resident set
    follows live memory rather than the allocator's cache; returns libc (for
    ``malloc_trim``). A RuntimeError where that cannot be done (not Linux with glibc)."""
    if not os.access("/proc/self/clear_refs", os.W_OK):
        raise RuntimeError("peak RSS needs Linux's /proc/self/clear_refs")
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError as error:
        raise RuntimeError(f"peak RSS needs glibc: {error}") from error
    m_trim_threshold, m_mmap_threshold = -1, -3
    if not (libc.mallopt(m_mmap_threshold, 64 * 1024) and libc.mallopt(m_trim_threshold, 0)):
        raise RuntimeError("mallopt failed")
    return libc


def machine_info(device: torch.device) -> Dict[str, object]:
    cpu = platform.processor() or "unknown"
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        cpu = next(line.split(":", 1)[1].strip() for line in lscpu.splitlines()
                   if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        pass
    info = {
        "cpu_model": cpu,
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "torch": torch.__version__,
        "nflows": importlib.metadata.version("nflows"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "mkldnn": torch.backends.mkldnn.is_available(),
        "device": str(device),
        "load_average_start": os.getloadavg(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def quartiles(values: List[float]) -> List[float]:
    if len(values) == 1:
        return [values[0]] * 3
    return statistics.quantiles(values, n=4, method="inclusive")


def summarise(samples: List[float]) -> Dict[str, float]:
    q = quartiles(samples)
    return {"median_ms": 1e3 * statistics.median(samples), "q25_ms": 1e3 * q[0],
            "q75_ms": 1e3 * q[2], "min_ms": 1e3 * min(samples)}


def paired_ratio(samples: List[float], reference: List[float]) -> Dict[str, float]:
    """Median and quartiles of the per-repeat ratios (same repeat = similar machine load)."""
    ratios = [a / b for a, b in zip(samples, reference)]
    q = quartiles(ratios)
    return {"median": statistics.median(ratios), "q25": q[0], "q75": q[2]}
