"""Image datasets as ``uint8`` tensors: one entry point, :func:`load_dataset`.

Files are looked up under a data root (``root=``, else ``$FLOWVAE_DATA``, else ``./data``) in the
layout torchvision uses, so a folder filled by torchvision works and vice versa. The files are
read here, read-only and without md5 checks; torchvision is only called to download a dataset
that is missing.
"""

from __future__ import annotations

import os
from typing import Callable, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from flowvae.data.pixels import BINARIZE_MODES
from flowvae.data.pixels import binarize as binarize_pixels
from flowvae.data.readers import (
    CorruptFileError,
    find_file,
    read_amat,
    read_cifar_batches,
    read_idx,
)

__all__ = [
    "DATASETS",
    "DEFAULT_ROOT",
    "ENV_VAR",
    "DatasetNotFoundError",
    "ImageDataset",
    "ImageFileDataset",
    "SPLITS",
    "load_dataset",
    "resolve_root",
]

DATASETS = ("digits", "mnist", "fashion-mnist", "binarized-mnist", "cifar10", "celeba")
"""Names accepted by :func:`load_dataset`."""

SPLITS = {
    "digits": ("train", "test"),
    "mnist": ("train", "test"),
    "fashion-mnist": ("train", "test"),
    "binarized-mnist": ("train", "valid", "test"),
    "cifar10": ("train", "test"),
    "celeba": ("train", "valid", "test"),
}
"""The split names of each dataset."""

ENV_VAR = "FLOWVAE_DATA"
DEFAULT_ROOT = "./data"

# sklearn's digits: each pixel counts the set bits of a 4x4 block of a 32x32 bitmap, so 0..16.
_DIGITS_MAX = 16
_DIGITS_TRAIN = 1500

# Hugo Larochelle's fixed binarization (Larochelle & Murray, 2011), split 50000/10000/10000.
_BINARIZED_MNIST_URL = "http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist"

# The aligned CelebA faces are 178x218; a central 148x148 crop keeps the face and drops most of
# the background, the usual preprocessing of VAE papers before resizing to 64x64.
_CELEBA_CROP = 148
_CELEBA_SIZE = 64
_CELEBA_SPLIT_CODES = {"train": "0", "valid": "1", "test": "2"}

Fetch = Callable[[], object]


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are missing and could not be downloaded.

    The message names the dataset, the folder searched, the files expected there and how to
    point ``FLOWVAE_DATA`` at a copy; the same facts are attributes.

    Attributes:
        name: the dataset name.
        folder: the folder that was searched.
        expected: the file names expected in ``folder``.
    """

    def __init__(
        self,
        message: str,
        *,
        name: Optional[str] = None,
        folder: Optional[str] = None,
        expected: Sequence[str] = (),
    ) -> None:
        super().__init__(message)
        self.name = name
        self.folder = folder
        self.expected = tuple(expected)


class ImageDataset(Dataset):
    """An image split held in memory; items are ``uint8`` image tensors ``(C, H, W)`` alone.

    Items carry no label, because the VAE code consumes ``x`` only; labels, when the dataset has
    them, are in :attr:`labels`. The whole split is :attr:`images`, so ``ds.images[:n]`` is a
    batch without a DataLoader.

    ``binarize="threshold"`` is applied once, here, so :attr:`images` holds {0, 1}.
    ``binarize="dynamic"`` draws a fresh ``Bernoulli(x / 255)`` binarization on every
    ``__getitem__`` (from torch's global generator, which DataLoader seeds per worker), and
    :attr:`images` keeps the grey levels the draws use.

    Args:
        images: ``uint8`` tensor ``(N, C, H, W)``.
        labels: optional integer tensor ``(N,)``.
        levels: number of intensity levels stored in ``images`` (256 for 8-bit, 2 for binary).
        binarize: None, ``"dynamic"`` or ``"threshold"``.

    Attributes:
        images: ``uint8`` tensor ``(N, C, H, W)``.
        labels: ``int64`` tensor ``(N,)`` or None.
        levels: number of intensity levels of the items (2 once binarized), e.g. for
            :func:`~flowvae.data.to_unit` and :func:`~flowvae.data.dequantize`.
        binarize: the binarization mode, or None.

    Example:
        >>> ds = ImageDataset(torch.tensor([[[[0, 128], [255, 3]]]], dtype=torch.uint8))
        >>> len(ds), ds.image_shape, ds[0].dtype
        (1, (1, 2, 2), torch.uint8)
    """

    def __init__(
        self,
        images: Tensor,
        labels: Optional[Tensor] = None,
        *,
        levels: int = 256,
        binarize: Optional[str] = None,
    ) -> None:
        if not isinstance(images, Tensor) or images.dtype != torch.uint8 or images.dim() != 4:
            raise TypeError("images must be a uint8 tensor of shape (N, C, H, W)")
        if labels is not None:
            labels = torch.as_tensor(labels, dtype=torch.int64)
            if labels.shape != images.shape[:1]:
                raise ValueError(
                    f"labels of shape {tuple(labels.shape)} do not match {len(images)} images"
                )
        _check_binarize(binarize, levels)
        if binarize == "threshold":
            images = binarize_pixels(images, mode="threshold", levels=levels)
        self.images = images
        self.labels = labels
        self.binarize = binarize
        self._stored_levels = levels
        self.levels = levels if binarize is None else 2

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> Tensor:
        x = self.images[index]
        if self.binarize == "dynamic":
            return binarize_pixels(x, mode="dynamic", levels=self._stored_levels)
        return x

    @property
    def image_shape(self) -> Tuple[int, int, int]:
        """``(C, H, W)`` of one item."""
        return tuple(self.images.shape[1:])

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(n={len(self)}, image_shape={self.image_shape}, "
            f"levels={self.levels}, binarize={self.binarize!r})"
        )


class ImageFileDataset(Dataset):
    """Images decoded from files on every access (CelebA); items are ``uint8`` ``(C, S, S)``.

    Each image is converted to RGB, center-cropped to ``crop x crop`` (skipped if None),
    resized to ``size x size`` with antialiasing, then padded and binarized like
    :class:`ImageDataset`. :meth:`to_memory` decodes all of them into an :class:`ImageDataset`.

    Args:
        paths: image files, in item order.
        size: side of the resized images.
        crop: side of the central crop taken before resizing, or None.
        pad_to: side to zero-pad to after resizing, or None.
        binarize: None, ``"dynamic"`` or ``"threshold"`` (see :class:`ImageDataset`).
    """

    def __init__(
        self,
        paths: Sequence[str],
        *,
        size: int,
        crop: Optional[int] = None,
        pad_to: Optional[int] = None,
        binarize: Optional[str] = None,
    ) -> None:
        _check_binarize(binarize, 256)
        if pad_to is not None and pad_to < size:
            raise ValueError(f"pad_to={pad_to} is smaller than the images ({size}x{size})")
        self.paths = list(paths)
        self.size = size
        self.crop = crop
        self.pad_to = pad_to
        self.binarize = binarize
        self.levels = 256 if binarize is None else 2

    def __len__(self) -> int:
        return len(self.paths)

    def _load(self, index: int) -> Tensor:
        # Imported here: torchvision and PIL are only needed once a file is decoded.
        import torchvision.transforms.functional as TF
        from PIL import Image

        try:
            with Image.open(self.paths[index]) as image:
                image = image.convert("RGB")
        except (OSError, SyntaxError, ValueError) as err:  # PIL's errors for a cut or bad file
            if isinstance(err, FileNotFoundError):
                raise
            raise CorruptFileError(self.paths[index], f"{type(err).__name__}: {err}") from err
        if self.crop is not None:
            image = TF.center_crop(image, [self.crop, self.crop])
        image = TF.resize(image, [self.size, self.size], antialias=True)
        x = TF.pil_to_tensor(image)
        if self.pad_to is not None:
            x = _pad(x, self.pad_to)
        return x

    def __getitem__(self, index: int) -> Tensor:
        x = self._load(index)
        if self.binarize is not None:
            x = binarize_pixels(x, mode=self.binarize)
        return x

    @property
    def image_shape(self) -> Tuple[int, int, int]:
        """``(C, H, W)`` of one item."""
        side = self.size if self.pad_to is None else self.pad_to
        return (3, side, side)

    def to_memory(self) -> ImageDataset:
        """Decode every image into one :class:`ImageDataset` (slow for all of CelebA)."""
        images = torch.empty((len(self), *self.image_shape), dtype=torch.uint8)
        for i in range(len(self)):
            images[i] = self._load(i)
        return ImageDataset(images, binarize=self.binarize)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(n={len(self)}, image_shape={self.image_shape}, "
            f"levels={self.levels}, binarize={self.binarize!r})"
        )


def resolve_root(root: Union[str, os.PathLike, None] = None) -> str:
    """The data root: ``root`` if given, else ``$FLOWVAE_DATA`` if set, else ``./data``.

    Args:
        root: an explicit folder, or None.

    Returns:
        The folder as an absolute path (``~`` expanded).

    Example:
        >>> resolve_root("/srv/datasets")
        '/srv/datasets'
    """
    if root is None:
        root = os.environ.get(ENV_VAR) or DEFAULT_ROOT
    return os.path.abspath(os.path.expanduser(os.fspath(root)))


def load_dataset(
    name: str,
    split: str = "train",
    root: Union[str, os.PathLike, None] = None,
    download: bool = True,
    *,
    pad_to: Optional[int] = None,
    binarize: Optional[str] = None,
    size: Optional[int] = None,
    crop: Optional[int] = None,
) -> Union[ImageDataset, ImageFileDataset]:
    """Load one split of an image dataset; items are ``uint8`` image tensors ``(C, H, W)``.

    ========================  ==================  =========  ==================================
    name                      splits              item       files under ``root``
    ========================  ==================  =========  ==================================
    ``digits``                train / test        1 x 8 x 8  none (bundled with scikit-learn)
    ``mnist``                 train / test        1 x 28x28  ``MNIST/raw/*-idx?-ubyte[.gz]``
    ``fashion-mnist``         train / test        1 x 28x28  ``FashionMNIST/raw/...`` (same)
    ``binarized-mnist``       train / valid/test  1 x 28x28  ``BinarizedMNIST/*.amat[.gz]``
    ``cifar10``               train / test        3 x 32x32  ``cifar-10-batches-py/*_batch*``
    ``celeba``                train / valid/test  3 x 64x64  ``celeba/img_align_celeba/``,
                                                             ``celeba/list_eval_partition.txt``
    ========================  ==================  =========  ==================================

    Values are grey levels 0..255, except for ``binarized-mnist`` (Larochelle's fixed
    binarization, 50000 / 10000 / 10000 images) and the ``binarize=`` options, whose items are
    ``uint8`` in {0, 1}; :attr:`ImageDataset.levels` says which (256 or 2). ``digits`` has
    intensities 0..16, rescaled to ``round(v * 255 / 16)``; its first 1500 images form the
    train split and the last 297 the test split (a fixed split, no random permutation).

    The returned :class:`ImageDataset` holds the whole split in :attr:`ImageDataset.images`
    ``(N, C, H, W)``; ``celeba`` returns an :class:`ImageFileDataset` that decodes its JPEGs
    on access (``.to_memory()`` loads them all).

    Args:
        name: one of :data:`DATASETS` (case and ``_`` / ``-`` do not matter).
        split: one of the dataset's splits (:data:`SPLITS`).
        root: data folder; if None, ``$FLOWVAE_DATA``, else ``./data``.
        download: if the files are missing, download them into ``root`` with torchvision's
            downloaders (the Larochelle URLs for ``binarized-mnist``).
        pad_to: zero-pad images symmetrically to ``pad_to x pad_to`` (e.g. 28 -> 32 adds two
            rows and columns on each side), or None.
        binarize: None; ``"dynamic"``: every access draws ``Bernoulli(x / 255)``;
            ``"threshold"``: ``x >= 128``, once. Not allowed for ``binarized-mnist``.
        size: ``celeba`` only: side of the resized images (default 64).
        crop: ``celeba`` only: side of the central square crop taken before resizing (default
            148). To keep whole images, build :class:`ImageFileDataset` with ``crop=None``.

    Returns:
        A ``torch.utils.data.Dataset`` of ``uint8`` tensors ``(C, H, W)``.

    Raises:
        ValueError: unknown ``name`` or ``split``, or an option that does not apply.
        DatasetNotFoundError: the files are missing and could not be downloaded.

    Example:
        >>> train = load_dataset("digits", split="train")
        >>> test = load_dataset("digits", split="test")
        >>> len(train), len(test), train[0].shape, train[0].dtype, int(train.images.max())
        (1500, 297, torch.Size([1, 8, 8]), torch.uint8, 255)
        >>> load_dataset("digits", split="test", pad_to=12)[0].shape
        torch.Size([1, 12, 12])
    """
    key = str(name).strip().lower().replace("_", "-")
    if key not in SPLITS:
        raise ValueError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}")
    if split not in SPLITS[key]:
        raise ValueError(
            f"unknown split {split!r} for dataset {key!r}; its splits are {', '.join(SPLITS[key])}"
        )
    if key != "celeba" and (size is not None or crop is not None):
        raise ValueError(f"size= and crop= apply to 'celeba' only, not to {key!r}")
    if binarize is not None and key == "binarized-mnist":
        raise ValueError("'binarized-mnist' is binary already; binarize= must be None")
    _check_binarize(binarize, 256)
    root = resolve_root(root)

    if key == "celeba":
        return _celeba(
            root,
            split,
            download,
            size=_CELEBA_SIZE if size is None else size,
            crop=_CELEBA_CROP if crop is None else crop,
            pad_to=pad_to,
            binarize=binarize,
        )
    labels: Optional[np.ndarray] = None
    levels = 256
    if key == "digits":
        images, labels = _digits(split)
    elif key in ("mnist", "fashion-mnist"):
        images, labels = _mnist_like(key, root, split, download)
    elif key == "binarized-mnist":
        images, levels = _binarized_mnist(root, split, download), 2
    else:
        images, labels = _cifar10(root, split, download)
    images = torch.from_numpy(np.ascontiguousarray(images))
    if pad_to is not None:
        images = _pad(images, pad_to)
    labels = None if labels is None else torch.from_numpy(labels.astype(np.int64))
    return ImageDataset(images, labels, levels=levels, binarize=binarize)


def _check_binarize(binarize: Optional[str], levels: int) -> None:
    if binarize is not None and binarize not in BINARIZE_MODES:
        raise ValueError(f"binarize must be None or one of {BINARIZE_MODES}, got {binarize!r}")
    if binarize is not None and levels == 2:
        raise ValueError("the images are binary already; binarize= must be None")


def _pad(images: Tensor, size: int) -> Tensor:
    """Zero-pad the last two dims to ``size``; an odd margin puts the extra row below / right."""
    height, width = images.shape[-2:]
    if size < height or size < width:
        raise ValueError(f"pad_to={size} is smaller than the images ({height}x{width})")
    top, left = (size - height) // 2, (size - width) // 2
    return F.pad(images, (left, size - width - left, top, size - height - top))


def _require(
    name: str,
    split: str,
    root: str,
    folder: str,
    files: Sequence[str],
    *,
    gz_ok: bool,
    download: bool,
    fetch: Fetch,
) -> List[str]:
    """Paths of ``files`` in ``folder``, downloading them once if allowed; else raise.

    A name ending in ``/`` is a directory.
    """

    def locate() -> Optional[List[str]]:
        paths = []
        for file in files:
            if file.endswith("/"):
                path = os.path.join(folder, file.rstrip("/"))
                path = path if os.path.isdir(path) else None
            else:
                path = find_file(folder, file, gz_ok=gz_ok)
            if path is None:
                return None
            paths.append(path)
        return paths

    paths = locate()
    if paths is not None:
        return paths
    if not download:
        reason = "download=False"
    else:
        try:
            fetch()
        # Any failure (no network, read-only root, missing gdown, bad checksum) means the same
        # to the caller: the data is not there. The cause stays chained for debugging.
        except Exception as err:
            reason = f"the download failed: {type(err).__name__}: {err}"
            raise _not_found(name, split, root, folder, files, gz_ok, reason) from err
        paths = locate()
        if paths is not None:
            return paths
        reason = "the download finished but did not produce these files"
    raise _not_found(name, split, root, folder, files, gz_ok, reason)


def _not_found(
    name: str,
    split: str,
    root: str,
    folder: str,
    files: Sequence[str],
    gz_ok: bool,
    reason: str,
) -> DatasetNotFoundError:
    expected = [f + "[.gz]" if gz_ok and not f.endswith("/") else f for f in files]
    relative = os.path.relpath(os.path.join(folder, files[0]), root)
    message = (
        f"dataset {name!r} (split {split!r}) not found.\n"
        f"  searched: {folder}\n"
        f"  expected: {', '.join(expected)}\n"
        f"  reason:   {reason.strip()}\n"
        f"Copy the files there, call load_dataset(..., download=True) on a machine with network "
        f"access, or point {ENV_VAR} (or root=) at a folder holding a copy: "
        f"export {ENV_VAR}=/path/to/data with /path/to/data/{relative}."
    )
    return DatasetNotFoundError(message, name=name, folder=folder, expected=expected)


def _digits(split: str) -> Tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.floor(digits.images * (255 / _DIGITS_MAX) + 0.5).astype(np.uint8)[:, None]
    part = slice(None, _DIGITS_TRAIN) if split == "train" else slice(_DIGITS_TRAIN, None)
    return images[part], digits.target[part]


def _mnist_like(key: str, root: str, split: str, download: bool) -> Tuple[np.ndarray, np.ndarray]:
    # torchvision's class names are the folder names: <root>/MNIST/raw, <root>/FashionMNIST/raw.
    class_name = "MNIST" if key == "mnist" else "FashionMNIST"
    prefix = "train" if split == "train" else "t10k"

    def fetch() -> object:
        import torchvision.datasets

        return getattr(torchvision.datasets, class_name)(
            root, train=split == "train", download=True
        )

    images_path, labels_path = _require(
        key,
        split,
        root,
        os.path.join(root, class_name, "raw"),
        (f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"),
        gz_ok=True,
        download=download,
        fetch=fetch,
    )
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or labels.shape != images.shape[:1]:
        raise ValueError(
            f"{images_path} and {labels_path} hold shapes {images.shape} and {labels.shape}, "
            "not (N, H, W) images with N labels"
        )
    return images[:, None], labels


def _binarized_mnist(root: str, split: str, download: bool) -> np.ndarray:
    folder = os.path.join(root, "BinarizedMNIST")
    file = f"binarized_mnist_{split}.amat"

    def fetch() -> object:
        from torchvision.datasets import utils

        return utils.download_url(f"{_BINARIZED_MNIST_URL}/{file}", folder, filename=file)

    (path,) = _require(
        "binarized-mnist", split, root, folder, (file,), gz_ok=True, download=download, fetch=fetch
    )
    rows = read_amat(path)
    side = int(round(rows.shape[1] ** 0.5))
    if side * side != rows.shape[1]:
        raise ValueError(f"{path}: rows of {rows.shape[1]} values are not square images")
    return rows.reshape(-1, 1, side, side)


def _cifar10(root: str, split: str, download: bool) -> Tuple[np.ndarray, np.ndarray]:
    # The file names of the official python version (what torchvision downloads and extracts).
    files = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]

    def fetch() -> object:
        import torchvision.datasets

        return torchvision.datasets.CIFAR10(root, train=split == "train", download=True)

    paths = _require(
        "cifar10",
        split,
        root,
        os.path.join(root, "cifar-10-batches-py"),
        files,
        gz_ok=False,
        download=download,
        fetch=fetch,
    )
    return read_cifar_batches(paths)


def _celeba(
    root: str,
    split: str,
    download: bool,
    *,
    size: int,
    crop: Optional[int],
    pad_to: Optional[int],
    binarize: Optional[str],
) -> ImageFileDataset:
    folder = os.path.join(root, "celeba")

    def fetch() -> object:
        import torchvision.datasets

        return torchvision.datasets.CelebA(root, split=split, download=True)

    partition, images_dir = _require(
        "celeba",
        split,
        root,
        folder,
        ("list_eval_partition.txt", "img_align_celeba/"),
        gz_ok=False,
        download=download,
        fetch=fetch,
    )
    code = _CELEBA_SPLIT_CODES[split]
    with open(partition) as f:
        rows = [line.split() for line in f if line.strip()]
    paths = [os.path.join(images_dir, row[0]) for row in rows if row[1] == code]
    return ImageFileDataset(paths, size=size, crop=crop, pad_to=pad_to, binarize=binarize)
