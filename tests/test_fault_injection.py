"""Kill ``flowvae train`` with SIGKILL inside its file writes, resume, and compare the run
folder with an uninterrupted run's, bit for bit (issue 21).

The kills are placed, not timed: ``FLOWVAE_TEST_KILL_AT=NAME:N:STAGE`` makes the N-th write of
file NAME kill the process half-way through its temporary file, with the temporary file
complete but not renamed, or right after the rename (:mod:`flowvae.train.rundir`). A kill
anywhere else (inside a training step, an evaluation) leaves the folder as the last of these
points does, so the chain below meets every state the folder can be left in: a half-written
checkpoint, a complete but unrenamed one, a new checkpoint whose metrics rows are not written,
half-written metrics files, a half-written ``run.json``.
"""

import csv
import io
import json
import os
import subprocess
import sys

import torch

from flowvae.train import CHECKPOINT, read_checkpoint
from flowvae.train.rundir import KILL_AT_ENV

FLAGS = ["train", "--model", "vae", "--likelihood", "bernoulli", "--latent-dim", "2",
         "--hidden", "8", "--epochs", "4", "--max-steps-per-epoch", "2", "--batch-size", "16",
         "--eval-images", "16", "--dataset", "digits", "--device", "cpu", "--no-progress",
         "--no-download", "--seed", "3"]
TIMING = ("seconds", "images_per_s")  # measured, not computed: they differ between runs

CHAIN = [  # (resume?, where the process is killed); each process goes on from the last
    (False, "metrics.jsonl:1:mid"),  # epoch 1 checkpointed, its metrics row half-written
    (True, "checkpoint.pt:1:mid"),  # epoch 2's checkpoint half-written
    (True, "checkpoint.pt:1:written"),  # epoch 2's checkpoint complete, not renamed
    (True, "metrics.csv:2:mid"),  # epoch 2 checkpointed and in metrics.jsonl, csv half
    (True, "checkpoint.pt:2:renamed"),  # epoch 4 checkpointed, its metrics rows not written
    (True, "run.json:1:mid"),  # trained, metrics rewritten; run.json half-written
]


def train(out, resume=False, kill_at=None):
    env = {**os.environ, "OMP_NUM_THREADS": "1", KILL_AT_ENV: kill_at or ""}
    argv = [sys.executable, "-m", "flowvae.cli", *FLAGS, "--out", str(out)]
    return subprocess.run(argv + (["--resume"] if resume else []), env=env,
                          capture_output=True, text=True, timeout=120)


def without_timing(history):
    return [{k: v for k, v in row.items() if k not in TIMING} for row in history]


def assert_same(a, b, where="checkpoint"):
    assert type(a) is type(b), where
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert list(a) == list(b), where
        for key in a:
            assert_same(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, torch.distributions.constraints.Constraint):  # equal by their fields
        assert vars(a) == vars(b), where
    else:
        assert a == b, where


def metrics(out):
    """The rows of metrics.jsonl and metrics.csv (none for a file not written yet)."""
    def text(name):
        return (out / name).read_text() if (out / name).exists() else ""

    rows = [json.loads(line) for line in text("metrics.jsonl").splitlines()]
    return rows, list(csv.DictReader(io.StringIO(text("metrics.csv"))))


def test_killed_and_resumed_runs_equal_the_uninterrupted_run_bit_for_bit(tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert train(straight).returncode == 0
    for resume, kill_at in CHAIN:
        done = train(killed, resume, kill_at)
        assert done.returncode == -9, (kill_at, done.stderr[-2000:])  # killed where placed
        state = read_checkpoint(str(killed / CHECKPOINT))  # never corrupt
        rows, table = metrics(killed)
        # the metrics never run ahead of the checkpoint; a half-written file is never seen
        assert rows == state["history"][: len(rows)] and len(rows) >= len(state["history"]) - 1
        assert [int(r["epoch"]) for r in table] == [r["epoch"] for r in rows[: len(table)]]
    done = train(killed, resume=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert not [name for name in os.listdir(killed) if name.endswith(".tmp")]

    a = read_checkpoint(str(straight / CHECKPOINT))
    b = read_checkpoint(str(killed / CHECKPOINT))
    assert [r["epoch"] for r in b["history"]] == [1, 2, 3, 4]
    for key in ("state_dict", "optim", "param_store", "rng", "epoch", "step", "config"):
        assert_same(a[key], b[key], key)
    assert without_timing(a["history"]) == without_timing(b["history"])  # floats: bit for bit
    rows_a, table_a = metrics(straight)
    rows_b, table_b = metrics(killed)
    assert rows_b == b["history"]  # metrics.jsonl is the checkpoint's history, exactly
    assert without_timing(rows_a) == without_timing(rows_b)
    assert without_timing(table_a) == without_timing(table_b)  # the CSV's text, per cell
    assert [float(r["train_nelbo"]) for r in table_b] == [r["train_nelbo"] for r in rows_b]
