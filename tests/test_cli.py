"""The ``flowvae`` command line, run in-process on tiny models and the bundled ``digits``."""

import json
import os
import shutil
import subprocess
import sys
from importlib.metadata import entry_points

import pytest
import torch
from PIL import Image

from flowvae.cli import build_parser, main

TINY_VAE = ["--model", "vae", "--likelihood", "bernoulli", "--latent-dim", "2", "--hidden", "16",
            "--epochs", "1", "--max-steps-per-epoch", "3"]
TINY_VAPNEV = ["--model", "vapnev", "--latent-dim", "2", "--hidden", "4", "--flow-channels", "4",
               "--num-blocks", "1", "--epochs", "1", "--max-steps-per-epoch", "2",
               "--batch-size", "16"]
COMMON = ["--dataset", "digits", "--device", "cpu", "--no-progress", "--no-download"]
DIGITS_SIDE, DIGITS_TEST = 8, 297


def exit_code(argv, capsys, stream="err"):
    """Run ``main(argv)`` expecting an exit; returns the code and what it wrote to ``stream``."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    return exit_info.value.code, getattr(capsys.readouterr(), stream)


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("vae")
    assert main(["train", *TINY_VAE, *COMMON, "--out", str(out)]) == 0
    return out


def test_train_writes_checkpoint_metrics_and_run_json(vae_run):
    assert (vae_run / "checkpoint.pt").is_file() and (vae_run / "metrics.csv").is_file()
    rows = [json.loads(line) for line in (vae_run / "metrics.jsonl").read_text().splitlines()]
    assert [(row["epoch"], row["step"]) for row in rows] == [(1, 3)]
    assert "test_nelbo" in rows[0]
    run = json.loads((vae_run / "run.json").read_text())
    assert run["dataset"] == "digits" and run["pad_to"] is None and run["latent_dim"] == 2


def test_evaluate_iwae_is_no_worse_than_the_elbo(vae_run, tmp_path, capsys):
    capsys.readouterr()
    report = tmp_path / "eval.json"
    assert main(["evaluate", str(vae_run / "checkpoint.pt"), "--iwae", "5", "--chunk-size", "2",
                 "--device", "cpu", "--json", str(report)]) == 0
    out = capsys.readouterr().out
    for label in ("-ELBO (nats)", "bits/dim (ELBO)", "IWAE K=5 (nats)", "bits/dim (IWAE K=5)"):
        assert label in out
    numbers = json.loads(report.read_text())
    assert numbers["dataset"] == "digits" and numbers["num_images"] == DIGITS_TEST
    assert f"{numbers['nelbo']:.2f}" in out and f"{numbers['iwae_nll']:.2f}" in out
    assert 0 < numbers["iwae_nll"] <= numbers["nelbo"] + 0.01 * abs(numbers["nelbo"])
    # Bernoulli pixels: bits/dim is the mass in bits over the 64 dims
    assert numbers["bpd"] == pytest.approx(numbers["nelbo"] / (DIGITS_SIDE**2 * 0.6931471805599453))


def test_evaluate_needs_a_dataset_without_run_json(vae_run, tmp_path, capsys):
    lone = tmp_path / "lone.pt"
    shutil.copy(vae_run / "checkpoint.pt", lone)
    code, err = exit_code(["evaluate", str(lone), "--device", "cpu"], capsys)
    assert code == 2 and "--dataset" in err and "Traceback" not in err
    assert main(["evaluate", str(lone), "--dataset", "digits", "--num-images", "20",
                 "--device", "cpu"]) == 0
    assert "| images" in capsys.readouterr().out


def test_sample_writes_a_png_grid(vae_run, tmp_path):
    png = tmp_path / "grid" / "samples.png"
    assert main(["sample", str(vae_run), "--n", "10", "--nrow", "4", "--temperature", "0.8",
                 "-o", str(png), "--device", "cpu", "--seed", "1"]) == 0
    grid = (4 * (DIGITS_SIDE + 2) + 2, 3 * (DIGITS_SIDE + 2) + 2)  # make_grid, padding 2
    scale = 10  # the smallest whole factor that makes the grid at least 400 px wide
    with Image.open(png) as image:  # a title line above the enlarged grid
        assert image.width == grid[0] * scale and image.height > grid[1] * scale


def test_resume_continues_and_refuses_another_model(vae_run, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(vae_run, out)
    flags = [*TINY_VAE, *COMMON, "--out", str(out), "--resume"]
    assert main(["train", *flags[:-1], "--epochs", "2", "--resume"]) == 0
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2
    run_before = (out / "run.json").read_text()
    code, err = exit_code(["train", *flags, "--epochs", "3", "--latent-dim", "3"], capsys)
    assert code == 2 and "--resume" in err and (out / "run.json").read_text() == run_before


def test_train_and_evaluate_vapnev(tmp_path, capsys):
    assert main(["train", *TINY_VAPNEV, *COMMON, "--dequantization", "variational",
                 "--out", str(tmp_path)]) == 0
    assert (tmp_path / "checkpoint.pt").is_file() and (tmp_path / "metrics.jsonl").is_file()
    capsys.readouterr()
    report = tmp_path / "eval.json"
    assert main(["evaluate", str(tmp_path), "--iwae", "2", "--num-images", "16",
                 "--device", "cpu", "--json", str(report)]) == 0
    assert "VAPNEV" in capsys.readouterr().out
    numbers = json.loads(report.read_text())
    assert numbers["num_images"] == 16 and numbers["bpd"] > 0 and numbers["iwae_bpd"] > 0


@pytest.mark.parametrize("command", ["evaluate", "sample"])
def test_missing_checkpoint(tmp_path, capsys, command):
    missing = tmp_path / "nowhere" / "checkpoint.pt"
    code, err = exit_code([command, str(missing), "--device", "cpu"], capsys)
    assert code == 2 and str(missing) in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize("content", ["garbage", "tensor", "dict"])
@pytest.mark.parametrize("command", ["evaluate", "sample"])
def test_not_a_checkpoint(tmp_path, capsys, command, content):
    path = tmp_path / "file.pt"
    if content == "garbage":
        path.write_bytes(b"\x00 this is not a checkpoint \xff" * 10)
    else:
        torch.save(torch.zeros(3) if content == "tensor" else {"weights": 1}, path)
    code, err = exit_code([command, str(path), "--device", "cpu"], capsys)
    assert code == 2 and "file.pt" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_unknown_dataset(capsys):
    code, err = exit_code(["train", "--dataset", "imagenet"], capsys)
    assert code == 2 and "unknown dataset 'imagenet'" in err and "digits" in err


def test_missing_dataset_shows_where_it_looked(tmp_path, capsys):
    empty = tmp_path / "data"
    code, err = exit_code(["train", *TINY_VAE, "--dataset", "mnist", "--data-dir", str(empty),
                           "--no-download", "--out", str(tmp_path / "run")], capsys)
    assert code == 2 and "'mnist'" in err and "not found" in err and str(empty) in err
    assert "Traceback" not in err


@pytest.mark.parametrize("flags, named", [
    (["--model", "vapnev", "--likelihood", "gaussian"], "--likelihood"),
    (["--model", "vae", "--flow-channels", "4"], "--flow-channels"),
    (["--likelihood", "bernoulli", "--dequantization", "variational"], "--dequantization"),
    (["--epochs", "0"], "--epochs"),
])
def test_flags_that_do_not_apply(tmp_path, capsys, flags, named):
    code, err = exit_code(["train", *flags, "--out", str(tmp_path)], capsys)
    assert code == 2 and named in err


def _subcommands():
    parser = build_parser()
    (commands,) = [a for a in parser._actions if a.dest == "command"]
    return parser, commands.choices


def test_help_documents_every_flag(capsys):
    parser, subparsers = _subcommands()
    for argv, sub in [([], parser), *(([name], p) for name, p in subparsers.items())]:
        code, text = exit_code([*argv, "--help"], capsys, stream="out")
        assert code == 0 and text.startswith("usage: flowvae")
        for action in sub._actions:
            assert action.help, f"{action.option_strings or action.dest} has no help text"
            for option in action.option_strings:
                assert option in text
    expected = {"--model", "--dataset", "--epochs", "--batch-size", "--lr", "--latent-dim",
                "--hidden", "--likelihood", "--guide", "--prior", "--flow-channels",
                "--num-blocks", "--checkerboard", "--dequantization", "--optimizer",
                "--clip-norm", "--lr-decay", "--particles", "--compile", "--precision",
                "--time-limit",
                "--max-steps-per-epoch", "--out", "--resume", "--device", "--data-dir", "--seed",
                "--no-progress", "--pad-to"}
    train_flags = {o for a in subparsers["train"]._actions for o in a.option_strings}
    assert expected <= train_flags


def test_entry_points(tmp_path):
    (script,) = [e for e in entry_points(group="console_scripts") if e.name == "flowvae"]
    assert script.value == "flowvae.cli:main" and script.load() is main
    done = subprocess.run([sys.executable, "-m", "flowvae", "--help"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: flowvae") and "train" in done.stdout


# ---------------------------------------------------------------------------- contracts
def test_the_cheap_choices_match_the_library():
    import inspect

    from flowvae import choices
    from flowvae.data import DATASETS, ENV_VAR
    from flowvae.models import VAE, VAPNEV
    from flowvae.models.vae import NETWORKS
    from flowvae.parts import DEQUANTIZATIONS, GUIDES, LIKELIHOODS, PRIORS
    from flowvae.train import ELBOS, OPTIMIZERS, PRECISIONS
    from flowvae.train.config import ELBO_NAMES, OPTIMIZER_NAMES
    from flowvae.transforms import ConditionalRealNVP
    from flowvae.transforms.coupling import CHECKERBOARDS

    assert choices.GUIDE_NAMES == tuple(GUIDES) and choices.PRIOR_NAMES == tuple(PRIORS)
    assert choices.likelihood_names() == tuple(sorted(LIKELIHOODS))
    for name, cls in LIKELIHOODS.items():  # a file name.py registers the likelihood name
        assert cls.__module__ == f"flowvae.parts.likelihoods.{name}", name
    assert choices.NETWORKS == NETWORKS and choices.DEQUANTIZATIONS == DEQUANTIZATIONS
    assert choices.CHECKERBOARDS == CHECKERBOARDS
    assert choices.DATASET_NAMES == tuple(DATASETS) and choices.DATA_ENV_VAR == ENV_VAR
    assert OPTIMIZER_NAMES == tuple(OPTIMIZERS) and ELBO_NAMES == tuple(ELBOS)
    assert PRECISIONS == ("float32", "bf16")
    from flowvae.recipes import RECIPES

    assert choices.MODEL_NAMES == tuple(RECIPES)
    for model, cls in (("vae", VAE), ("vapnev", VAPNEV)):
        parameters = inspect.signature(cls).parameters
        for name, value in choices.MODEL_DEFAULTS[model].items():
            default = parameters[name].default if name in parameters else (
                inspect.signature(VAE).parameters[name].default)
            assert default == value, (model, name)
    flow = inspect.signature(ConditionalRealNVP).parameters
    assert {k: flow[k].default for k in choices.FLOW_DEFAULTS} == choices.FLOW_DEFAULTS


def test_help_imports_neither_torch_nor_pyro():
    code = ("import sys\nfrom flowvae.cli import build_parser\nbuild_parser()\n"
            "assert not {'torch', 'pyro'} & set(sys.modules), sorted(sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr


def test_every_registered_likelihood_is_a_choice():
    from flowvae.parts import LIKELIHOODS

    _, subparsers = _subcommands()
    (action,) = [a for a in subparsers["train"]._actions if a.dest == "likelihood"]
    assert set(action.choices) == set(LIKELIHOODS) and "categorical" in action.choices


def test_run_json_records_the_values_used(tmp_path):
    out = tmp_path / "vapnev"
    assert main(["train", *TINY_VAPNEV, *COMMON, "--out", str(out)]) == 0
    run = json.loads((out / "run.json").read_text())
    assert run["latent_dim"] == 2 and run["hidden"] == 4 and run["hidden_channels"] == 4
    assert run["likelihood"] == "flow" and run["guide"] == "normal" and run["prior"] == "normal"
    assert run["checkerboard"] == "masked" and run["dequantization"] == "uniform"
    assert run["device"] == "cpu" and run["out"] == str(out) and run["progress"] is False
    assert run["model_config"]["flow_kwargs"] == {"hidden_channels": 4, "num_blocks": 1}
    unused = {"network", "pad_to", "clip_norm", "time_limit"}  # no such option / not set
    assert [k for k, v in run.items() if v is None and k not in unused] == []


def test_train_with_the_categorical_likelihood_and_evaluate_prints_the_diagnostics(
        tmp_path, capsys):
    out = tmp_path / "categorical"
    flags = ["--model", "vae", "--likelihood", "categorical", "--latent-dim", "2", "--hidden",
             "8", "--epochs", "1", "--max-steps-per-epoch", "2"]
    assert main(["train", *flags, *COMMON, "--out", str(out)]) == 0
    capsys.readouterr()
    report = tmp_path / "eval.json"
    assert main(["evaluate", str(out), "--num-images", "40", "--device", "cpu",
                 "--json", str(report)]) == 0
    text = capsys.readouterr().out
    numbers = json.loads(report.read_text())
    for label, key in (("rate (nats)", "rate"), ("distortion (nats)", "distortion")):
        assert f"| {label}" in text and f"{numbers[key]:.2f}" in text
    (row,) = [line for line in text.splitlines() if line.startswith("| active units (z)")]
    assert row.split("|")[2].strip() == str(numbers["active_units_z"])
    assert numbers["nelbo"] == pytest.approx(numbers["rate"] + numbers["distortion"])
    assert 0 <= numbers["active_units_z"] <= 2
    # a near-uniform categorical model: close to 8 bits/dim after two steps
    assert 7 < numbers["bpd"] < 9


def test_the_objective_flags_build_free_bits_and_kl_warmup(tmp_path, capsys):
    from flowvae.cli import TrainConfig
    from flowvae.infer import GeneralizedELBO
    from flowvae.train import FitConfig

    assert TrainConfig(model="vae").objective() == "trace"
    assert TrainConfig(model="vapnev", free_bits=0.0).objective() == "trace"
    vapnev = TrainConfig(model="vapnev").objective()  # its latent collapses on the plain ELBO
    assert isinstance(vapnev, GeneralizedELBO)
    assert (vapnev.free_bits, vapnev.free_bits_group, vapnev.warmup_steps) == (1.0, "dimension", 0)
    warm = TrainConfig(model="vae", kl_warmup=50, free_bits_group="site",
                       fit=FitConfig(elbo="meanfield")).objective()
    assert (warm.free_bits, warm.warmup_steps, warm.analytic_kl) == (0.0, 50, True)
    assert main(["train", *TINY_VAPNEV, *COMMON, "--kl-warmup", "7", "--out",
                 str(tmp_path)]) == 0
    assert "objective free bits 1 nats per dimension, KL warm-up over 7 steps" in \
        capsys.readouterr().out
    run = json.loads((tmp_path / "run.json").read_text())
    assert (run["free_bits"], run["kl_warmup"]) == (1.0, 7)
    code, err = exit_code(["train", *TINY_VAPNEV, *COMMON, "--elbo", "jit", "--out",
                           str(tmp_path / "jit")], capsys)
    assert code == 2 and "--free-bits 0 for --elbo jit" in err


# ---------------------------------------------------------------------------- bad flag values
def _one_line_error(argv, capsys):
    """``main(argv)``'s exit status and its stderr, which must be one line."""
    code, err = exit_code(argv, capsys)
    assert err.count("\n") == 1 and err.startswith("flowvae"), err
    return code, err


@pytest.mark.parametrize("flags, says", [
    (["--lr", "inf"], "--lr: must be a finite number, got inf"),
    (["--lr", "nan"], "--lr: must be > 0, got nan"),
    (["--clip-norm", "inf"], "--clip-norm: must be a finite number, got inf"),
    (["--lr-decay", "inf"], "--lr-decay: must be a finite number"),
    (["--time-limit", "inf"], "--time-limit: must be a finite number, got inf"),
    (["--seed", "-1"], "--seed: must be >= 0, got -1"),
    (["--seed", str(2**31)], "--seed: must be < 2147483648"),
    (["--free-bits", "inf"], "--free-bits: must be a finite number, got inf"),
    (["--free-bits", "-1"], "--free-bits: must be >= 0, got -1.0"),
    (["--epochs", "two"], "--epochs: 'two' is not an integer"),
    (["--model", "nonsense"], "--model: invalid choice"),
])
def test_train_refuses_a_bad_number_in_one_line_before_writing(tmp_path, capsys, flags, says):
    out = tmp_path / "run"
    code, err = _one_line_error(["train", *TINY_VAE, *COMMON, *flags, "--out", str(out)],
                                capsys)
    assert code == 2 and says in err
    assert not out.exists()


def test_the_corrected_rerun_into_the_same_out_trains(tmp_path, capsys):
    out = tmp_path / "run"
    code, _ = _one_line_error(["train", *TINY_VAE, *COMMON, "--lr", "inf", "--out", str(out)],
                              capsys)
    assert code == 2 and not out.exists()
    assert main(["train", *TINY_VAE, *COMMON, "--out", str(out)]) == 0
    assert (out / "checkpoint.pt").is_file()


def _unwritable_outputs(tmp_path):
    (tmp_path / "a-file").write_text("x")
    (tmp_path / "a-folder").mkdir()
    cases = [("x.txt", "give a file name ending in .png"),
             ("a-folder", "is a folder"),
             (os.path.join("a-file", "grid.png"), "is a file, not a folder")]
    if os.path.isdir("/sys"):  # Linux: not writable, even for root
        cases.append(("/sys/flowvae-grid.png", "cannot write it"))
    return cases


def test_sample_refuses_an_output_it_cannot_write_in_one_line(vae_run, tmp_path, capsys,
                                                               monkeypatch):
    monkeypatch.chdir(tmp_path)
    for output, says in _unwritable_outputs(tmp_path):
        before = sorted(p.name for p in tmp_path.iterdir())
        code, err = _one_line_error(["sample", str(vae_run), "--n", "2", "--device", "cpu",
                                     "-o", output], capsys)
        assert code == 2 and says in err, (output, err)
        assert sorted(p.name for p in tmp_path.iterdir()) == before


@pytest.mark.parametrize("flags, says", [
    (["--temperature", "inf"], "--temperature: must be a finite number, got inf"),
    (["--temperature", "0"], "--temperature: must be > 0"),
    (["--seed", "-1"], "--seed: must be >= 0, got -1"),
])
def test_sample_refuses_a_bad_number_in_one_line(vae_run, tmp_path, capsys, flags, says):
    output = tmp_path / "grid.png"
    code, err = _one_line_error(["sample", str(vae_run), "-o", str(output), *flags], capsys)
    assert code == 2 and says in err and not output.exists()


def test_every_cli_error_is_one_line_from_a_real_process(tmp_path):
    """As a user runs it: ``python -m flowvae``, stderr one line, status 2, nothing made."""
    done = subprocess.run([sys.executable, "-m", "flowvae", "train", "--clip-norm", "inf",
                           "--out", str(tmp_path / "run")], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "--clip-norm: must be a finite number" in done.stderr
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------------------- model recipes
def test_the_command_names_no_model():
    """Every model-specific choice is in flowvae.recipes: cli.py holds no model's name."""
    import inspect

    import flowvae.cli
    from flowvae.recipes import RECIPES

    source = inspect.getsource(flowvae.cli).lower()
    for name in RECIPES:
        assert f'"{name}"' not in source and f"'{name}'" not in source, name
    assert "vapnev" not in source


def test_a_new_recipe_is_offered_and_trained(tmp_path, capsys, monkeypatch):
    """A new model for the command is one entry of RECIPES: a flow density model here."""
    from flowvae import recipes

    def build(options, shape, levels):
        from flowvae.models import FlowDensity

        return FlowDensity(shape, flow_kwargs={k: options[k] for k in ("hidden_channels",
                                                                       "num_blocks")})

    monkeypatch.setitem(recipes.RECIPES, "density", recipes.ModelRecipe(
        "density", "a RealNVP density", build, flags=("hidden_channels", "num_blocks"),
        refusal="a density has no latent", likelihood="flow"))
    out = tmp_path / "density"
    flags = ["--model", "density", "--hidden-channels", "4", "--num-blocks", "1", "--epochs",
             "1", "--max-steps-per-epoch", "2", "--eval-images", "20"]
    assert main(["train", *flags, *COMMON, "--out", str(out)]) == 0
    assert "FlowDensity on digits" in capsys.readouterr().out
    assert json.loads((out / "run.json").read_text())["model"] == "density"
    code, err = exit_code(["train", *flags, *COMMON, "--latent-dim", "2", "--out",
                           str(tmp_path / "x")], capsys)
    assert code == 2 and "--latent-dim applies to --model vae, vapnev only (a density" in err
