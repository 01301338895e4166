"""The run folder agrees with itself (issue 21): metrics files hold the checkpoint's rows after a
crash and resume; a folder holding a run is refused without --resume or --overwrite; OS errors
are one line with no .tmp left; a corrupted or foreign checkpoint is refused; the test set is
checked before training; the evaluation's size is an option and shows progress."""

import argparse
import json
import os
import shutil

import pytest
import torch

from flowvae.cli import main
from flowvae.infer import evaluate
from flowvae.models import VAE
from flowvae.train import CHECKPOINT, Callback, fit, read_checkpoint
from flowvae.train.checkpoint import write_checkpoint
from flowvae.train.rundir import RunDirectoryError, prepare_out_dir

TINY = ["--model", "vae", "--likelihood", "gaussian", "--latent-dim", "2", "--hidden", "8",
        "--epochs", "1", "--max-steps-per-epoch", "2", "--eval-images", "20", "--dataset",
        "digits", "--device", "cpu", "--no-progress", "--no-download"]


def grey_images(n, shape=(1, 8, 8)):
    return torch.randint(0, 256, (n, *shape), dtype=torch.uint8)


def tiny_vae():
    torch.manual_seed(0)
    return VAE((1, 8, 8), latent_dim=2, hidden=8, likelihood="gaussian")


def train(out, epochs, resume, **kwargs):
    return fit(tiny_vae(), grey_images(32), grey_images(8), epochs=epochs, batch_size=8,
               progress=False, out_dir=str(out), resume=resume, seed=1, **kwargs)


def rows(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_metrics_hold_one_row_per_finished_epoch_after_a_crash_between_the_writes(tmp_path):
    train(tmp_path, 1, False)
    first = (tmp_path / CHECKPOINT).read_bytes()
    train(tmp_path, 2, True)
    # as if killed after epoch 2's metrics row but before its checkpoint
    (tmp_path / CHECKPOINT).write_bytes(first)
    train(tmp_path, 1, True)  # nothing left to train: the files follow the checkpoint
    assert [r["epoch"] for r in rows(tmp_path)] == [1]
    history = train(tmp_path, 3, True)
    assert rows(tmp_path) == history == read_checkpoint(str(tmp_path / CHECKPOINT))["history"]
    csv = (tmp_path / "metrics.csv").read_text().splitlines()
    assert len(csv) == 4 and csv[0].startswith("epoch,step,")


def test_a_folder_holding_files_is_refused_without_resume_or_overwrite(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *TINY, "--out", str(out)]) == 0
    before = (out / CHECKPOINT).read_bytes()
    capsys.readouterr()
    for flags, says in (([], "--resume to continue its run, --overwrite to replace it"),
                        (["--resume", "--overwrite"], "exclude each other")):
        with pytest.raises(SystemExit) as exit_info:
            main(["train", *TINY, "--out", str(out), *flags])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and says in err and len(err.splitlines()) == 1
    assert (out / CHECKPOINT).read_bytes() == before
    assert main(["train", *TINY, "--out", str(out), "--overwrite", "--seed", "5"]) == 0
    assert (out / CHECKPOINT).read_bytes() != before and len(rows(out)) == 1
    with pytest.raises(SystemExit):
        main(["train", *TINY, "--out", str(tmp_path / "empty"), "--resume"])
    assert "--resume: no checkpoint.pt in" in capsys.readouterr().err
    assert not prepare_out_dir(str(tmp_path / "empty"), resume=True)  # an example starts it


def test_an_out_that_is_a_file_is_one_line(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    with pytest.raises(SystemExit) as exit_info:
        main(["train", *TINY, "--out", str(tmp_path / "file")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and len(err.splitlines()) == 1
    assert f"{tmp_path / 'file'}: it is a file, not a folder" in err


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_full_disk_is_one_line_naming_the_file_and_leaves_no_tmp(tmp_path):
    train(tmp_path, 1, False)
    before = (tmp_path / CHECKPOINT).read_bytes()
    os.symlink("/dev/full", tmp_path / f"{CHECKPOINT}.tmp")  # every write: ENOSPC
    with pytest.raises(RunDirectoryError) as err:
        train(tmp_path, 2, True)
    message = str(err.value)
    assert message == f"cannot write {tmp_path / CHECKPOINT}: the disk is full: free some " \
                      "space or choose another folder"
    assert not any(name.endswith(".tmp") for name in os.listdir(tmp_path))
    assert (tmp_path / CHECKPOINT).read_bytes() == before


def test_a_flipped_bit_or_a_foreign_object_in_a_checkpoint_is_refused(tmp_path):
    model = tiny_vae()
    fit(model, grey_images(16), epochs=1, batch_size=8, progress=False, out_dir=str(tmp_path))
    path = tmp_path / CHECKPOINT
    data = bytearray(path.read_bytes())
    weight = model.decoder.net[2].weight.detach().numpy().tobytes()
    at = data.find(weight) + len(weight) // 2  # in the middle of a weight's stored bytes
    assert at > len(weight) // 2
    data[at] ^= 0x10
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="is corrupted: its contents do not match the checksum"):
        read_checkpoint(str(path))
    write_checkpoint(str(path), {"model": "VAE", "state_dict": {}, "x": argparse.Namespace()})
    with pytest.raises(ValueError, match="not a readable flowvae checkpoint.*Namespace"):
        read_checkpoint(str(path))


def test_a_wrong_test_set_fails_before_the_first_step():
    class Steps(Callback):
        count = 0

        def on_step(self, run, loss, batch):
            Steps.count += 1

    for test, says in ((grey_images(4, (1, 28, 28)), r"test_data: .*shape \(B, 1, 8, 8\)"),
                       (torch.rand(4, 1, 8, 8), "test_data: expected uint8")):
        with pytest.raises(ValueError, match=says):
            fit(tiny_vae(), grey_images(16), test, epochs=1, batch_size=8, progress=False,
                callbacks=[Steps()])
    assert Steps.count == 0


def test_eval_images_evaluates_evenly_spaced_test_images(monkeypatch):
    import flowvae.train.loop as loop

    seen = []
    monkeypatch.setattr(loop, "evaluate_elbo",
                        lambda module, images, *args, **kw: seen.append(images) or {})
    test = torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1).expand(10, 1, 8, 8).clone()
    fit(tiny_vae(), grey_images(16), test, epochs=1, batch_size=8, progress=False,
        eval_images=4)
    assert seen[0][:, 0, 0, 0].tolist() == [0, 3, 6, 9]


def test_evaluation_shows_progress_when_asked(capsys):
    evaluate(tiny_vae(), grey_images(10), batch_size=4, progress=True)
    assert "evaluating 10 images" in capsys.readouterr().err
    evaluate(tiny_vae(), grey_images(10), batch_size=4)  # not a terminal: nothing shown
    assert "evaluating" not in capsys.readouterr().err


def test_a_copied_run_folder_resumes_with_its_metrics(tmp_path):
    train(tmp_path / "a", 1, False)
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    train(tmp_path / "b", 2, True)
    assert [r["epoch"] for r in rows(tmp_path / "b")] == [1, 2]


def test_a_read_only_folder_is_one_line_and_leaves_no_tmp(tmp_path, monkeypatch):
    import errno

    from flowvae.train.rundir import write_atomically

    def refuse(src, dst):  # as on a read-only mount (tests run as root: chmod would not do)
        raise OSError(errno.EROFS, "Read-only file system", dst)

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(RunDirectoryError) as err:
        write_atomically(str(tmp_path / "metrics.csv"), b"epoch\n1\n")
    assert str(err.value) == (f"cannot write {tmp_path / 'metrics.csv'}: the file system is "
                              "read-only: choose a writable folder")
    assert os.listdir(tmp_path) == []
