"""Every example runs end to end (tiny budgets), and the codebase passes ruff."""

import dataclasses
import glob
import importlib.util
import itertools
import json
import math
import os
import re
import shlex
import shutil
import subprocess
import sys

import pytest
from PIL import Image

from flowvae.train import RunDirectoryError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_vapnev_example_writes_metrics_and_grids(tmp_path, capsys, load_example):
    example = load_example("vapnev")
    config = example.Config(epochs=1, max_steps_per_epoch=2, iwae=3, flow_channels=4,
                            hidden=4, out=str(tmp_path))
    metrics = example.main(config)
    assert metrics["bpd"] > 0
    out = capsys.readouterr().out
    assert "test bits/dim (ELBO)" in out and "test bits/dim (IWAE" in out
    for name in ("samples.png", "reconstructions.png", "interpolation.png", "checkpoint.pt",
                 "metrics.csv"):
        assert (tmp_path / name).stat().st_size > 0, name


def test_vapnev_example_stops_at_its_time_limit_and_resume_finishes(tmp_path, load_example):
    example = load_example("vapnev")
    config = example.Config(epochs=2, max_steps_per_epoch=1, flow_channels=4, hidden=4,
                            time_limit=1e-9, dequantization="variational", compare=False,
                            out=str(tmp_path))
    assert example.main(config) == {"epoch": 1}  # past the limit after epoch 1: no evaluation
    assert not (tmp_path / "samples.png").exists()
    with pytest.raises(RunDirectoryError, match="--resume to continue its run"):
        example.main(config)  # the folder holds a run: neither --resume nor --overwrite
    resumed = dataclasses.replace(config, resume=True)
    assert example.main(resumed)["bpd"] > 0  # resumed from the checkpoint, epoch 2, evaluated
    assert (tmp_path / "metrics.csv").read_text().count("\n") == 3  # header + 2 epochs


@pytest.mark.skipif(shutil.which("ruff") is None and
                    importlib.util.find_spec("ruff") is None, reason="ruff not installed")
def test_ruff_passes():
    folders = [d for d in ("flowvae", "tests", "examples", "benchmarks")
               if os.path.isdir(os.path.join(ROOT, d))]
    result = subprocess.run([sys.executable, "-m", "ruff", "check", *folders], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_vapnev_comparison_example_runs_all_four_models(tmp_path, load_example, capsys):
    example = load_example("vapnev_compare")
    rows = example.main(example.Config(epochs=1, train_size=64, eval_images=8, flow_channels=4,
                                       latent_dim=2, iwae=2, out=str(tmp_path)))
    assert [r["model"][:3] for r in rows] == ["(a)", "(b)", "(c)", "(d)"]
    assert all(r["test_bpd_iwae"] > 0 for r in rows)
    for r in rows:  # the latent diagnostics; (b), a flow without latent, has no z
        keys = ["distortion", "distortion_8bit", "rate"]
        keys += [] if r["model"].startswith("(b)") else ["rate_z", "active_units_z",
                                                         "mutual_info_z"]
        assert all(math.isfinite(r[k]) for k in keys), r
    assert "rate_z" not in rows[1] and 0 <= rows[0]["active_units_z"] <= 2
    out = capsys.readouterr().out
    assert "| rate z (nats) | distortion (nats, 8-bit) | active units z | I(x; z) (nats) |" in out
    assert "| (b) RealNVP, no latent |" in out and "| - | " in out
    assert (tmp_path / "results.json").exists()
    for letter, name in itertools.product("abcd", ("samples.png", "training_curve.png")):
        assert Image.open(tmp_path / letter / name).width >= 400, (letter, name)
    only = example.main(example.Config(epochs=1, train_size=64, eval_images=8, flow_channels=4,
                                       latent_dim=2, iwae=2, models=("c",), out=str(tmp_path),
                                       overwrite=True))
    assert [r["model"] for r in only] == [rows[2]["model"]]
    assert only[0]["test_bpd_iwae"] == rows[2]["test_bpd_iwae"]  # seeded: the same run


def test_srvae_example_compares_three_models_and_writes_grids(tmp_path, monkeypatch, data_root,
                                                             load_example, capsys):
    monkeypatch.setenv("FLOWVAE_DATA", data_root)
    example = load_example("srvae")
    config = example.Config(epochs=1, max_steps_per_epoch=1, train_size=32, eval_images=20,
                            hidden=4, growth=4, num_layers=1, num_mixtures=2, flow_channels=4,
                            latent_shape=(2, 8, 8), iwae=2, iwae_images=4, out=str(tmp_path))
    results = example.main(config)
    assert set(results) == {"normal", "flow", "srvae"}
    assert all(row["iwae_bpd"] > 0 for row in results.values())
    assert {"psnr_bicubic", "psnr_sample", "psnr_mean", "RE_y", "KL_u"} <= set(results["srvae"])
    for name, row in results.items():  # the latent diagnostics, per site (srVAE: u and z)
        sites = "uz" if name == "srvae" else "z"
        keys = ["distortion", *(f"{k}_{s}" for s in sites
                                for k in ("rate", "active_units", "mutual_info"))]
        assert all(math.isfinite(row[k]) for k in keys), (name, row)
        assert 0 <= row["active_units_z"] <= 2 * 8 * 8 and row["rate_z"] > 0
    assert "| model | rate_u | rate_z | distortion | active_units_u | active_units_z |" in (
        capsys.readouterr().out)
    for name in ("srvae_generations_y", "srvae_generations_x", "srvae_super_resolution",
                 "flow_generations", "normal_reconstructions"):
        assert (tmp_path / f"{name}.png").stat().st_size > 0, name


SHARED_CONVENTIONS = ["information_preference", "posterior_flows", "rho_vae", "sequential_vae",
                      "srvae", "vapnev_compare"]


@pytest.mark.parametrize("name", SHARED_CONVENTIONS)
def test_example_flags_have_help_with_defaults_and_paper_sizes_one_flag_away(
        name, load_example, monkeypatch, capsys):
    example = load_example(name)
    assert example.parse_args([]) == example.Config()  # the defaults are the Config's
    paper = example.parse_args(["--paper"])
    assert paper != example.Config() and {k: getattr(paper, k) for k in example.PAPER} == {
        k: tuple(v) if isinstance(v, list) else v for k, v in example.PAPER.items()}
    key = next(k for k, v in example.PAPER.items() if isinstance(v, int))
    given = example.parse_args(["--paper", "--" + key.replace("_", "-"), "1"])
    assert getattr(given, key) == 1  # flags given next to --paper win
    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(SystemExit):
        example.parse_args(["--help"])
    parser_help = capsys.readouterr().out
    options = [line.split()[0] for line in parser_help.splitlines()
               if line.startswith("  --") and not line.startswith("  --help")]
    assert len(options) > 5
    for line in parser_help.split("\n  --")[1:]:
        assert "(default:" in line, line  # ArgumentDefaultsHelpFormatter, a help text each
    for old in ("--test-size", "--test-images", "--kinds", "--variants", "--eval-points",
                "--mi-points"):
        assert old not in parser_help, old


def documented_example_commands():
    """(page, example, argv) of every ``python examples/<name>.py ...`` on the docs pages and
    the README (but the VAPNEV page), for the examples above."""
    pages = [os.path.join(ROOT, "README.md"), *glob.glob(os.path.join(ROOT, "docs", "**", "*.md"),
                                                         recursive=True)]
    for page in pages:
        if os.path.basename(page) == "vapnev.md":
            continue
        text = open(page).read().replace("\\\n", " ").replace("$ds", "mnist")
        for match in re.finditer(r"python (?:examples/)?(\w+)\.py([^\n`&>|;#]*)", text):
            if match.group(1) in SHARED_CONVENTIONS:
                yield os.path.relpath(page, ROOT), match.group(1), shlex.split(match.group(2))


def test_documented_example_commands_use_existing_flags(load_example, capsys):
    commands = list(documented_example_commands())
    assert {name for _, name, _ in commands} >= {"srvae", "posterior_flows", "rho_vae",
                                                  "sequential_vae", "information_preference"}
    for page, name, argv in commands:
        try:
            load_example(name).parse_args(argv)
        except SystemExit as exit:  # --help exits with 0, an unknown flag with 2
            if exit.code:
                pytest.fail(f"{page}: python examples/{name}.py {shlex.join(argv)}\n"
                            f"{capsys.readouterr().err}")


EXAMPLES = sorted(os.path.basename(p)[:-3]
                  for p in glob.glob(os.path.join(ROOT, "examples", "*.py"))
                  if not os.path.basename(p).startswith(("_", "paper_results", "vapnev_mnist")))
"""Every example on the shared flag builder (the lead's vapnev_mnist and paper_results aside)."""


def run_example_script(name, *argv, cwd=ROOT, env=None):
    return subprocess.run([sys.executable, os.path.join(ROOT, "examples", f"{name}.py"), *argv],
                          cwd=cwd, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, OMP_NUM_THREADS="1", **(env or {})))


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_help_imports_no_torch_and_a_bad_value_is_one_line(name, tmp_path):
    probe = ("import runpy, sys\nsys.argv = [sys.argv[1], '--help']\n"
             "try:\n    runpy.run_path(sys.argv[0], run_name='__main__')\n"
             "except SystemExit as exit:\n    assert exit.code == 0, exit.code\n"
             "print('torch loaded:', 'torch' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", probe, os.path.join(ROOT, "examples",
                                                                      f"{name}.py")],
                          cwd=os.path.join(ROOT, "examples"), capture_output=True, text=True,
                          env=dict(os.environ, COLUMNS="200"), timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.rstrip().endswith("torch loaded: False")  # parsed before torch loads
    options = done.stdout.split("\n  --")[1:]
    assert len(options) > 5 and all("(default:" in o for o in options), options
    out = tmp_path / "X"
    flag = "--rounds" if name == "information_preference" else "--epochs"
    for argv in ([flag, "0"], ["--no-such-flag"], ["--batch-size", "-3"]):
        bad = run_example_script(name, *argv, "--out", str(out))
        assert bad.returncode == 2 and bad.stdout == "", (argv, bad.stdout)
        assert len(bad.stderr.splitlines()) == 1 and f"{name}.py: error:" in bad.stderr, argv
        assert not out.exists(), argv


def test_rho_vae_names_the_library_choices_without_importing_it(load_example):
    from flowvae.models import rho_vae

    example = load_example("rho_vae")
    assert (example.VARIANTS, example.GUIDES) == (rho_vae.VARIANTS, rho_vae.GUIDES)


def test_vapnev_script_logs_epochs_without_a_terminal_and_lists_its_files(tmp_path):
    done = run_example_script("vapnev", "--epochs", "2", "--max-steps-per-epoch", "1",
                              "--latent-dim", "2", "--hidden", "4", "--flow-channels", "4",
                              "--eval-images", "16", "--no-compare", "--tensorboard",
                              "--out", "run", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert [line.split(":")[0] for line in lines if line.startswith("epoch ")] == [
        "epoch 1/2 step 1", "epoch 2/2 step 2"]  # one line per epoch, stdout not a terminal
    listed = lines[lines.index(next(x for x in lines if x.startswith("files written"))) + 1:]
    on_disk = {os.path.relpath(os.path.join(d, f), tmp_path / "run")
               for d, _, names in os.walk(tmp_path / "run") for f in names}
    assert {x.strip() for x in listed} == on_disk
    assert {"results.json", "training_curve.png", "checkpoint.pt"} <= on_disk
    assert any(f.startswith("tensorboard" + os.sep + "events.out") for f in on_disk)
    results = json.loads((tmp_path / "run" / "results.json").read_text())["results"]
    shown = next(x for x in lines if x.startswith("| test bits/dim (ELBO)"))
    assert shown.split("|")[2].strip() == f"{results['free bits']['bpd']:.3f}"  # rounded there
    assert results["free bits"]["bpd"] != round(results["free bits"]["bpd"], 3)  # full here
