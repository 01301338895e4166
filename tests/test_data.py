"""flowvae.data: dataset loading, root resolution, errors, padding, binarization, dequantization.

Tests on MNIST-like data use the offline copy (`data_root` fixture, skipped when absent) and
check the loader against the raw files read independently; CIFAR-10, CelebA, `.amat` parsing and
the error paths run on small synthetic folders under `tmp_path`. Nothing is downloaded.
"""

import gzip
import math
import os
import pickle
import shutil
import time
import urllib.error

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from flowvae.data import (
    DATASETS,
    SPLITS,
    DatasetNotFoundError,
    ImageDataset,
    ImageFileDataset,
    binarize,
    dequantize,
    load_dataset,
    resolve_root,
    to_unit,
)
from flowvae.data.readers import read_amat

MNIST_LIKE = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}
MNIST_SIZES = {"train": 60000, "test": 10000}
BINARIZED_SIZES = {"train": 50000, "valid": 10000, "test": 10000}


def _raw_idx_images(folder, prefix, index):
    """Image `index` straight from the uncompressed idx file: 16-byte header, then 28x28 bytes."""
    with open(os.path.join(folder, f"{prefix}-images-idx3-ubyte"), "rb") as f:
        f.seek(16 + index * 28 * 28)
        return torch.tensor(list(f.read(28 * 28)), dtype=torch.uint8).reshape(1, 28, 28)


def _raw_idx_label(folder, prefix, index):
    with open(os.path.join(folder, f"{prefix}-labels-idx1-ubyte"), "rb") as f:
        f.seek(8 + index)
        return f.read(1)[0]


# ---------------------------------------------------------------------------- MNIST-like


@pytest.mark.parametrize("split", ["train", "test"])
@pytest.mark.parametrize("name", list(MNIST_LIKE))
def test_mnist_like_matches_raw_idx_files(data_root, name, split):
    ds = load_dataset(name, split=split, root=data_root, download=False)
    assert isinstance(ds, ImageDataset)
    assert len(ds) == MNIST_SIZES[split]
    assert ds.images.shape == (MNIST_SIZES[split], 1, 28, 28)
    assert ds.images.dtype == torch.uint8 and ds.levels == 256
    assert int(ds.images.max()) == 255 and int(ds.images.min()) == 0
    item = ds[0]
    assert isinstance(item, torch.Tensor)  # the image alone, no label
    assert item.shape == (1, 28, 28) and item.dtype == torch.uint8
    folder = os.path.join(data_root, MNIST_LIKE[name], "raw")
    prefix = "train" if split == "train" else "t10k"
    for index in (0, 1, len(ds) - 1):
        assert torch.equal(ds[index], _raw_idx_images(folder, prefix, index))
        assert int(ds.labels[index]) == _raw_idx_label(folder, prefix, index)
    assert ds.labels.shape == (len(ds),) and ds.labels.dtype == torch.int64
    assert set(ds.labels.unique().tolist()) == set(range(10))


@pytest.mark.parametrize("name", list(MNIST_LIKE))
def test_mnist_like_equals_torchvision_reading_the_shared_copy(data_root, name):
    """torchvision reads `raw/` read-only (no `processed/` written) and agrees with us."""
    import torchvision.datasets

    folder = os.path.join(data_root, MNIST_LIKE[name])
    before = sorted(os.listdir(folder))
    reference = getattr(torchvision.datasets, MNIST_LIKE[name])(
        data_root, train=False, download=False
    )
    assert sorted(os.listdir(folder)) == before
    ds = load_dataset(name, split="test", root=data_root, download=False)
    assert torch.equal(ds.images[:, 0], reference.data)
    assert torch.equal(ds.labels, reference.targets)


def test_mnist_reads_gzipped_idx_files(data_root, tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for file in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        shutil.copy(os.path.join(data_root, "MNIST", "raw", file), raw / file)
    from_gz = load_dataset("mnist", split="test", root=tmp_path, download=False)
    plain = load_dataset("mnist", split="test", root=data_root, download=False)
    assert torch.equal(from_gz.images, plain.images)
    assert torch.equal(from_gz.labels, plain.labels)


def test_truncated_idx_file_is_reported(data_root, tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    src = os.path.join(data_root, "MNIST", "raw")
    with open(os.path.join(src, "t10k-images-idx3-ubyte"), "rb") as f:
        (raw / "t10k-images-idx3-ubyte").write_bytes(f.read(16 + 5 * 28 * 28 + 3))
    shutil.copy(os.path.join(src, "t10k-labels-idx1-ubyte"), raw)
    with pytest.raises(ValueError, match="truncated"):
        load_dataset("mnist", split="test", root=tmp_path, download=False)


# ---------------------------------------------------------------------------- binarized MNIST


def test_binarized_mnist_sizes_values_and_speed(data_root):
    folder = os.path.join(data_root, "BinarizedMNIST")
    for split, size in BINARIZED_SIZES.items():
        start = time.perf_counter()
        ds = load_dataset("binarized-mnist", split=split, root=data_root, download=False)
        elapsed = time.perf_counter() - start
        assert elapsed < 5.0, f"loading binarized-mnist {split} took {elapsed:.1f} s"
        assert ds.images.shape == (size, 1, 28, 28) and ds.images.dtype == torch.uint8
        assert set(ds.images.unique().tolist()) == {0, 1}
        assert ds.levels == 2 and ds.labels is None
        with gzip.open(os.path.join(folder, f"binarized_mnist_{split}.amat.gz"), "rt") as f:
            first = next(f)
        expected = torch.tensor([int(v) for v in first.split()], dtype=torch.uint8)
        assert torch.equal(ds[0].flatten(), expected)
    # The same images as grey MNIST would give a mean near MNIST's ink fraction, not 0 or 1.
    assert 0.05 < ds.images.float().mean() < 0.25


def test_binarized_mnist_reads_plain_amat_in_any_whitespace_layout(tmp_path):
    folder = tmp_path / "BinarizedMNIST"
    folder.mkdir()
    rows = np.random.default_rng(0).integers(0, 2, size=(3, 16))
    canonical = "".join(" ".join(map(str, row)) + "\n" for row in rows)
    (folder / "binarized_mnist_valid.amat").write_text(canonical)
    ds = load_dataset("binarized-mnist", split="valid", root=tmp_path, download=False)
    assert torch.equal(ds.images, torch.tensor(rows, dtype=torch.uint8).reshape(3, 1, 4, 4))
    sloppy = "".join("  ".join(map(str, row)) + " \r\n" for row in rows) + "\n\n"
    (folder / "binarized_mnist_valid.amat").write_text(sloppy)
    assert np.array_equal(read_amat(str(folder / "binarized_mnist_valid.amat")), rows)


@pytest.mark.parametrize(
    "text, message",
    [
        ("0 1 0 1\n0 1\n0 1 0 1\n", "row 1"),
        ("0 1 0 1\n0 1 0\n1 0 1 0\n", "row 1"),  # canonical length, misplaced newline
        ("0 1 0 1\n0 0.5 1 1\n", "0/1"),
    ],
)
def test_malformed_amat_is_reported(tmp_path, text, message):
    path = tmp_path / "bad.amat"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        read_amat(str(path))


# ---------------------------------------------------------------------------- digits


def test_digits_split_values_and_determinism():
    from sklearn.datasets import load_digits

    train = load_dataset("digits", split="train")
    test = load_dataset("digits", split="test")
    assert (len(train), len(test)) == (1500, 297)
    assert len(train) + len(test) == 1797
    for ds in (train, test):
        assert ds.images.dtype == torch.uint8 and ds[0].shape == (1, 8, 8)
        assert int(ds.images.max()) == 255 and int(ds.images.min()) == 0
    raw = load_digits()
    # round(v * 255 / 16), half up: the one tie, 8 -> 127.5, becomes 128.
    expected = torch.tensor([[math.floor(v * 255 / 16 + 0.5) for v in row] for row in raw.data])
    everything = torch.cat([train.images, test.images]).reshape(1797, 64)
    assert torch.equal(everything.long(), expected)
    assert torch.equal(torch.cat([train.labels, test.labels]), torch.from_numpy(raw.target))
    again = load_dataset("digits", split="train")
    assert torch.equal(again.images, train.images)


def test_digits_ignores_root_and_download(tmp_path, monkeypatch):
    monkeypatch.setenv("FLOWVAE_DATA", str(tmp_path / "nothing-here"))
    assert len(load_dataset("digits", split="test", root=None, download=False)) == 297


def test_dataloader_yields_image_batches():
    loader = DataLoader(load_dataset("digits", split="test"), batch_size=5, shuffle=False)
    batch = next(iter(loader))
    assert isinstance(batch, torch.Tensor)
    assert batch.shape == (5, 1, 8, 8) and batch.dtype == torch.uint8


# ---------------------------------------------------------------------------- root resolution


def test_root_from_environment_variable(data_root, monkeypatch, tmp_path):
    monkeypatch.setenv("FLOWVAE_DATA", data_root)
    assert resolve_root(None) == os.path.abspath(data_root)
    assert len(load_dataset("mnist", split="test", download=False)) == 10000
    # An explicit root wins over the variable.
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("mnist", split="test", root=tmp_path, download=False)
    assert info.value.folder == str(tmp_path / "MNIST" / "raw")


def test_default_root_is_data_in_working_directory(monkeypatch, tmp_path):
    monkeypatch.delenv("FLOWVAE_DATA", raising=False)
    monkeypatch.chdir(tmp_path)
    assert resolve_root(None) == str(tmp_path / "data")
    monkeypatch.setenv("FLOWVAE_DATA", "")  # empty counts as unset
    assert resolve_root(None) == str(tmp_path / "data")
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("fashion-mnist", split="train", download=False)
    assert info.value.folder == str(tmp_path / "data" / "FashionMNIST" / "raw")


# ---------------------------------------------------------------------------- missing data

MISSING = {
    "mnist": ("MNIST/raw", ["train-images-idx3-ubyte", "train-labels-idx1-ubyte"]),
    "fashion-mnist": ("FashionMNIST/raw", ["train-images-idx3-ubyte", "train-labels-idx1-ubyte"]),
    "binarized-mnist": ("BinarizedMNIST", ["binarized_mnist_train.amat"]),
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)]),
    "celeba": ("celeba", ["list_eval_partition.txt", "img_align_celeba"]),
}


def test_every_file_dataset_has_a_missing_case():
    assert set(MISSING) == set(DATASETS) - {"digits"}


@pytest.mark.parametrize("name", list(MISSING))
def test_missing_dataset_error_says_what_where_and_how(tmp_path, name):
    folder, files = MISSING[name]
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset(name, split="train", root=tmp_path, download=False)
    error = info.value
    assert isinstance(error, FileNotFoundError)
    message = str(error)
    assert repr(name) in message
    assert str(tmp_path / folder) in message and error.folder == str(tmp_path / folder)
    for file in files:
        assert file in message
    assert "FLOWVAE_DATA" in message and "download=False" in message
    assert not any(tmp_path.iterdir())  # nothing created when download=False


@pytest.mark.parametrize("name", ["mnist", "binarized-mnist", "cifar10", "celeba"])
def test_failed_download_raises_the_same_error(tmp_path, monkeypatch, name):
    import torchvision.datasets
    from torchvision.datasets import utils

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network in this test")

    for attr in ("MNIST", "CIFAR10", "CelebA"):
        monkeypatch.setattr(torchvision.datasets, attr, offline)
    monkeypatch.setattr(utils, "download_url", offline)
    with pytest.raises(DatasetNotFoundError, match="download failed") as info:
        load_dataset(name, split="train", root=tmp_path, download=True)
    assert "no network in this test" in str(info.value)
    assert isinstance(info.value.__cause__, urllib.error.URLError)


def test_partial_folder_names_the_missing_file(tmp_path):
    _write_fake_cifar(tmp_path, per_batch=1, skip=("data_batch_3",))
    with pytest.raises(DatasetNotFoundError, match="data_batch_3"):
        load_dataset("cifar10", split="train", root=tmp_path, download=False)
    assert len(load_dataset("cifar10", split="test", root=tmp_path, download=False)) == 1


# ---------------------------------------------------------------------------- names and options


def test_unknown_name_lists_known_names():
    with pytest.raises(ValueError) as info:
        load_dataset("imagenet")
    for name in DATASETS:
        assert name in str(info.value)


@pytest.mark.parametrize("name, split", [("mnist", "valid"), ("digits", "validation")])
def test_unknown_split_lists_the_splits(name, split):
    with pytest.raises(ValueError) as info:
        load_dataset(name, split=split)
    for good in SPLITS[name]:
        assert good in str(info.value)


def test_name_spelling_is_lenient_about_case_and_underscores():
    assert len(load_dataset("DIGITS", split="test")) == 297
    assert SPLITS["fashion-mnist"] == ("train", "test")
    with pytest.raises(DatasetNotFoundError, match="'fashion-mnist'"):
        load_dataset("Fashion_MNIST", root="/nonexistent-flowvae-root", download=False)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(binarize="otsu"), "binarize"),
        (dict(size=32), "celeba"),
        (dict(crop=100), "celeba"),
        (dict(pad_to=4), "smaller"),
    ],
)
def test_invalid_options(kwargs, message):
    with pytest.raises(ValueError, match=message):
        load_dataset("digits", split="test", **kwargs)


def test_binarized_mnist_refuses_binarize(tmp_path):
    with pytest.raises(ValueError, match="binary already"):
        load_dataset("binarized-mnist", root=tmp_path, download=False, binarize="dynamic")


def test_pad_to_centres_the_original(data_root):
    plain = load_dataset("mnist", split="test", root=data_root, download=False)
    padded = load_dataset("mnist", split="test", root=data_root, download=False, pad_to=32)
    assert padded.images.shape == (10000, 1, 32, 32) and padded[0].shape == (1, 32, 32)
    assert padded.images.dtype == torch.uint8
    assert torch.equal(padded.images[:, :, 2:30, 2:30], plain.images)
    border = padded.images.clone()
    border[:, :, 2:30, 2:30] = 0
    assert int(border.max()) == 0
    assert torch.equal(padded.labels, plain.labels)


def test_pad_to_odd_margin_puts_the_extra_row_last():
    padded = load_dataset("digits", split="test", pad_to=11)
    plain = load_dataset("digits", split="test")
    assert torch.equal(padded.images[:, :, 1:9, 1:9], plain.images)


def test_dynamic_binarization_matches_pixel_intensities(data_root):
    ds = load_dataset("mnist", split="test", root=data_root, download=False, binarize="dynamic")
    grey = load_dataset("mnist", split="test", root=data_root, download=False)
    assert torch.equal(ds.images, grey.images)  # the stored images keep their grey levels
    assert ds.levels == 2
    draws = torch.stack([ds[7] for _ in range(4000)])
    assert draws.dtype == torch.uint8 and set(draws.unique().tolist()) <= {0, 1}
    assert not torch.equal(draws[0], draws[1])  # a fresh draw per access
    probs = grey[7].double() / 255
    # std of a mean of 4000 Bernoulli draws <= 0.008; 0.04 is five of them.
    assert torch.allclose(draws.double().mean(0), probs, atol=0.04)
    assert int(draws[:, probs == 0].max()) == 0 and int(draws[:, probs == 1].min()) == 1


def test_threshold_binarization_is_fixed(data_root):
    ds = load_dataset("mnist", split="test", root=data_root, download=False, binarize="threshold")
    grey = load_dataset("mnist", split="test", root=data_root, download=False)
    assert torch.equal(ds.images, (grey.images >= 128).to(torch.uint8))
    assert torch.equal(ds[3], ds[3]) and ds.levels == 2


# ---------------------------------------------------------------------------- CIFAR-10 (synthetic)


def _write_fake_cifar(root, per_batch, skip=()):
    """The python-version layout: pickled dicts with `data` (n, 3072) uint8 and `labels`."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    written = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, size=(per_batch, 3 * 32 * 32), dtype=np.uint8)
        labels = rng.integers(0, 10, size=per_batch).tolist()
        written[name] = (data, labels)
        if name in skip:
            continue
        with open(folder / name, "wb") as f:
            pickle.dump({"batch_label": name, "data": data, "labels": labels}, f, protocol=2)
    return written


def test_cifar10_on_a_synthetic_folder(tmp_path):
    written = _write_fake_cifar(tmp_path, per_batch=2)
    train = load_dataset("cifar10", split="train", root=tmp_path, download=False)
    test = load_dataset("cifar10", split="test", root=tmp_path, download=False)
    assert len(train) == 10 and len(test) == 2
    assert train[0].shape == (3, 32, 32) and train[0].dtype == torch.uint8
    data, labels = written["data_batch_2"]
    # Rows are channel-major (1024 red, 1024 green, 1024 blue), each plane row-major.
    assert torch.equal(train[2][1, 0, :], torch.from_numpy(data[0, 1024:1056]))
    assert torch.equal(train.images[2:4].reshape(2, -1), torch.from_numpy(data))
    assert train.labels[2:4].tolist() == labels
    assert torch.equal(test.images.reshape(2, -1), torch.from_numpy(written["test_batch"][0]))
    padded = load_dataset("cifar10", split="test", root=tmp_path, download=False, pad_to=36)
    assert padded[0].shape == (3, 36, 36)


# ---------------------------------------------------------------------------- CelebA (synthetic)


def test_celeba_on_a_synthetic_folder(tmp_path):
    from PIL import Image

    folder = tmp_path / "celeba"
    (folder / "img_align_celeba").mkdir(parents=True)
    colours = {"000001.jpg": (200, 30, 30), "000002.jpg": (30, 200, 30), "000003.jpg": (0, 0, 250)}
    for file, colour in colours.items():
        image = np.zeros((218, 178, 3), dtype=np.uint8)
        image[:] = colour
        image[:20] = 255  # a white band outside the central 148x148 crop
        Image.fromarray(image).save(folder / "img_align_celeba" / file, quality=95)
    (folder / "list_eval_partition.txt").write_text("000001.jpg 0\n000002.jpg 0\n000003.jpg 2\n")

    train = load_dataset("celeba", split="train", root=tmp_path, download=False)
    assert isinstance(train, ImageFileDataset) and len(train) == 2
    assert train.image_shape == (3, 64, 64)
    x = train[1]
    assert x.shape == (3, 64, 64) and x.dtype == torch.uint8
    # The crop removed the white band; JPEG keeps a flat colour within a few levels.
    assert (x.int() - torch.tensor([30, 200, 30]).view(3, 1, 1)).abs().max() <= 6
    assert len(load_dataset("celeba", split="valid", root=tmp_path, download=False)) == 0
    small = load_dataset("celeba", split="test", root=tmp_path, download=False, size=16, crop=200)
    assert small[0].shape == (3, 16, 16)
    uncropped = ImageFileDataset(small.paths, size=16)
    assert int(uncropped[0][:, 0].min()) > 240  # no crop: the white band stays at the top
    memory = train.to_memory()
    assert isinstance(memory, ImageDataset) and memory.images.shape == (2, 3, 64, 64)
    assert torch.equal(memory[1], x)
    binary = load_dataset(
        "celeba", split="train", root=tmp_path, download=False, binarize="threshold", pad_to=66
    )
    assert binary[0].shape == (3, 66, 66) and set(binary[0].unique().tolist()) <= {0, 1}


# ---------------------------------------------------------------------------- pixel helpers


def test_dequantize_range_and_inverse(float64):
    x = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    y = dequantize(x)
    assert y.dtype == torch.float64 and y.shape == x.shape
    assert bool(((y >= 0) & (y < 1)).all())
    assert torch.equal(torch.floor(y * 256).to(torch.uint8), x)
    u = y * 256 - x
    assert 0.4 < float(u.mean()) < 0.6  # roughly uniform noise, not a constant offset


def test_dequantize_never_reaches_one_in_float32():
    # (255 + u) / 256 rounds to 1.0 in float32 for u within 2**-17 of 1: ~8 of 10**6 here.
    x = torch.full((10**6,), 255, dtype=torch.uint8)
    y = dequantize(x, dtype=torch.float32, generator=torch.Generator().manual_seed(0))
    assert y.dtype == torch.float32 and float(y.max()) < 1.0 and float(y.min()) >= 255 / 256


def test_dequantize_generator_and_levels():
    x = torch.tensor([0, 1, 2, 3])
    a = dequantize(x, levels=4, generator=torch.Generator().manual_seed(1))
    b = dequantize(x, levels=4, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    assert torch.equal(torch.floor(a * 4).long(), x)
    with pytest.raises(TypeError):
        dequantize(x, dtype=torch.int32)


def test_to_unit_and_binarize_helpers():
    x = torch.tensor([0, 1, 127, 128, 254, 255], dtype=torch.uint8)
    assert to_unit(x, dtype=torch.float64).tolist() == [v / 255 for v in x.tolist()]
    assert to_unit(torch.tensor([0, 1]), levels=2).tolist() == [0.0, 1.0]
    assert binarize(x, mode="threshold").tolist() == [0, 0, 0, 1, 1, 1]
    draws = binarize(x.expand(2000, 6), mode="dynamic")
    assert draws.dtype == torch.uint8
    assert torch.allclose(draws.double().mean(0), x.double() / 255, atol=0.05)
    with pytest.raises(ValueError, match="dynamic"):
        binarize(x, mode="random")


def test_image_dataset_validates_its_inputs():
    with pytest.raises(TypeError):
        ImageDataset(torch.zeros(2, 1, 4, 4))
    with pytest.raises(TypeError):
        ImageDataset(torch.zeros(2, 4, 4, dtype=torch.uint8))
    with pytest.raises(ValueError, match="labels"):
        ImageDataset(torch.zeros(2, 1, 4, 4, dtype=torch.uint8), torch.zeros(3))
    with pytest.raises(ValueError, match="binary already"):
        ImageDataset(torch.zeros(2, 1, 4, 4, dtype=torch.uint8), levels=2, binarize="dynamic")
    ds = ImageDataset(torch.zeros(2, 1, 4, 4, dtype=torch.uint8), torch.tensor([3, 4]))
    assert "n=2" in repr(ds) and ds.labels.dtype == torch.int64


# ---------------------------------------------------------------------------- unreadable files


class _Payload:
    """Runs ``touch <marker>`` when unpickled without restriction."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("where", ["entry", "labels", "data_batch_5"])
def test_a_planted_cifar_batch_does_not_run(tmp_path, where):
    _write_fake_cifar(tmp_path, per_batch=2)
    marker = tmp_path / "pwned"
    name = "data_batch_5" if where == "data_batch_5" else "data_batch_1"
    path = tmp_path / "cifar-10-batches-py" / name
    data = np.zeros((2, 3 * 32 * 32), dtype=np.uint8)
    entry = ({"data": data, "labels": [0, _Payload(marker)]} if where == "labels"
             else {"data": data, "labels": [0, 1], "extra": _Payload(marker)})
    with open(path, "wb") as f:
        pickle.dump(entry, f, protocol=2)
    with pytest.raises(ValueError, match=rf"^{path} is truncated or corrupted \(.*posix\.system, "
                                         r"which a CIFAR batch never holds.*download=True"):
        load_dataset("cifar10", split="train", root=tmp_path, download=False)
    assert not marker.exists()
    with open(path, "rb") as f:  # the payload is live: a plain pickle.load runs it
        pickle.load(f)
    assert marker.exists()


def test_the_restricted_unpickler_reads_numpy_1_and_2_cifar_batches(tmp_path):
    """Both NumPy layouts of the array rebuilder are allowed, nothing else."""
    from flowvae.data.readers import CifarUnpickler

    data = np.arange(2 * 3 * 4 * 4, dtype=np.uint8).reshape(2, -1)
    raw = pickle.dumps({"data": data, "labels": [3, 4]}, protocol=2)
    entry = CifarUnpickler(__import__("io").BytesIO(raw)).load()
    assert np.array_equal(entry["data"], data) and entry["labels"] == [3, 4]
    with pytest.raises(pickle.UnpicklingError, match="builtins.eval"):
        CifarUnpickler(__import__("io").BytesIO(
            b"cbuiltins\neval\n(S'1'\ntR.")).load()


def _cut(path, keep):
    raw = path.read_bytes()
    path.write_bytes(raw[: int(len(raw) * keep)] if isinstance(keep, float) else keep)


def _mnist_copy(data_root, tmp_path, gz):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for file in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        file += ".gz" if gz else ""
        shutil.copy(os.path.join(data_root, "MNIST", "raw", file), raw / file)
    return raw / ("t10k-images-idx3-ubyte" + (".gz" if gz else ""))


@pytest.mark.parametrize("damage", ["truncated gzip", "not gzip", "empty", "header only"])
def test_an_unreadable_mnist_file_is_one_line_naming_it_and_the_fix(data_root, tmp_path,
                                                                     damage):
    path = _mnist_copy(data_root, tmp_path, gz=damage in ("truncated gzip", "not gzip"))
    _cut(path, {"truncated gzip": 0.5, "not gzip": b"plain bytes, not gzip",
                "empty": b"", "header only": b"\x00\x00\x08\x03\x00\x00"}[damage])
    with pytest.raises(ValueError) as info:
        load_dataset("mnist", split="test", root=tmp_path, download=False)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{path} is truncated or corrupted")
    assert message.endswith("delete it and load the dataset again with download=True, or copy "
                            "an intact file there")


@pytest.mark.parametrize("damage", [0.5, b"\x80\x02}q\x00(U\x04data"])
def test_an_unreadable_cifar_batch_is_one_line_naming_it(tmp_path, damage):
    _write_fake_cifar(tmp_path, per_batch=2)
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    _cut(path, damage)
    with pytest.raises(ValueError, match=rf"^{path} is truncated or corrupted \(.*download=True"):
        load_dataset("cifar10", split="test", root=tmp_path, download=False)


def test_a_cifar_batch_of_other_contents_is_refused(tmp_path):
    _write_fake_cifar(tmp_path, per_batch=2)
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    with open(path, "wb") as f:
        pickle.dump({"data": np.zeros((2, 3072), dtype=np.float32), "labels": [0, 1]}, f)
    with pytest.raises(ValueError, match=r"not a CIFAR batch: expected a dict of a uint8"):
        load_dataset("cifar10", split="test", root=tmp_path, download=False)


def test_an_unreadable_amat_or_celeba_file_is_one_line_naming_it(tmp_path):
    folder = tmp_path / "BinarizedMNIST"
    folder.mkdir()
    amat = folder / "binarized_mnist_test.amat.gz"
    with gzip.open(amat, "wt") as f:
        f.write(" ".join(["0"] * 784) + "\n" + " ".join(["1"] * 300) + "\n")
    with pytest.raises(ValueError, match=rf"^{amat} is truncated or corrupted \(row 1 holds 300"):
        load_dataset("binarized-mnist", split="test", root=tmp_path, download=False)
    _cut(amat, 0.5)
    with pytest.raises(ValueError, match=rf"^{amat} is truncated or corrupted \(EOFError"):
        load_dataset("binarized-mnist", split="test", root=tmp_path, download=False)

    images = tmp_path / "celeba" / "img_align_celeba"
    images.mkdir(parents=True)
    (images / "000001.jpg").write_bytes(b"\xff\xd8\xff\xe0 cut short")
    (tmp_path / "celeba" / "list_eval_partition.txt").write_text("000001.jpg 0\n")
    train = load_dataset("celeba", split="train", root=tmp_path, download=False)
    with pytest.raises(ValueError, match=rf"^{images / '000001.jpg'} is truncated or corrupted"):
        train[0]
