"""The paper-length results: every ``docs/results/*.json`` follows the schema of issue 26,
``docs/reproducibility.md`` is rendered from them, and the paper drivers' run folders turn into
records that follow it too (tiny runs)."""

import dataclasses
import glob
import json
import math
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = sorted(glob.glob(os.path.join(ROOT, "docs", "results", "*.json")))

# the schema, written out here independently of the code that writes the records
TEXT = ("paper", "model", "dataset", "metric", "unit", "command", "commit", "hardware")
COUNTS = ("epochs", "steps", "train_images", "test_images")


def schema_errors(record) -> list:
    """What is wrong with one record (empty: it follows the schema)."""
    expected = set(TEXT + COUNTS + ("seed", "value", "iwae_k", "train_minutes"))
    errors = [f"keys {sorted(set(record) ^ expected)}"] if set(record) != expected else []
    errors += [f"{k} is not a non-empty string" for k in TEXT
               if not isinstance(record.get(k), str) or not record.get(k)]
    errors += [f"{k} is not an integer >= 1" for k in COUNTS
               if type(record.get(k)) is not int or record.get(k) < 1]
    if type(record.get("seed")) is not int or record.get("seed") < 0:
        errors.append("seed is not an integer >= 0")
    for k in ("value", "train_minutes"):
        v = record.get(k)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            errors.append(f"{k} is not a finite number")
    if isinstance(record.get("train_minutes"), (int, float)) and record["train_minutes"] < 0:
        errors.append("train_minutes < 0")
    k = record.get("iwae_k")
    if not (k is None or (type(k) is int and k >= 1)):
        errors.append("iwae_k is neither null nor an integer >= 1")
    if record.get("metric") == "nll_iwae" and k is None:
        errors.append("an IWAE NLL without its K")
    if not str(record.get("command", "")).startswith("python "):
        errors.append("command is not a python command line")
    return errors


def test_the_schema_check_catches_what_it_should():
    good = dict(paper="p", model="m", dataset="mnist", seed=0, epochs=5, steps=10,
                train_images=60000, test_images=10000, metric="nll_iwae", value=88.1,
                unit="nats", iwae_k=1000, command="python x.py", commit="abc",
                hardware="cpu", train_minutes=1.5)
    assert schema_errors(good) == []
    for bad in (dict(epochs=0), dict(value=float("nan")), dict(iwae_k=None), dict(seed=-1),
                dict(steps=3.0), dict(command="x.py"), dict(commit=""), dict(value=True)):
        assert schema_errors({**good, **bad}), bad
    assert schema_errors({k: v for k, v in good.items() if k != "unit"})
    assert schema_errors({**good, "extra": 1})


@pytest.mark.parametrize("path", RESULTS, ids=[os.path.basename(p) for p in RESULTS])
def test_every_results_file_follows_the_schema(path):
    with open(path) as f:
        records = json.load(f)
    assert isinstance(records, list) and records, "a results file is a non-empty list"
    for i, record in enumerate(records):
        assert schema_errors(record) == [], (i, record)
    identity = [(r["model"], r["dataset"], r["seed"], r["epochs"], r["metric"], r["iwae_k"])
                for r in records]
    assert len(identity) == len(set(identity)), "two records of the same number"


def test_reproducibility_page_is_rendered_from_the_records(load_example):
    results = load_example("paper_results")
    with open(os.path.join(ROOT, "docs", "reproducibility.md")) as f:
        page = f.read()
    assert page == results.render(results.load_results()), (
        "docs/reproducibility.md is stale: run python examples/paper_results.py render")
    for path in RESULTS:  # every results file is linked from the page
        assert f"results/{os.path.basename(path)}" in page


def test_vapnev_mnist_run_resumes_by_epoch_and_its_records_follow_the_schema(
        tmp_path, data_root, monkeypatch, load_example):
    monkeypatch.setenv("FLOWVAE_DATA", data_root)
    driver, results = load_example("vapnev_mnist"), load_example("paper_results")
    config = driver.Config(epochs=1, max_steps_per_epoch=1, eval_images=16, iwae=2,
                           iwae_images=4, label_images=20, classifier_images=300,
                           flow_channels=4, hidden=4, compile=False, out=str(tmp_path))
    first = driver.main(config)
    again = driver.main(dataclasses.replace(config, epochs=2, resume=True))
    for name in ("vapnev", "flow"):
        assert [r["epoch"] for r in again[name]] == [1, 2]
        assert again[name][0] == first[name][0]  # epoch 1 kept, not retrained
        assert again[name][1]["step"] == 2
    assert "labels_kept" in again["vapnev"][0] and "labels_kept" not in again["flow"][0]
    # the flow without z was matched to VAPNEV's parameter count
    counts = [again[name][0]["parameters"] for name in ("vapnev", "flow")]
    assert abs(counts[0] - counts[1]) / counts[0] < 0.2, counts
    records = results.collect_vapnev_mnist(str(tmp_path))
    assert len(records) == 2 * (6 + 3)  # epochs x (VAPNEV's 6 metrics + the flow's 3)
    for record in records:
        assert schema_errors(record) == [], record
    assert results.merge("vapnev_mnist", records, root=str(tmp_path / "r")) == len(records)
    assert results.merge("vapnev_mnist", records[:3], root=str(tmp_path / "r")) == len(records)
    assert "VAPNEV on MNIST, epoch by epoch" in results.render(
        results.load_results(str(tmp_path / "r")))


def test_rho_vae_records_follow_the_schema(tmp_path, data_root, monkeypatch, load_example):
    monkeypatch.setenv("FLOWVAE_DATA", data_root)
    example, results = load_example("rho_vae"), load_example("paper_results")
    config = example.Config(models=("vanilla",), epochs=1, train_size=200, eval_images=40,
                            iwae=2, hidden=16, out=str(tmp_path))
    example.main(config)
    records = results.collect_rho_vae(str(tmp_path), commit="abc", command="python x.py")
    assert sorted({r["model"] for r in records}) == ["vanilla, AR(1) q", "vanilla, diagonal q"]
    assert {r["metric"] for r in records} == {"neg_elbo", "nll_iwae", "rate", "active_units"}
    for record in records:
        assert schema_errors(record) == [], record
    rows = results.rho_vae_rows(records)
    assert len(rows) == 1 and rows[0][-1] == "1 of 3 seeds so far"
