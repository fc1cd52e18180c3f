"""Batches for ``fit``, ``evaluate`` and ``predict`` on every Keras backend, from NumPy arrays.

:class:`Batches` is a ``keras.utils.PyDataset``: TensorFlow, JAX and PyTorch all take it, and
none of them needs ``tf.data``. Images stay ``uint8`` in memory and are scaled to float32 in
``[0, 1]`` one batch at a time; shuffling permutes indices with a seeded NumPy generator (the
same seed gives the same order on every backend, and a new order each epoch); cached teacher
logits ride along as the third element of each batch, aligned with their images.

Resizing and augmentation are not done here: they are Keras layers that run on the device
(``kdlib.models``' ``image_size`` and ``augment`` arguments, ``kdlib.data.augment``).
"""

from __future__ import annotations

import math

import keras
import numpy as np


def _images(x) -> tuple[np.ndarray, float]:
    """Check ``x`` and return it with the factor that scales it to [0, 1] floats.

    Integer arrays are pixels in 0..255 (scaled by 1/255); float arrays must already be scaled
    to [0, 1], as every model of the course expects: floats outside it (pixels stored as floats,
    shifted or normalised images) would otherwise train on inputs unlike those the models are
    evaluated and exported with.
    """
    x = np.asarray(x)
    if x.ndim < 2 or len(x) == 0:
        raise ValueError(f"images must be an array of at least one sample, got shape {x.shape}")
    if np.issubdtype(x.dtype, np.integer):
        if x.dtype != np.uint8 and (x.min() < 0 or x.max() > 255):
            raise ValueError(
                f"integer images must hold pixel values 0..255, got {x.min()}..{x.max()}"
            )
        return x, 1.0 / 255.0
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"images must be integers (0..255) or floats, got dtype {x.dtype}")
    if not np.all(np.isfinite(x)):
        raise ValueError("images contain NaN or infinite values")
    low, high = float(x.min()), float(x.max())
    if low < 0.0 or high > 1.0:
        raise ValueError(
            f"float images must be scaled to [0, 1], got values {low:g}..{high:g}. Pass pixels "
            "as uint8 (Batches scales them) or divide 0..255 floats by 255 first"
        )
    return x, 1.0


def _labels(y, n: int) -> np.ndarray:
    """Integer class indices, one per image."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(f"labels must be one class index per sample, got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be integer class indices, got dtype {y.dtype}")
    if len(y) != n:
        raise ValueError(f"x has {n} samples but y has {len(y)}")
    if y.min() < 0:
        raise ValueError("labels must be non-negative integers (class indices)")
    return y


def _logits(teacher_logits, y: np.ndarray) -> np.ndarray:
    """Cached teacher logits: one finite row per image, wide enough for every label."""
    t = np.asarray(teacher_logits, dtype=np.float32)
    if t.ndim != 2 or len(t) != len(y):
        raise ValueError(f"{len(t)} teacher logits for {len(y)} images (need shape (n, classes))")
    if not np.all(np.isfinite(t)):
        raise ValueError("teacher logits contain NaN or infinite values")
    if y.max() >= t.shape[1]:
        raise ValueError(f"a label is {y.max()} but the teacher logits have {t.shape[1]} classes")
    return t


class Batches(keras.utils.PyDataset):
    """Batches of ``(images, labels)`` or, with ``teacher_logits``, ``(images, labels,
    teacher_logits)`` (the ``Distiller``'s cached path) from NumPy arrays.

    Args:
        x: images, ``uint8`` (or other integers 0..255) NHWC, scaled to ``[0, 1]`` per batch;
            float arrays must already be scaled to ``[0, 1]`` (others are refused).
        y: integer class labels.
        batch_size: samples per batch; the last batch may be smaller.
        shuffle: a new seeded random order every epoch (images, labels and logits together).
            Shuffled batches are for training: the last, partial batch is left out (other
            samples each epoch), so every step has the same shape and JAX compiles the step
            once. Unshuffled batches (evaluation, prediction) keep every sample.
        seed: the shuffling seed.
        teacher_logits: cached logits, one row per image, in the same order as ``x``.
    """

    def __init__(
        self, x, y, batch_size: int, *, shuffle: bool = False, seed: int = 0, teacher_logits=None
    ):
        super().__init__()
        if (
            isinstance(batch_size, bool)
            or not isinstance(batch_size, (int, np.integer))
            or batch_size < 1
        ):
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.x, self._scale = _images(x)
        self.y = _labels(y, len(self.x))
        self.teacher_logits = None if teacher_logits is None else _logits(teacher_logits, self.y)
        self.batch_size, self.shuffle, self.seed = int(batch_size), bool(shuffle), int(seed)
        self.restart()

    def __len__(self) -> int:
        if self.shuffle and len(self.x) >= self.batch_size:
            return len(self.x) // self.batch_size
        return math.ceil(len(self.x) / self.batch_size)

    def __getitem__(self, i: int):
        if not 0 <= i < len(self):
            raise IndexError(f"batch {i} of {len(self)}")
        idx = self._order[i * self.batch_size : (i + 1) * self.batch_size]
        images = self.x[idx].astype(np.float32)
        if self._scale != 1.0:
            images *= np.float32(self._scale)
        if self.teacher_logits is None:
            return images, self.y[idx]
        return images, self.y[idx], self.teacher_logits[idx]

    def on_epoch_end(self) -> None:
        if self.shuffle:
            self._order = self._rng.permutation(len(self.x))

    def restart(self) -> None:
        """Start the sequence of batch orders again from ``seed``: ``kdlib.train.fit`` calls it,
        so every run on these batches sees the same batches in the same order (runs that differ
        only in how they learn, the same student alone and distilled, are then paired)."""
        self._rng = np.random.default_rng(self.seed)
        self._order = self._rng.permutation(len(self.x)) if self.shuffle else np.arange(len(self.x))

    def __repr__(self) -> str:
        cached = ", cached teacher logits" if self.teacher_logits is not None else ""
        order = "shuffled" if self.shuffle else "in order"
        size = f"{len(self.x):,} samples, {len(self)} batches of {self.batch_size}"
        return f"Batches({size}, {order}{cached})"
