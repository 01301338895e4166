"""The benchmark suite runs end to end at tiny sizes and checks what it compares (no timing is
asserted: speed targets live in docs/benchmarks.md, measured side by side)."""

import json
import warnings

import pytest

from benchmarks import run


@pytest.mark.filterwarnings("ignore")
def test_suite_writes_every_benchmark_and_its_references_are_the_same_models(tmp_path):
    out = tmp_path / "results.json"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run.main(["--quick", "--no-compile", "--repeats", "1", "--out", str(out)])
    results = json.loads(out.read_text())
    flows = results["transforms"]["shapes"]["mnist"]
    # the flowvae flows share weights with their plain-PyTorch references and agree with them
    assert flows["checks"]["plain-squeezed"]["max_output_diff"] < 1e-3
    assert {"plain-masked", "flowvae-masked", "nflows"} <= set(flows["timings"]["fwd+bwd"])
    steps = results["steps"]["models"]
    assert set(steps) == {"vapnev", "flowprior", "ar1"}
    for name, model in steps.items():
        # the hand-written reference computes Pyro's ELBO loss for the same draw of z
        assert model["plain_vs_pyro_loss_rel_diff"] < 1e-4, name
        assert {"plain", "flowvae", "pyro-svi", "jit"} <= set(model["candidates"])
        assert model["step_flops"] > 0
        # the flows' replayed FLOPs are part of the step's: the prior's, or most of VAPNEV's
        assert 0 <= model["coupling_flops"] < model["step_flops"], name
        assert all(c["median_ms"] > 0 for c in model["candidates"].values())
    assert "bf16" in steps["vapnev"]["candidates"] and "bf16" not in steps["ar1"]["candidates"]
    assert steps["ar1"]["coupling_flops"] == 0 < steps["flowprior"]["coupling_flops"]
    assert steps["vapnev"]["coupling_flops"] > 0.3 * steps["vapnev"]["step_flops"]
    # FLOPs counted for the flows; their rate is set against the measured matmul peak
    assert flows["timings"]["fwd+bwd"]["flowvae-masked"]["flops"] > 0
    assert {row["candidate"] for row in results["coupling_fraction_of_peak"]} >= {
        "flowvae-squeezed", "flowvae-masked"}
