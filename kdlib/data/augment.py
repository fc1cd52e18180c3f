"""Data augmentation as a seedable Keras layer that runs on the device, inside the training step,
on every backend: random integer translations with zero fill, and horizontal flips.

* ``"jitter"``: shifts of up to 2 pixels in each direction (Hinton et al.'s MNIST teacher).
* ``"flip_crop"``: pad 4, random crop back to size (shifts of up to 4 pixels) and a random
  horizontal flip (the usual CIFAR-10 recipe).

The layer is the identity at inference (``training=False``), so a model that carries it (see
``kdlib.models``: every builder takes ``augment=``) predicts on clean images; the
``kdlib.distill.Distiller`` applies it to each batch before the teacher and the student see it.
The shifts are exact: each is a product with one-hot selection matrices (no interpolation, and
nothing that XLA cannot compile), which costs little next to a convolution.
"""

from __future__ import annotations

import keras
from keras import ops

AUGMENTATIONS = {"jitter": (2, False), "flip_crop": (4, True)}  # kind: (max shift in px, flip)


def check(kind: str | None) -> str | None:
    """Return ``kind`` if it is None or a known augmentation; otherwise raise ValueError."""
    if kind is not None and kind not in AUGMENTATIONS:
        raise ValueError(f"augment must be None or one of {tuple(AUGMENTATIONS)}, got {kind!r}")
    return kind


@keras.saving.register_keras_serializable(package="kdlib")
class Augment(keras.layers.Layer):
    """Random translation by up to ``pad`` pixels (zero fill), optionally a horizontal flip, per
    image; only when ``training`` is true. ``seed`` makes the sequence of draws repeatable."""

    def __init__(self, kind: str = "jitter", seed: int | None = None, **kwargs):
        kwargs.setdefault("dtype", "float32")  # exact pixel copies under mixed precision
        super().__init__(**kwargs)
        if check(kind) is None:
            raise ValueError("Augment needs a kind, one of " + ", ".join(AUGMENTATIONS))
        self.kind, self.seed = kind, seed
        self.pad, self.flip = AUGMENTATIONS[kind]
        self.generator = keras.random.SeedGenerator(seed)

    def build(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(
                f"augmentation shifts images: it needs inputs of shape (batch, height, width, "
                f"channels), got {tuple(input_shape)}"
            )
        super().build(input_shape)

    def _shift_matrix(self, size: int, offsets):
        """(batch, size, size + 2 pad) one-hot rows: row i of image b picks padded row
        i + offset."""
        index = offsets[:, None] + ops.arange(size, dtype="int32")[None, :]
        return ops.one_hot(index, size + 2 * self.pad, dtype=self.compute_dtype)

    def call(self, images, training=None):
        if not training:
            return images
        batch, height, width = ops.shape(images)[0], images.shape[1], images.shape[2]
        p = self.pad
        padded = ops.pad(images, [[0, 0], [p, p], [p, p], [0, 0]])
        dy = keras.random.randint((batch,), 0, 2 * p + 1, seed=self.generator, dtype="int32")
        dx = keras.random.randint((batch,), 0, 2 * p + 1, seed=self.generator, dtype="int32")
        out = ops.einsum("bhi,biwc->bhwc", self._shift_matrix(height, dy), padded)
        out = ops.einsum("bwj,bhjc->bhwc", self._shift_matrix(width, dx), out)
        if self.flip:
            flip = keras.random.randint((batch,), 0, 2, seed=self.generator, dtype="int32") > 0
            out = ops.where(flip[:, None, None, None], ops.flip(out, axis=2), out)
        return out

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "kind": self.kind, "seed": self.seed}
