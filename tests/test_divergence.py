"""Divergence always ends as TrainingDiverged (issue 21): a learning rate that blows up, a NaN
batch, a NaN gradient, with validation on or off; the model and optimizer in memory are put
back to their last good state, and the CLI says so in one line."""

import os
import subprocess
import sys

import pyro
import pytest
import torch

from flowvae.models import VAE
from flowvae.nn.init import needs_data_init
from flowvae.train import TrainingDiverged, fit, read_checkpoint


def grey_images(n, shape=(1, 8, 8)):
    return torch.randint(0, 256, (n, *shape), dtype=torch.uint8)


def tiny_vae():
    torch.manual_seed(0)
    return VAE((1, 8, 8), latent_dim=2, hidden=8, likelihood="gaussian")


def snapshot(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def assert_state(model, state):
    for name, value in model.state_dict().items():
        assert torch.isfinite(value).all() if value.is_floating_point() else True, name
        assert torch.equal(value, state[name]), name


def test_a_huge_learning_rate_ends_in_training_diverged_with_the_model_restored():
    model = tiny_vae()
    data = grey_images(64)
    assert not needs_data_init(model)  # so its state before training is the one built
    before = snapshot(model)
    with pytest.raises(TrainingDiverged, match=r"at step \d+ \(epoch 1\); the model and "
                                               r"optimizer .* restored .* before training"):
        fit(model, data, epochs=3, batch_size=8, lr=1e3, progress=False)
    assert_state(model, before)


def test_a_nan_batch_is_named_as_the_cause(monkeypatch):
    model = tiny_vae()
    preprocess, calls = model.preprocess, []

    def nan_on_the_third_step(x):
        out = preprocess(x)
        calls.append(1)
        return out.fill_(float("nan")) if len(calls) == 4 else out  # 1 init + 3 steps

    monkeypatch.setattr(model, "preprocess", nan_on_the_third_step)
    with pytest.raises(TrainingDiverged, match=r"the batch holds 64 NaN .* at step \d \("):
        fit(model, grey_images(32), epochs=1, batch_size=1, progress=False)


@pytest.mark.parametrize("validate", [True, False])
def test_a_nan_gradient_leaves_the_weights_and_optimizer_of_the_last_checkpoint(tmp_path,
                                                                               validate):
    pyro.enable_validation(validate)
    model, data, out = tiny_vae(), grey_images(32), str(tmp_path)
    fit(model, data, epochs=1, batch_size=8, progress=False, out_dir=out)
    weight = model.decoder.net[0].weight
    weight.register_hook(lambda grad: grad * float("nan"))  # every later step: a NaN gradient
    with pytest.raises(TrainingDiverged, match=r"epoch 2\).*after epoch 1.*checkpoint\.pt") as err:
        fit(model, data, epochs=2, batch_size=8, progress=False, out_dir=out, resume=True)
    if validate:  # found in the step itself, before the optimizer applies it
        assert "gradients' norm is nan" in str(err.value)
    state = read_checkpoint(f"{out}/checkpoint.pt")
    assert_state(model, state["state_dict"])


def test_the_cli_reports_divergence_in_one_line(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "flowvae.cli", "train", "--dataset", "digits", "--epochs", "1",
         "--lr", "1e3", "--hidden", "8", "--latent-dim", "2", "--max-steps-per-epoch", "20",
         "--out", str(tmp_path / "run"), "--no-progress"],
        capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=120)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("flowvae: training diverged: "), lines

