"""Datasets as ``uint8`` image tensors, and the pixel preprocessing the models apply to them.

``load_dataset(name, split)`` returns a ``torch.utils.data.Dataset`` whose items are ``uint8``
tensors ``(C, H, W)``; ``dequantize`` / ``to_unit`` / ``binarize`` turn batches into floats or
binary values on the model's side.
"""

from flowvae.data.datasets import (
    DATASETS,
    ENV_VAR,
    SPLITS,
    DatasetNotFoundError,
    ImageDataset,
    ImageFileDataset,
    load_dataset,
    resolve_root,
)
from flowvae.data.pixels import BINARIZE_MODES, binarize, dequantize, to_unit
from flowvae.data.readers import CorruptFileError

__all__ = [
    "BINARIZE_MODES",
    "DATASETS",
    "ENV_VAR",
    "SPLITS",
    "CorruptFileError",
    "DatasetNotFoundError",
    "ImageDataset",
    "ImageFileDataset",
    "binarize",
    "dequantize",
    "load_dataset",
    "resolve_root",
    "to_unit",
]
