"""Image grids enlarged without blurring, with labels; training curves from metrics.csv."""

import numpy as np
import pytest
import torch
from PIL import Image

from flowvae.infer import plot_training_curve, save_grid
from flowvae.infer.sampling import _newest_run


def test_grid_is_enlarged_by_a_whole_factor_with_nearest_neighbour_pixels(tmp_path):
    images = torch.randint(0, 256, (16, 1, 8, 8)).float() / 255
    path = save_grid(images, str(tmp_path / "g.png"), nrow=8, padding=2)
    picture = np.asarray(Image.open(path).convert("L"))
    grid_width = 8 * (8 + 2) + 2  # torchvision's make_grid: padding before every image + 1
    scale = -(-400 // grid_width)
    assert picture.shape == ((2 * 10 + 2) * scale, grid_width * scale)
    for index in (0, 5, 13):  # every source pixel is a scale x scale block of its own value
        row, col = divmod(index, 8)
        top, left = (2 + row * 10) * scale, (2 + col * 10) * scale
        block = picture[top : top + 8 * scale, left : left + 8 * scale]
        expected = (images[index, 0] * 255 + 0.5).floor().to(torch.uint8).numpy()
        assert (block == np.kron(expected, np.ones((scale, scale), np.uint8))).all()
    assert (picture[:2 * scale] == 128).all()  # grey separators


def test_labels_add_margins_and_text(tmp_path):
    images = torch.zeros(20, 1, 8, 8)
    plain = Image.open(save_grid(images, str(tmp_path / "plain.png"), nrow=10))
    labelled = Image.open(save_grid(images, str(tmp_path / "labels.png"), nrow=10,
                                    row_labels=["input", "reconstruction"],
                                    column_labels=["x1", *[""] * 8, "x2"], title="interp"))
    assert labelled.width > plain.width and labelled.height > plain.height
    margin = np.asarray(labelled.convert("L"))[:, : labelled.width - plain.width]
    assert (margin < 128).any(), "no row label text was drawn"
    with pytest.raises(ValueError, match="3 labels for 2 grid rows"):
        save_grid(images, str(tmp_path / "bad.png"), nrow=10, row_labels=["a", "b", "c"])


def test_training_curve_from_metrics_csv(tmp_path):
    pytest.importorskip("matplotlib")
    csv = tmp_path / "metrics.csv"
    csv.write_text("epoch,step,train_nelbo,train_bpd,seconds,test_nelbo,test_bpd\n"
                   "1,10,120.0,2.0,1.0,110.0,1.9\n2,20,100.0,1.8,2.0,95.0,1.7\n")
    path = plot_training_curve(str(csv))
    assert path == str(tmp_path / "training_curve.png")
    picture = Image.open(path)
    assert picture.width >= 400
    colours = {tuple(c) for c in np.asarray(picture.convert("RGB")).reshape(-1, 3)}
    assert (31, 119, 180) in colours and (255, 127, 14) in colours  # train and test lines
    train_only = tmp_path / "train_only.csv"
    train_only.write_text("epoch,step,train_nelbo,train_bpd,seconds\n1,5,3.0,1.0,0.1\n")
    assert Image.open(plot_training_curve(str(train_only), str(tmp_path / "t.png"))).width > 0


def test_training_curve_plots_the_newest_of_appended_runs():
    steps = [10, 20, 30, 10, 20, 5, 10]  # three fresh runs appended to one metrics.csv
    assert [r["step"] for r in _newest_run([{"step": str(s)} for s in steps])] == ["5", "10"]
    assert len(_newest_run([{"step": "1"}, {"step": "2"}])) == 2  # one run, resumed or not
