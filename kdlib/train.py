"""Training and evaluation shared by every notebook: compile, fit with model selection on the
validation split, evaluate on the test split.

``fit`` works the same for a plain classifier and for a ``kdlib.distill.Distiller``: it keeps
the weights of the epoch with the best validation accuracy (never the test set), stops with a
clear error when the loss becomes NaN or infinite, and shows one progress line per run.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from pathlib import Path

import keras
import numpy as np

from kdlib import cache, data, models


def compile_classifier(model: keras.Model, lr: float = 1e-3, optimizer: str = "adam", decay_steps: int | None = None, **kwargs):
    """Compile a logits model with cross-entropy (``from_logits=True``) and accuracy.

    ``optimizer`` is ``"adam"``, ``"adamw"`` or ``"sgd"`` (Nesterov momentum 0.9) at learning
    rate ``lr``, decayed along a cosine when ``decay_steps`` is given (see
    :func:`make_optimizer`); ``kwargs`` go to ``model.compile`` (for example ``jit_compile``).
    """
    model.compile(
        optimizer=make_optimizer(optimizer, lr, decay_steps),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        **kwargs,
    )
    return model


def make_optimizer(name: str = "adam", lr: float = 1e-3, decay_steps: int | None = None) -> keras.optimizers.Optimizer:
    """A fresh optimizer (each model needs its own; seed 002 shared one between two models).

    With ``decay_steps`` the learning rate follows a cosine from ``lr`` down to 0 over that many
    steps (Loshchilov & Hutter's schedule without restarts): a short training run then ends at
    a small learning rate instead of stopping mid-stride (notebook 03's ``cpu`` teacher went from
    89.0 % after 3 epochs at a constant rate to 91.2 % after 5 epochs with this decay)."""
    if decay_steps is not None:
        if int(decay_steps) != decay_steps or decay_steps < 1:
            raise ValueError(f"decay_steps must be a positive integer, got {decay_steps!r}")
        lr = keras.optimizers.schedules.CosineDecay(lr, decay_steps=int(decay_steps))
    if name == "adam":
        return keras.optimizers.Adam(lr)
    if name == "adamw":
        return keras.optimizers.AdamW(lr, weight_decay=1e-4)
    if name == "sgd":
        return keras.optimizers.SGD(lr, momentum=0.9, nesterov=True)
    raise ValueError(f"optimizer must be 'adam', 'adamw' or 'sgd', got {name!r}")


class NonFiniteLoss(keras.callbacks.Callback):
    """Stop training with an error, not a silent NaN model, when the loss stops being finite."""

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise FloatingPointError(
                f"the training loss became {float(loss)} at batch {batch}: check for NaN inputs "
                "or logits, labels outside 0..C-1, or a learning rate that is too large"
            )


class ProgressLine(keras.callbacks.Callback):
    """One updating line per run: epoch, loss, validation accuracy, elapsed time."""

    def __init__(self, name: str, epochs: int):
        super().__init__()
        self.name, self.epochs = name, epochs

    def on_train_begin(self, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        parts = [f"{self.name}: epoch {epoch + 1}/{self.epochs}", f"loss {logs.get('loss', float('nan')):.4f}"]
        if "val_accuracy" in logs:
            parts.append(f"val acc {logs['val_accuracy']:.4f}")
        parts.append(f"{time.perf_counter() - self.start:.0f} s")
        print("\r" + " · ".join(parts), end="", flush=True)


def fit(
    model: keras.Model,
    train_data,
    val_data,
    epochs: int,
    *,
    name: str = "model",
    callbacks: list | None = None,
    checkpoint: str | os.PathLike | None = None,
    verbose: bool = True,
) -> dict:
    """Fit ``model`` (compiled) on a batched dataset (``kdlib.data.to_dataset``) and keep the
    weights of its best epoch on ``val_data``.

    The best weights are kept in memory, or, with ``checkpoint`` (a ``*.weights.h5`` path),
    saved there each time validation accuracy improves and loaded back at the end: a crash
    then leaves the best model so far on disk.

    Returns ``{"history", "best_epoch", "best_val_accuracy", "seconds"}``; ``history`` maps each
    logged metric to its per-epoch values. ``best_epoch`` counts from 1.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if checkpoint is not None:
        checkpoint = Path(checkpoint)
        if not checkpoint.name.endswith(".weights.h5"):
            raise ValueError(f"checkpoint must be a *.weights.h5 path, got {checkpoint}")
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        best = keras.callbacks.ModelCheckpoint(
            checkpoint, monitor="val_accuracy", mode="max", save_best_only=True, save_weights_only=True
        )
    else:
        best = keras.callbacks.EarlyStopping(
            monitor="val_accuracy", mode="max", patience=epochs, restore_best_weights=True
        )
    cbs = [NonFiniteLoss(), best, *(callbacks or [])]
    if verbose:
        cbs.append(ProgressLine(name, epochs))
    start = time.perf_counter()
    # The datasets are shuffled by kdlib.data.to_dataset; Keras's own shuffle does not apply.
    history = model.fit(train_data, validation_data=val_data, epochs=epochs, shuffle=False, verbose=0, callbacks=cbs)
    seconds = time.perf_counter() - start
    if checkpoint is not None:
        model.load_weights(checkpoint)
    hist = {k: [float(v) for v in vals] for k, vals in history.history.items()}
    best_epoch = int(np.argmax(hist["val_accuracy"])) + 1
    result = {
        "history": hist,
        "best_epoch": best_epoch,
        "best_val_accuracy": hist["val_accuracy"][best_epoch - 1],
        "seconds": round(seconds, 1),
    }
    if verbose:
        print(
            f"\r{name}: {epochs} epochs in {seconds:.0f} s · best val acc "
            f"{result['best_val_accuracy']:.4f} at epoch {best_epoch}" + " " * 20,
            flush=True,
        )
    return result


def cached_classifier(
    name: str,
    build,
    train_data,
    val_data,
    *,
    epochs: int,
    fingerprint: str,
    config: dict,
    lr: float = 1e-3,
    optimizer: str = "adam",
    schedule: str = "constant",
    **fit_kwargs,
) -> tuple[keras.Model, dict]:
    """Load the classifier cached under ``name`` for this configuration and training data, or
    build it (``build()``), compile it, fit it with model selection on ``val_data`` and cache
    it. ``schedule`` is ``"constant"`` (learning rate ``lr`` throughout) or ``"cosine"`` (from
    ``lr`` to 0 over the ``epochs``; ``train_data`` must then have a known number of batches).
    ``config`` must hold everything else that changes the result (widths, augmentation, seed);
    ``epochs``, ``lr``, ``optimizer`` and ``schedule`` are added to the key. Returns
    ``(model, info)`` as ``kdlib.cache.train_or_load``."""
    if schedule not in ("constant", "cosine"):
        raise ValueError(f"schedule must be 'constant' or 'cosine', got {schedule!r}")
    decay_steps = None
    if schedule == "cosine":
        batches = int(train_data.cardinality())
        if batches < 1:
            raise ValueError("a cosine schedule needs train_data with a known, finite number of batches")
        decay_steps = batches * epochs

    def fit_it(model):
        return fit(model, train_data, val_data, epochs, name=name, **fit_kwargs)

    model, info = cache.train_or_load(
        name,
        lambda: compile_classifier(build(), lr=lr, optimizer=optimizer, decay_steps=decay_steps),
        fit_it,
        config={**config, "epochs": epochs, "lr": lr, "optimizer": optimizer, "schedule": schedule},
        data=fingerprint,
    )
    warn_if_at_chance(name, info.get("best_val_accuracy"), model.output.shape[-1])
    return model, info


def warn_if_at_chance(name: str, accuracy: float | None, num_classes: int) -> None:
    """Warn when a (teacher) model's validation accuracy is no better than guessing: every
    result distilled from it would be meaningless. (At the ``smoke`` profile that can happen.)"""
    if accuracy is not None and accuracy < 1.5 / num_classes:
        warnings.warn(
            f"{name}: validation accuracy {accuracy:.4f} is at chance level for {num_classes} classes; "
            "the model did not learn, and nothing distilled from it means anything",
            stacklevel=3,
        )


def fitnet_teacher(dataset: data.Dataset, cfg) -> tuple[keras.Model, dict]:
    """Notebook 03's teacher, which notebook 04 reuses: seed 003's VGG-style network
    (``cfg.teacher_width``) trained on ``cfg.n_teacher`` training images of ``dataset`` (the
    validation split of ``cfg.n_val`` images held out), with ``cfg.augment``, and cached under
    one key, so that notebook 04 loads what notebook 03 trained. ``cfg`` is notebook 03's
    profile. Returns ``(teacher, info)``."""
    sp = data.splits(dataset, cfg.n_val, cfg.n_teacher)
    augment = None if cfg.augment == "none" else cfg.augment
    train_data = data.to_dataset(*sp.train, cfg.batch_size, shuffle=True, seed=cfg.seed, augment=augment)
    architecture = {"width": cfg.teacher_width, "batch_norm": True}  # the builder's arguments, in the key too
    return cached_classifier(
        f"03_vgg_teacher_{dataset.name}",
        lambda: models.vgg_teacher(sp.train[0].shape[1:], **architecture, name="teacher"),
        train_data,
        data.to_dataset(*sp.val, 512),
        epochs=cfg.teacher_epochs,
        lr=cfg.teacher_lr,
        optimizer=cfg.teacher_optimizer,
        schedule=cfg.teacher_schedule,
        fingerprint=sp.fingerprint(),
        config={**architecture, "augment": augment, "batch": cfg.batch_size, "seed": cfg.seed},
    )


def evaluate(model: keras.Model, dataset, labels: np.ndarray) -> dict:
    """Accuracy and number of errors of ``model`` (logits) on ``dataset``, whose labels, in the
    same order, are ``labels``. For a Distiller pass ``distiller.student``."""
    logits = np.asarray(model.predict(dataset, verbose=0))
    labels = np.asarray(labels).reshape(-1)
    if len(logits) != len(labels):
        raise ValueError(f"{len(logits)} predictions for {len(labels)} labels")
    errors = int(np.sum(np.argmax(logits, axis=-1) != labels))
    return {"accuracy": 1.0 - errors / len(labels), "errors": errors, "n": len(labels)}


def inference_ms(model: keras.Model, batch_size: int, repeats: int = 20) -> float:
    """Median milliseconds **per image** of ``model`` on one batch of ``batch_size`` zero
    images (after a warm-up), measured with ``predict_on_batch`` on this machine."""
    x = np.zeros((batch_size, *model.input_shape[1:]), dtype="float32")
    model.predict_on_batch(x)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.predict_on_batch(x)
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times)) / batch_size


def saved_size_bytes(model: keras.Model, folder: str | os.PathLike) -> int:
    """Size on disk of ``model`` as a ``.keras`` file in ``folder``: its configuration and
    weights without optimizer state, what you would ship. (``clone_model`` would not do: it
    compiles the clone when the model is compiled, and the file then holds Adam's moments.)"""
    copy = model.__class__.from_config(model.get_config())
    copy.set_weights(model.get_weights())
    path = Path(folder) / f"{model.name}.keras"
    path.parent.mkdir(parents=True, exist_ok=True)
    copy.save(path)
    return path.stat().st_size
