"""`fit` under torch.distributed: two CPU processes (gloo, loopback) against one."""

import os
import socket
import subprocess
import sys

import torch

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "distributed_worker.py")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(out, world, epochs, resume=False, actnorm=False):
    os.makedirs(out, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    args = [sys.executable, WORKER, str(out), str(world), str(free_port()), str(epochs)]
    args += ["--resume"] * resume + ["--actnorm"] * actnorm
    subprocess.run(args, check=True, timeout=240, env=env)
    return torch.load(os.path.join(out, f"world{world}-rank0.pt"), weights_only=False)


def assert_close(a, b, atol=1e-6):
    assert a.keys() == b.keys()
    for name in a:
        assert torch.allclose(a[name], b[name], atol=atol, rtol=0), name


def test_two_processes_match_one_and_resume_across_world_sizes(tmp_path):
    one_epoch = launch(tmp_path / "single1", 1, epochs=1)
    two_epochs = launch(tmp_path / "single2", 1, epochs=2)
    rank0 = launch(tmp_path / "double", 2, epochs=1)
    rank1 = torch.load(tmp_path / "double" / "world2-rank1.pt", weights_only=False)
    for name, value in rank0["state_dict"].items():  # the processes stay in sync
        assert torch.equal(value, rank1["state_dict"][name]), name
    # same global batch and seed: two processes with DDP take the steps one process takes
    assert_close(rank0["state_dict"], one_epoch["state_dict"])
    assert abs(rank0["history"][0]["train_nelbo"] - one_epoch["history"][0]["train_nelbo"]) < 1e-4
    assert (tmp_path / "double" / "run" / "checkpoint.pt").exists()
    # the 2-process checkpoint resumed in 1 process continues as the straight 1-process run
    resumed = launch(tmp_path / "double", 1, epochs=2, resume=True)
    assert_close(resumed["state_dict"], two_epochs["state_dict"])
    straight = two_epochs["history"][1]["train_nelbo"]
    assert abs(resumed["history"][1]["train_nelbo"] - straight) < 1e-4


def test_data_dependent_initialisation_is_the_same_in_every_process(tmp_path):
    # fit initialises the ActNorms on the first global batch in every process; initialised on
    # each process's half batch instead, the ranks' ActNorms differed by 0.55 and never met
    rank0 = launch(tmp_path / "double", 2, epochs=1, actnorm=True)
    rank1 = torch.load(tmp_path / "double" / "world2-rank1.pt", weights_only=False)
    for name, value in rank0["state_dict"].items():
        assert torch.equal(value, rank1["state_dict"][name]), name
    flags = [value for name, value in rank0["state_dict"].items()
             if name.endswith("initialized")]
    assert len(flags) == 2 and all(flags)
    # near the one-process run; not to 1e-6: the freshly normalised ActNorms' first gradients
    # are zero up to rounding, which Adam's first steps scale up to the learning rate
    one = launch(tmp_path / "single", 1, epochs=1, actnorm=True)
    assert_close(rank0["state_dict"], one["state_dict"], atol=0.02)
