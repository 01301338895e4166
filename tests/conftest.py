"""Shared test harness: fixed seeds, a clean Pyro state per test, float64 on request, --device."""

import importlib.util
import os
import sys

import pyro
import pytest
import torch


def pytest_configure(config):
    # The tests' models are tiny: on a shared 2-core machine, intra-op threads cost more in
    # synchronisation than they gain (measured: the guide's training commands 57 s -> 6.6 s).
    torch.set_num_threads(1)


def pytest_addoption(parser):
    parser.addoption(
        "--device", default="cpu", help="torch device the tests run on (cpu, cuda, cuda:1, ...)"
    )


@pytest.fixture
def device(request):
    name = request.config.getoption("--device")
    if name.startswith("cuda") and not torch.cuda.is_available():
        pytest.skip("--device cuda asked for, but CUDA is not available")
    return torch.device(name)


@pytest.fixture(autouse=True)
def _clean_pyro_state():
    pyro.set_rng_seed(0)  # seeds torch, numpy and random
    pyro.clear_param_store()
    pyro.enable_validation(True)
    yield
    pyro.clear_param_store()


@pytest.fixture
def float64():
    """Run the test with float64 as torch's default dtype (restored afterwards)."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield torch.float64
    torch.set_default_dtype(old)


@pytest.fixture(scope="session")
def data_root():
    """The offline dataset folder (`FLOWVAE_DATA`); tests that need it skip when it is absent."""
    root = os.environ.get("FLOWVAE_DATA")
    if root is None:
        here = os.path.dirname(os.path.abspath(__file__))
        candidate = os.path.normpath(os.path.join(here, "..", "..", "shared", "data"))
        root = candidate if os.path.isdir(candidate) else None
    if root is None or not os.path.isdir(root):
        pytest.skip("offline datasets not found: set FLOWVAE_DATA to a folder holding MNIST/raw")
    return root


@pytest.fixture
def load_example(monkeypatch):
    """``load_example("vapnev")`` imports ``examples/vapnev.py`` as a module."""

    def load(name):
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        path = os.path.join(root, "examples", f"{name}.py")
        monkeypatch.syspath_prepend(os.path.dirname(path))  # the examples' shared _flags.py
        spec = importlib.util.spec_from_file_location(f"examples_{name}", path)
        module = importlib.util.module_from_spec(spec)
        monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look it up there
        spec.loader.exec_module(module)
        return module

    return load
