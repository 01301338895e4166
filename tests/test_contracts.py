"""The explicit contracts between flowvae's parts (issue "Explicit contracts"): recorded
hyper-parameters, checkpoints of flowvae 0.3, the data-dependent-initialisation protocol,
fit's options as one dataclass, and the length of every function."""

import ast
import inspect
import os
import warnings

import pytest
import torch

from flowvae.models import MODELS, SRVAE, VAE, VAPNEV, FlowPriorVAE, SequentialVAE
from flowvae.nn.init import (
    DataDependentInit,
    data_init_modules,
    needs_data_init,
    normalize_convolutions,
)
from flowvae.train import CHECKPOINT, Callback, FitConfig, fit, initialize_on_data, load_model
from flowvae.train.checkpoint import read_checkpoint, write_checkpoint
from flowvae.transforms import ActNorm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAX_FUNCTION_LINES = 60
KNOWN_LONG: set = set()  # none: every function is at most MAX_FUNCTION_LINES

TINY = {  # one small instance of every model, arguments away from their defaults
    VAE: dict(shape=(1, 8, 8), latent_dim=3, hidden=8, beta=0.5, guide="ar1"),
    VAPNEV: dict(shape=(1, 8, 8), latent_dim=2, hidden=4, beta=0.25,
                 flow_kwargs=dict(hidden_channels=4, num_blocks=1)),
    FlowPriorVAE: dict(shape=(1, 8, 8), latent_shape=(2, 4, 4), hidden=4, growth=4,
                       num_layers=1, num_mixtures=2, beta=0.5),
    SRVAE: dict(shape=(1, 8, 8), latent_shape=(2, 4, 4), hidden=4, growth=4, num_layers=1,
                num_mixtures=2, residual=False),
    SequentialVAE: dict(shape=(1, 8, 8), steps=2, latent_dim=2, hidden=8, gate_init=0.5),
}


@pytest.mark.parametrize("cls", list(TINY), ids=lambda c: c.__name__)
def test_config_is_the_constructor_arguments_and_rebuilds_the_same_model(cls):
    model = cls(**TINY[cls])
    signature = inspect.signature(cls)
    expected = {name: p.default for name, p in signature.parameters.items()
                if p.kind is p.POSITIONAL_OR_KEYWORD and name != "name"}
    expected.update(TINY[cls])
    for name, value in TINY[cls].items():  # every given argument, as given (tuples)
        assert model.config[name] == value, name
    assert set(expected) <= set(model.config)
    rebuilt = cls(**model.config)
    assert rebuilt.config == model.config
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == \
        {k: v.shape for k, v in model.state_dict().items()}


def test_a_subclass_records_its_own_arguments_and_config_is_read_only():
    model = VAPNEV((1, 8, 8), latent_dim=2, hidden=4, beta=0.5, mmd_weight=0.1, name="n",
                   flow_kwargs=dict(hidden_channels=4, num_blocks=1))
    assert model.config["beta"] == 0.5 and model.config["mmd_weight"] == 0.1
    assert "name" not in model.config and "likelihood" not in model.config
    model.config["beta"] = 2.0  # a copy
    assert model.config["beta"] == 0.5
    with pytest.raises(AttributeError):
        model.config = {}


def test_every_registered_model_records_its_config():
    for cls in MODELS.values():
        assert "__init__" not in cls.__dict__ or hasattr(cls.__init__, "__wrapped__"), cls


def _tiny_run(tmp_path):
    torch.manual_seed(0)
    vae = VAE((1, 8, 8), latent_dim=2, hidden=8)
    data = torch.randint(0, 2, (16, 1, 8, 8), dtype=torch.uint8)
    fit(vae, data, epochs=1, batch_size=8, progress=False, out_dir=str(tmp_path))
    return vae, data, tmp_path / CHECKPOINT


def test_a_checkpoint_of_flowvae_0_3_loads_and_resumes(tmp_path):
    vae, data, path = _tiny_run(tmp_path)
    state = read_checkpoint(str(path))
    old = dict(state["config"])
    del old["mmd_weight"]  # 0.3 wrote the VAE's config by hand, mmd_weight only when used
    name, keys, *rest = state["rng"]["numpy"]  # and NumPy's state as an array
    state.update(config=old, flowvae_version="0.3.0",
                 rng=dict(state["rng"], numpy=(name, keys.numpy().astype("uint32"), *rest)))
    torch.save(state, path)  # 0.3's format: the state itself, no checksummed envelope
    loaded = load_model(str(path))
    assert loaded.config == vae.config
    for key, value in vae.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    history = fit(VAE((1, 8, 8), latent_dim=2, hidden=8), data, epochs=2, batch_size=8,
                  progress=False, out_dir=str(tmp_path), resume=True)
    assert [row["epoch"] for row in history] == [1, 2]


def test_a_checkpoint_flowvae_cannot_rebuild_is_refused_in_one_line(tmp_path):
    _, _, path = _tiny_run(tmp_path)
    state = read_checkpoint(str(path))
    state["config"] = dict(state["config"], encoder_depth=3)  # an argument VAE never had
    write_checkpoint(str(path), state)
    with pytest.raises(ValueError, match=r"does not fit this flowvae's VAE") as error:
        load_model(str(path))
    assert "\n" not in str(error.value)


class _NamedLikeAFlag(torch.nn.Module):
    """A buffer called ``initialized`` does not make a module data-initialised."""

    def __init__(self):
        super().__init__()
        self.register_buffer("initialized", torch.tensor(False))


class _Initialised(torch.nn.Module, DataDependentInit):
    def __init__(self):
        super().__init__()
        self.register_buffer("initialized", torch.tensor(False))


def test_data_dependent_initialisation_is_found_by_protocol_not_by_name():
    vae = VAE((1, 8, 8), latent_dim=2, hidden=8)
    vae.extra = _NamedLikeAFlag()
    assert data_init_modules(vae) == [] and not needs_data_init(vae)
    assert not initialize_on_data(vae, torch.zeros(2, 1, 8, 8, dtype=torch.uint8))
    vae.extra = _Initialised()
    assert data_init_modules(vae) == [vae.extra] and needs_data_init(vae)
    norm = ActNorm(3)
    assert data_init_modules(norm) == [norm]  # nflows' ActNorm, registered by flowvae.nn.init
    vapnev = VAPNEV((1, 8, 8), latent_dim=2, hidden=4,
                    flow_kwargs=dict(hidden_channels=4, num_blocks=1))
    flags = [m for m in data_init_modules(vapnev)]
    assert flags and all(isinstance(m, ActNorm) for m in flags)
    assert initialize_on_data(vapnev, torch.randint(0, 256, (4, 1, 8, 8), dtype=torch.uint8))
    assert not needs_data_init(vapnev)
    sr = SRVAE(**TINY[SRVAE])
    assert sr in data_init_modules(sr)


def test_fit_options_are_the_fields_of_fit_config():
    with pytest.raises(TypeError, match="epoch"):
        fit(VAE((1, 8, 8), latent_dim=2, hidden=8), torch.zeros(4, 1, 8, 8, dtype=torch.uint8),
            epoch=1)
    with pytest.raises(ValueError, match="optimizer must be one of"):
        FitConfig(optimizer="sgd")
    config = FitConfig(epochs=3, lr=0.5)
    assert FitConfig.of(config, {"lr": 0.1}) == FitConfig(epochs=3, lr=0.1)


def function_lengths(folder):
    """``(lines, "path:function")`` of every function in ``folder``, its docstring excluded."""
    found = []
    for dirpath, _, files in os.walk(folder):
        for file in files:
            if not file.endswith(".py"):
                continue
            path = os.path.join(dirpath, file)
            with open(path) as f:
                tree = ast.parse(f.read())
            for node in ast.walk(tree):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    first = node.body[0]
                    docstring = (isinstance(first, ast.Expr)
                                 and isinstance(first.value, ast.Constant)
                                 and isinstance(first.value.value, str))
                    lines = node.end_lineno - node.lineno + 1 - (
                        first.end_lineno - first.lineno + 1 if docstring else 0)
                    found.append((lines, f"{os.path.relpath(path, ROOT)}:{node.name}"))
    return sorted(found, reverse=True)


def test_no_function_in_flowvae_is_longer_than_a_screen():
    long = [(lines, where) for lines, where in function_lengths(os.path.join(ROOT, "flowvae"))
            if lines > MAX_FUNCTION_LINES and where not in KNOWN_LONG]
    assert not long, long


def test_function_lengths_count_lines_without_the_docstring(tmp_path):
    (tmp_path / "m.py").write_text('def f():\n    """One.\n\n    Two.\n    """\n    x = 1\n'
                                   '    return x\n\n\ndef g(a,\n      b):\n    return a\n')
    assert [n for n, _ in function_lengths(str(tmp_path))] == [3, 3]


def test_old_import_paths_warn_and_still_work():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        from flowvae.models import components

        guide = components.DiagonalNormalGuide
    assert guide is __import__("flowvae.parts", fromlist=["GUIDES"]).GUIDES["normal"]
    assert any(issubclass(w.category, DeprecationWarning) for w in caught)


def _flowvae_imports():
    """``{module: flowvae modules it imports}`` over the package's source: at the top level,
    under ``if TYPE_CHECKING:`` (type-only) and inside functions (lazy) alike."""
    graph = {}
    for dirpath, _, files in os.walk(os.path.join(ROOT, "flowvae")):
        for file in files:
            if not file.endswith(".py"):
                continue
            path = os.path.join(dirpath, file)
            name = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".").removesuffix(".__init__")
            with open(path) as f:
                nodes = list(ast.walk(ast.parse(f.read())))
            deps = {n.module for n in nodes if isinstance(n, ast.ImportFrom) and n.module}
            deps |= {a.name for n in nodes if isinstance(n, ast.Import) for a in n.names}
            graph[name] = {d for d in deps if d.startswith("flowvae") and d != name}
    return graph


def test_the_import_graph_sees_type_only_and_lazy_imports():
    """The cycle check below would miss a cycle closed by a type-only or a lazy import."""
    graph = _flowvae_imports()
    assert "flowvae.train.run" in graph["flowvae.train.callbacks"]  # under TYPE_CHECKING
    assert "flowvae.train" in graph["flowvae.cli"]  # inside a command


def test_no_import_cycles_and_the_lower_layers_never_import_models():
    graph = _flowvae_imports()
    for low in ("flowvae.transforms", "flowvae.distributions", "flowvae.parts", "flowvae.nn"):
        for module, deps in graph.items():
            if module.startswith(low):
                assert not {d for d in deps if d.startswith("flowvae.models")}, module
    state, cycles = {}, []

    def visit(module, path):
        state[module] = "open"
        for dep in graph.get(module, ()):
            if dep.startswith(module + ".") or dep not in graph:
                continue  # a package importing its own modules
            if state.get(dep) == "open":
                cycles.append(path[path.index(dep):] + [dep])
            elif dep not in state:
                visit(dep, path + [dep])
        state[module] = "done"

    for module in graph:
        if module not in state:
            visit(module, [module])
    assert not cycles, cycles


class _Gate(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(4, 4, 1)

    def forward(self, x):
        return x * torch.sigmoid(self.conv(x))


def test_normalize_convolutions_standardises_all_but_the_last_and_the_skipped():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), _Gate(), torch.nn.Conv2d(4, 4, 3),
                              torch.nn.ReLU(), torch.nn.Conv2d(4, 2, 1))
    x = torch.randn(64, 1, 10, 10) * 5 + 3
    gate, last = net[1].conv.weight.clone(), net[4].weight.clone()
    assert normalize_convolutions(lambda: net(x), [net], skip=(_Gate,)) == 2
    with torch.no_grad():
        for upto in (1, 3):  # the outputs of the two initialised convolutions
            out = net[:upto](x)
            torch.testing.assert_close(out.mean((0, 2, 3)), torch.zeros(4), atol=1e-5, rtol=0)
            torch.testing.assert_close(out.std((0, 2, 3), correction=0), torch.ones(4),
                                       atol=1e-4, rtol=0)
    assert torch.equal(net[1].conv.weight, gate) and torch.equal(net[4].weight, last)


class _Recorder(Callback):
    """A KL warm-up on the VAE's beta as a schedule, and a stop after ``stop_after`` epochs."""

    def __init__(self, warmup_steps, stop_after):
        self.warmup_steps, self.stop_after = warmup_steps, stop_after
        self.betas, self.losses, self.rows = [], [], []

    def on_step(self, run, loss, batch):
        self.betas.append(run.module.beta)  # the weight the step just used
        self.losses.append(loss)
        run.module.beta = min(1.0, (run.step + 1) / self.warmup_steps)  # the next step's

    def on_epoch(self, run, row):
        self.rows.append(dict(row))

    def should_stop(self, run, epoch):
        return epoch + 1 >= self.stop_after


def test_callbacks_see_every_step_and_epoch_and_can_schedule_and_stop():
    torch.manual_seed(0)
    vae = VAE((1, 8, 8), latent_dim=2, hidden=8, beta=0.25)
    data = torch.randint(0, 2, (32, 1, 8, 8), dtype=torch.uint8)
    recorder = _Recorder(warmup_steps=4, stop_after=2)
    history = fit(vae, data, epochs=5, batch_size=8, progress=False, callbacks=[recorder])
    assert [row["epoch"] for row in history] == [1, 2]  # stopped by the callback
    assert recorder.betas == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0, 1.0, 1.0]
    assert recorder.rows == history
    for row, losses in zip(history, (recorder.losses[:4], recorder.losses[4:])):
        assert row["train_nelbo"] == pytest.approx(sum(losses) / 4)  # equal batches of 8
