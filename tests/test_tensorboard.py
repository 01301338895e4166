"""TensorBoard logging of fit: the event files, read back with tensorboard's own reader, hold
every metric of metrics.jsonl at its optimizer step, and the image grids."""

import json

import pytest

from flowvae.data import load_dataset
from flowvae.models import VAE
from flowvae.train import fit
from flowvae.train.tensorboard import TensorBoard

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")


def read_events(log_dir):
    events = event_accumulator.EventAccumulator(str(log_dir), size_guidance={
        event_accumulator.SCALARS: 0, event_accumulator.IMAGES: 0})
    events.Reload()
    return events


def test_scalars_equal_metrics_jsonl_and_images_are_logged(tmp_path):
    data = load_dataset("digits", "train").images[:96]
    test = load_dataset("digits", "test").images[:32]
    log_dir = tmp_path / "tensorboard"
    model = VAE((1, 8, 8), latent_dim=2, hidden=8)
    fit(model, data, test, epochs=3, batch_size=32, max_steps_per_epoch=2, out_dir=str(tmp_path),
        progress=False, device="cpu", callbacks=[TensorBoard(str(log_dir), images_every=2,
                                                             num_images=4)])
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    events = read_events(log_dir)
    tags = set(events.Tags()["scalars"])
    assert tags == set(rows[0]) - {"step"}
    for tag in tags:
        logged = [(e.step, e.value) for e in events.Scalars(tag)]
        expected = [(row["step"], row[tag]) for row in rows]
        assert [s for s, _ in logged] == [s for s, _ in expected] == [2, 4, 6], tag
        assert [v for _, v in logged] == pytest.approx([v for _, v in expected], rel=1e-6), tag
    # images at epoch 2 (every 2nd) and 3 (the last): 4 samples; 4 inputs over 4 reconstructions
    for tag in ("samples", "reconstructions"):
        images = events.Images(tag)
        assert [image.step for image in images] == [4, 6], tag
    grid = events.Images("reconstructions")[-1]
    assert grid.width > grid.height > 8  # two rows of four 8x8 images with padding


def test_resumed_run_appends_to_the_same_event_files(tmp_path):
    data = load_dataset("digits", "train").images[:64]
    options = dict(batch_size=32, max_steps_per_epoch=1, out_dir=str(tmp_path), progress=False,
                   device="cpu")
    log_dir = str(tmp_path / "tb")
    fit(VAE((1, 8, 8), latent_dim=2, hidden=8), data, epochs=1,
        callbacks=[TensorBoard(log_dir, images_every=0)], **options)
    fit(VAE((1, 8, 8), latent_dim=2, hidden=8), data, epochs=2, resume=True,
        callbacks=[TensorBoard(log_dir, images_every=0)], **options)
    events = read_events(log_dir)
    assert [e.step for e in events.Scalars("train_nelbo")] == [1, 2]
    assert events.Tags()["images"] == []


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="images_every must be >= 0"):
        TensorBoard("x", images_every=-1)


def test_cli_train_tensorboard_flag_logs_the_run(tmp_path, capsys):
    from flowvae.cli import main

    out = tmp_path / "run"
    assert main(["train", "--model", "vae", "--dataset", "digits", "--epochs", "2",
                 "--max-steps-per-epoch", "2", "--latent-dim", "2", "--hidden", "8",
                 "--no-progress", "--no-download", "--device", "cpu", "--tensorboard",
                 "--out", str(out)]) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    events = read_events(out / "tensorboard")
    assert [e.value for e in events.Scalars("test_nelbo")] == pytest.approx(
        [row["test_nelbo"] for row in rows], rel=1e-6)
    assert [image.step for image in events.Images("samples")] == [2, 4]
    printed = capsys.readouterr().out  # a VAE on digits: Bernoulli pixels, said so
    assert "Bernoulli (binary) likelihood" in printed
