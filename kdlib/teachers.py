"""Teacher recipes with explicit arguments: the data a teacher learns from, the builder and its
arguments, the training schedule. Trained once and cached (``kdlib.cache``), so a second run,
or another notebook with the same recipe, loads what the first trained.
"""

from __future__ import annotations

import functools

import keras

from kdlib import data, models, train


def vgg(
    dataset: data.Dataset,
    *,
    n_val: int,
    n_teacher: int | None,
    width: float,
    epochs: int,
    lr: float,
    optimizer: str,
    schedule: str,
    augment: str | None,
    batch_size: int,
    seed: int,
) -> tuple[keras.Model, dict]:
    """The FitNets notebook's VGG-style teacher (``kdlib.models.vgg_teacher`` at ``width``, with
    BatchNorm), trained on ``n_teacher`` training images of ``dataset`` with the validation split
    of ``n_val`` images held out (the same split ``data.splits(dataset, n_val, ...)`` gives the
    students), ``augment`` (None or ``"flip_crop"``) on the device. Notebook 03 trains it.
    ``seed`` seeds the weights and the batch order, not the split: with another seed the
    teacher still never sees the students' validation images. Returns ``(teacher, info)`` as
    ``kdlib.train.cached_classifier``."""
    sp = data.splits(dataset, n_val, n_teacher)
    build = functools.partial(
        models.vgg_teacher,
        sp.train[0].shape[1:],
        width=width,
        batch_norm=True,
        augment=augment,
        name="teacher",
    )
    return train.cached_classifier(
        f"vgg_teacher_{dataset.name}",
        build,
        data.Batches(*sp.train, batch_size, shuffle=True, seed=seed),
        data.Batches(*sp.val, 500),
        epochs=epochs,
        seed=seed,
        lr=lr,
        optimizer=optimizer,
        schedule=schedule,
    )
