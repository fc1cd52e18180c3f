"""Training and evaluation shared by every notebook: compile, fit with model selection on the
validation split, evaluate on the test split.

``fit`` works the same for a plain classifier and for a ``kdlib.distill.Distiller``: it keeps
the weights of the epoch with the best validation accuracy (never the test set), stops with a
clear error when the loss becomes NaN or infinite, and shows one progress line per run.
"""

from __future__ import annotations

import math
import time

import keras
import numpy as np


def compile_classifier(model: keras.Model, lr: float = 1e-3, optimizer: str = "adam", **kwargs):
    """Compile a logits model with cross-entropy (``from_logits=True``) and accuracy.

    ``optimizer`` is ``"adam"``, ``"adamw"`` or ``"sgd"`` (Nesterov momentum 0.9) at learning
    rate ``lr``; ``kwargs`` go to ``model.compile`` (for example ``jit_compile``).
    """
    model.compile(
        optimizer=make_optimizer(optimizer, lr),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        **kwargs,
    )
    return model


def make_optimizer(name: str = "adam", lr: float = 1e-3) -> keras.optimizers.Optimizer:
    """A fresh optimizer (each model needs its own; seed 002 shared one between two models)."""
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
    verbose: bool = True,
) -> dict:
    """Fit ``model`` (compiled) on a batched dataset (``kdlib.data.to_dataset``) and keep the
    weights of its best epoch on ``val_data``.

    Returns ``{"history", "best_epoch", "best_val_accuracy", "seconds"}``; ``history`` maps each
    logged metric to its per-epoch values. ``best_epoch`` counts from 1.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
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


def evaluate(model: keras.Model, data, labels: np.ndarray) -> dict:
    """Accuracy and number of errors of ``model`` (logits) on ``data``, whose labels, in the
    same order, are ``labels``. For a Distiller pass ``distiller.student``."""
    logits = np.asarray(model.predict(data, verbose=0))
    labels = np.asarray(labels).reshape(-1)
    if len(logits) != len(labels):
        raise ValueError(f"{len(logits)} predictions for {len(labels)} labels")
    errors = int(np.sum(np.argmax(logits, axis=-1) != labels))
    return {"accuracy": 1.0 - errors / len(labels), "errors": errors, "n": len(labels)}
