"""Data for the course, in three parts.

* :mod:`kdlib.data.files`: the datasets from their official files, verified (NumPy only).
* :mod:`kdlib.data.splits`: validation split, training subsets, the untouched test set.
* :mod:`kdlib.data.pipeline` and :mod:`kdlib.data.augment`: batches for Keras on any backend,
  and augmentation as a Keras layer that runs on the device.

The names a notebook needs are importable from ``kdlib.data`` directly.
"""

from kdlib.data.augment import AUGMENTATIONS, Augment
from kdlib.data.files import (
    CLASS_NAMES,
    NAMES,
    SIZES,
    ChecksumError,
    Dataset,
    DatasetFormatError,
    DatasetNotFoundError,
    load,
    search_path,
)
from kdlib.data.pipeline import Batches
from kdlib.data.splits import Splits, split_validation, splits, subset

__all__ = [
    "AUGMENTATIONS",
    "Augment",
    "Batches",
    "CLASS_NAMES",
    "ChecksumError",
    "Dataset",
    "DatasetFormatError",
    "DatasetNotFoundError",
    "NAMES",
    "SIZES",
    "Splits",
    "load",
    "search_path",
    "split_validation",
    "splits",
    "subset",
]
