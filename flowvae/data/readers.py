"""Readers for the on-disk formats of the supported datasets, returning uint8 numpy arrays.

The readers are deliberately independent of torchvision's dataset classes: they open files
read-only (so a shared, write-protected copy works), accept gzip-compressed files where the
format is commonly shipped compressed, and do not verify md5 sums (so a copy re-packed by hand,
or a small synthetic folder in a test, loads as well).

A file that cannot be read (truncated, not gzip although named ``.gz``, corrupted) is one
:class:`CorruptFileError` line naming the file and the fix. The CIFAR-10 batches are pickles:
they are read by :class:`CifarUnpickler`, which builds dicts, lists, strings, numbers and
NumPy arrays only, so a planted object cannot run code.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import zlib
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np

__all__ = ["CifarUnpickler", "CorruptFileError", "find_file", "read_amat", "read_cifar_batches",
           "read_idx"]

# Type codes of the IDX format (http://yann.lecun.com/exdb/mnist/); only unsigned bytes are used
# by MNIST-like datasets, the others are listed so that a wrong file fails with a clear message.
_IDX_UBYTE = 0x08
_IDX_TYPES = {0x08: "uint8", 0x09: "int8", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

_ASCII_ZERO, _ASCII_ONE = ord("0"), ord("1")
_ASCII_SPACE, _ASCII_NEWLINE = ord(" "), ord("\n")
_WHITESPACE = np.frombuffer(b" \t\r\n\v\f", dtype=np.uint8)


class CorruptFileError(ValueError):
    """A dataset file that cannot be read: one line naming the file, the cause and the fix."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path} is truncated or corrupted ({' '.join(reason.split())}); "
                         "delete it and load the dataset again with download=True, or copy an "
                         "intact file there")
        self.path = path


def _read_bytes(path: str) -> bytes:
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            return f.read()
    except (EOFError, zlib.error, gzip.BadGzipFile) as err:  # a cut or non-gzip ".gz"
        raise CorruptFileError(path, f"{type(err).__name__}: {err}") from err


def read_idx(path: str) -> np.ndarray:
    """Read an IDX file (the MNIST / Fashion-MNIST format), plain or gzip-compressed.

    Args:
        path: an ``*-idx?-ubyte`` file, optionally ending in ``.gz``.

    Returns:
        A writable ``uint8`` array whose shape is the one stored in the header, e.g.
        ``(60000, 28, 28)`` for ``train-images-idx3-ubyte``.

    Raises:
        ValueError: if the header is not an unsigned-byte IDX header or the payload size does not
            match it.
    """
    raw = _read_bytes(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise CorruptFileError(path, f"not an IDX file: bad magic number {raw[:4]!r}")
    type_code, ndim = raw[2], raw[3]
    if type_code != _IDX_UBYTE:
        kind = _IDX_TYPES.get(type_code, f"unknown type 0x{type_code:02x}")
        raise CorruptFileError(path, f"it holds {kind} values; only unsigned-byte IDX files "
                                     "are images")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise CorruptFileError(path, f"{len(raw)} bytes, shorter than its {header}-byte header")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    data = np.frombuffer(raw, dtype=np.uint8, offset=header)
    if data.size != int(np.prod(shape)):
        raise CorruptFileError(path, f"its header announces shape {shape} "
                                     f"({int(np.prod(shape))} bytes) but {data.size} bytes follow")
    # `np.frombuffer` over `bytes` is read-only; torch warns on (and must not write to) such arrays.
    return data.reshape(shape).copy()


def read_amat(path: str) -> np.ndarray:
    """Read a binary ``.amat`` file (Larochelle's fixed binarization of MNIST).

    Each line holds one image as space-separated ``0`` / ``1`` values. The width of a row is taken
    from the first line, not assumed.

    Args:
        path: a ``.amat`` or ``.amat.gz`` file.

    Returns:
        A ``uint8`` array of shape ``(N, D)`` with values in {0, 1}.

    Raises:
        ValueError: if a value is not a single ``0`` / ``1`` digit or rows differ in length.
    """
    data = _read_bytes(path).rstrip()
    first_newline = data.find(b"\n")
    width = len(data[: first_newline if first_newline >= 0 else len(data)].split())
    if width == 0:
        raise CorruptFileError(path, "no values in the first line")
    n_rows = data.count(b"\n") + 1
    raw = np.frombuffer(data, dtype=np.uint8)
    # Fast path for the canonical layout "v v ... v\n" (one character and one separator per
    # value): strided views avoid a boolean mask over the ~80 MB training file. There are
    # exactly n_rows - 1 newlines, so finding one at every row end means the rows are intact.
    if raw.size == 2 * width * n_rows - 1:
        values, separators = raw[0::2], raw[1::2]
        row_ends = separators[width - 1 :: width]
        if (
            np.all((values == _ASCII_ZERO) | (values == _ASCII_ONE))
            and np.all(row_ends == _ASCII_NEWLINE)
            and np.all((separators == _ASCII_SPACE) | (separators == _ASCII_NEWLINE))
        ):
            return (values - _ASCII_ZERO).reshape(n_rows, width)
    # Any other layout ("\r\n", tabs, blank lines, runs of spaces): keep the digits, and check
    # that everything else is whitespace and that every line holds `width` values.
    is_digit = (raw == _ASCII_ZERO) | (raw == _ASCII_ONE)
    other = raw[~is_digit]
    is_space = np.isin(other, _WHITESPACE)
    if not np.all(is_space):
        bad = bytes(other[~is_space][:10])
        raise CorruptFileError(path, f"expected only 0/1 values separated by spaces, found "
                                     f"{bad!r}")
    counts = [len(line.split()) for line in data.splitlines() if line.strip()]
    if any(count != width for count in counts):
        row = next(i for i, count in enumerate(counts) if count != width)
        raise CorruptFileError(path, f"row {row} holds {counts[row]} values, the first row "
                                     f"{width}")
    return (raw[is_digit] - _ASCII_ZERO).reshape(len(counts), width)


class CifarUnpickler(pickle.Unpickler):
    """The unpickler of CIFAR batches: besides dicts, lists, strings and numbers it builds NumPy
    arrays and dtypes and nothing else, so a planted ``__reduce__`` (``os.system``, ...)
    cannot run; such a global raises ``pickle.UnpicklingError`` naming it."""

    #: the globals a CIFAR batch (NumPy 1.x or 2.x, pickled by Python 2 or 3) refers to; Python
    #: 3's protocol 2 spells bytes as ``_codecs.encode(str, "latin1")`` (a codec, no import)
    ALLOWED = {("numpy.core.multiarray", "_reconstruct"),
               ("numpy._core.multiarray", "_reconstruct"), ("numpy", "ndarray"), ("numpy", "dtype"),
               ("_codecs", "encode")}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"it refers to {module}.{name}, which a CIFAR batch never "
                                     "holds (a planted or foreign file)")


def _read_cifar_batch(path: str) -> dict:
    """One batch as a dict with a ``uint8`` ``data`` array (rows of ``3 * H * W``) and labels."""
    try:
        # The official batches were pickled by Python 2; latin1 maps its byte strings 1:1.
        entry = CifarUnpickler(io.BytesIO(_read_bytes(path)), encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, KeyError, MemoryError) as err:
        raise CorruptFileError(path, f"{type(err).__name__}: {err}") from err
    labels = entry.get("labels", entry.get("fine_labels")) if isinstance(entry, dict) else None
    data = entry.get("data") if isinstance(entry, dict) else None
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or not isinstance(labels, list) or len(labels) != len(data) \
            or not all(isinstance(label, int) for label in labels):
        raise CorruptFileError(path, "not a CIFAR batch: expected a dict of a uint8 'data' "
                                     "array (N, 3 * H * W) and N integer 'labels'")
    return entry


def read_cifar_batches(paths: Sequence[str]) -> Tuple[np.ndarray, np.ndarray]:
    """Read CIFAR-10 python batches (``data_batch_1`` ... ``test_batch``) in the given order,
    with :class:`CifarUnpickler`.

    Args:
        paths: pickled batch files, each a dict with ``data`` (``(n, 3 * H * W)`` uint8, channels
            first, row-major) and ``labels`` (or ``fine_labels`` for CIFAR-100).

    Returns:
        ``(images, labels)``: ``uint8`` of shape ``(N, 3, H, W)`` and ``int64`` of shape ``(N,)``.

    Raises:
        CorruptFileError: a file that is truncated, corrupted, not a CIFAR batch, or refers
            to any object but NumPy arrays (nothing in it runs).
    """
    images: List[np.ndarray] = []
    labels: List[np.ndarray] = []
    side: Optional[int] = None
    for path in paths:
        entry = _read_cifar_batch(path)
        data = entry["data"]
        pixels = data.shape[1] // 3
        batch_side = int(round(pixels**0.5))
        if batch_side * batch_side * 3 != data.shape[1] or (side and batch_side != side):
            raise CorruptFileError(path, f"rows of {data.shape[1]} values are not 3 x H x H "
                                         "images")
        side = batch_side
        images.append(data.reshape(-1, 3, side, side))
        labels.append(np.asarray(entry.get("labels", entry.get("fine_labels")), dtype=np.int64))
    return np.concatenate(images), np.concatenate(labels)


def find_file(folder: str, name: str, *, gz_ok: bool) -> Optional[str]:
    """The path of ``name`` (or of ``name + ".gz"`` if ``gz_ok``) in ``folder``, else None."""
    for candidate in (name, name + ".gz") if gz_ok else (name,):
        path = os.path.join(folder, candidate)
        if os.path.isfile(path):
            return path
    return None
