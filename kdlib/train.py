"""Training and evaluation shared by every notebook: compile, fit with model selection on the
validation split, evaluate on the test split, and the distil-and-evaluate step.

``fit`` works the same for a plain classifier and for a ``kdlib.distill.Distiller``: it keeps
the weights of the epoch with the best validation accuracy (never the test set), stops with an
error when the loss becomes NaN or infinite (Keras's ``TerminateOnNaN``), and shows progress
(see :class:`Progress`). :func:`distil` is the step every notebook repeats: build a student from
a seed, train it alone or distilled, keep its best epoch, measure it on the test split.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
import scipy.special

from kdlib import _io, cache, distill
from kdlib.data import Batches

PROGRESS_MODES = ("bar", "line", "off")


def compile_classifier(
    model: keras.Model,
    lr: float = 1e-3,
    optimizer: str = "adam",
    decay_steps: int | None = None,
    **kwargs,
):
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


def make_optimizer(
    name: str = "adam", lr: float = 1e-3, decay_steps: int | None = None
) -> keras.optimizers.Optimizer:
    """A fresh optimizer (each model needs its own; the Colab teacher-student notebook shared
    one between two models).

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


def decay_steps(schedule: str, data: Batches, epochs: int) -> int | None:
    """The ``decay_steps`` of :func:`make_optimizer` for a learning-rate ``schedule`` over
    ``epochs`` of ``data``: ``"cosine"``, every step of the run; ``"constant"``, None."""
    if schedule not in ("constant", "cosine"):
        raise ValueError(f"schedule must be 'constant' or 'cosine', got {schedule!r}")
    return len(data) * int(epochs) if schedule == "cosine" else None


# --------------------------------------------------------------------------- progress


def progress_mode() -> str:
    """``$KDLIB_PROGRESS``: ``"bar"`` (default: a live tqdm bar per run, with time left),
    ``"line"`` (one line per run when it ends: what the committed notebooks and the tests
    show) or ``"off"``."""
    mode = os.environ.get("KDLIB_PROGRESS", "bar")
    if mode not in PROGRESS_MODES:
        raise ValueError(f"KDLIB_PROGRESS must be one of {PROGRESS_MODES}, got {mode!r}")
    return mode


class Progress(keras.callbacks.Callback):
    """A tqdm bar over every batch of a run (all its epochs): elapsed and remaining time, the
    loss, and the validation accuracy of the last epoch. ``tqdm.auto`` draws a widget in
    JupyterLab and Colab and a text bar in a terminal."""

    def __init__(self, name: str, epochs: int):
        super().__init__()
        self.name, self.epochs, self.bar, self.val = name, epochs, None, None

    def on_train_begin(self, logs=None):
        from tqdm.auto import tqdm

        steps = self.params.get("steps") or 0
        self.bar = tqdm(
            total=steps * self.epochs or None,
            desc=self.name,
            unit="batch",
            leave=True,
            dynamic_ncols=True,
        )

    def on_train_batch_end(self, batch, logs=None):
        self.bar.update(1)
        if batch % 20 == 0 and logs and "loss" in logs:
            self._postfix(logs["loss"])

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        self.val = logs.get("val_accuracy", self.val)
        self._postfix(logs.get("loss"), epoch=epoch + 1)

    def _postfix(self, loss, epoch=None):
        parts = {}
        if epoch is not None:
            parts["epoch"] = f"{epoch}/{self.epochs}"
        if loss is not None:
            parts["loss"] = f"{float(loss):.4f}"
        if self.val is not None:
            parts["val acc"] = f"{float(self.val):.4f}"
        self.bar.set_postfix(parts, refresh=False)

    def on_train_end(self, logs=None):
        self.bar.close()


# --------------------------------------------------------------------------- fit and evaluate


class _Backup(keras.callbacks.Callback):
    """After every epoch, the training state in ``folder``: ``epochN.weights.h5`` (weights and
    optimizer) and ``progress.json`` (the epoch, that file, the history so far, the seconds
    spent training so far, restarts included), replaced in one step, so the folder always
    describes one finished epoch."""

    def __init__(self, folder: Path, history: dict, seconds: float):
        super().__init__()
        self.folder, self.history = folder, {k: list(v) for k, v in history.items()}
        self.earlier = seconds

    def on_train_begin(self, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(float(v))
        weights = f"epoch{epoch + 1}.weights.h5"
        self.model.save_weights(self.folder / weights)
        _io.write_json(
            self.folder / "progress.json",
            {
                "epoch": epoch + 1,
                "weights": weights,
                "history": self.history,
                "seconds": self.earlier + time.perf_counter() - self.start,
            },
        )
        for old in self.folder.glob("epoch*.weights.h5"):
            if old.name != weights:
                old.unlink()


def _build_optimizer(model: keras.Model) -> None:
    """Create the optimizer's variables now, not in Keras's first step: under TensorFlow a step
    that creates variables is traced twice (about 3 s a run), and a restored run needs them
    before it loads the optimizer's state."""
    if model.optimizer is not None and not model.optimizer.built and model.trainable_variables:
        model.optimizer.build(model.trainable_variables)


def _restore(model: keras.Model, folder: Path, data: Batches) -> tuple[int, dict, float]:
    """Load the state :class:`_Backup` left in ``folder`` into ``model``: ``(epochs done,
    history so far, seconds spent on them)``, or ``(0, {}, 0.0)`` when there is none."""
    progress = folder / "progress.json"
    if not progress.exists():
        return 0, {}, 0.0
    try:
        state = json.loads(progress.read_text())
        state = {key: state[key] for key in ("epoch", "weights", "history", "seconds")}
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise ValueError(
            f"{progress} is incomplete or not a run's progress ({err}): delete {folder} to "
            "start this run afresh, or run it without --resume"
        ) from None
    if not model.built:  # a Distiller is built by its first call
        model(data[0][0])
    _build_optimizer(model)  # its variables exist before loading
    model.load_weights(folder / state["weights"])
    print(f"resumed after epoch {state['epoch']} from {folder.name}", flush=True)
    return int(state["epoch"]), state["history"], float(state["seconds"])


def _check_labels(model: keras.Model, splits: dict[str, Batches]) -> None:
    """Every split's labels are classes of ``model`` (a Distiller: of its student), before a
    step is spent: an out-of-range label would fail only after the first epoch."""
    outputs = getattr(getattr(model, "student", model), "outputs", None)
    if not outputs:  # a subclassed model has no symbolic output to read the classes from
        return
    classes = outputs[0].shape[-1]
    for split, batches in splits.items():
        y = np.asarray(getattr(batches, "y", ()))
        if y.size and (y.min() < 0 or y.max() >= classes):
            raise ValueError(
                f"the {split} labels run from {y.min()} to {y.max()}, but the model has "
                f"{classes} classes (labels 0 to {classes - 1})"
            )


def fit(
    model: keras.Model,
    train_data: Batches,
    val_data: Batches,
    epochs: int,
    *,
    name: str = "model",
    callbacks: list | None = None,
    checkpoint: str | os.PathLike | None = None,
    backup: str | os.PathLike | None = None,
    patience: int | None = None,
) -> dict:
    """Fit ``model`` (compiled) on ``train_data`` and keep the weights of its best epoch on
    ``val_data``.

    ``epochs`` is the most it trains; with ``patience`` it stops once validation accuracy has
    not improved for that many epochs (a run trained "until validation stops improving"). A
    resumed run counts its patience from the restart.

    The best weights are kept in memory, or, with ``checkpoint`` (a ``*.weights.h5`` path),
    saved there each time validation accuracy improves and loaded back at the end: a crash
    then leaves the best model so far on disk.

    With ``backup`` (a folder) nothing is lost on a crash: after every epoch the training state
    (weights, optimizer, the history so far, the best weights so far) is saved there, and a
    later call with the same model, data and folder goes on from the last finished epoch, on the
    batch order the lost epochs would have used; the folder is removed when the run ends. The
    folder alone resumes the run (copied to another machine, say): ``checkpoint``, if given,
    gets the best weights when the run ends. (Dropout and augmentation draw anew after a
    restart, so a resumed run is not bit-identical to an uninterrupted one.)

    Returns ``{"history", "best_epoch", "best_val_accuracy", "seconds"}``; ``history`` maps each
    logged metric to its per-epoch values. ``best_epoch`` counts from 1. ``seconds`` is the
    training time of all epochs, those done before a restart included (not the time between).
    """
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    if patience is not None and (
        isinstance(patience, bool) or not isinstance(patience, (int, np.integer)) or patience < 1
    ):
        raise ValueError(f"patience must be a positive integer or None, got {patience!r}")
    _check_labels(model, {"training": train_data, "validation": val_data})
    stop = []  # with a checkpoint the best weights are its file; patience needs its own callback
    if checkpoint is not None:
        checkpoint = Path(checkpoint)
        if not checkpoint.name.endswith(".weights.h5"):
            raise ValueError(f"checkpoint must be a *.weights.h5 path, got {checkpoint}")
        _io.check_writable(checkpoint.parent)
    initial_epoch, earlier, earlier_seconds, wanted = 0, {}, 0.0, None
    if backup is not None:
        backup = _io.check_writable(backup)
        initial_epoch, earlier, earlier_seconds = _restore(model, backup, train_data)
        wanted, checkpoint = checkpoint, backup / "best.weights.h5"
    if checkpoint is not None:
        best = keras.callbacks.ModelCheckpoint(
            checkpoint,
            monitor="val_accuracy",
            mode="max",
            save_best_only=True,
            save_weights_only=True,
            initial_value_threshold=max(earlier["val_accuracy"]) if earlier else None,
        )
        if patience is not None:
            stop = [keras.callbacks.EarlyStopping("val_accuracy", mode="max", patience=patience)]
    else:
        best = keras.callbacks.EarlyStopping(
            monitor="val_accuracy",
            mode="max",
            patience=patience or epochs,
            restore_best_weights=True,
        )
    mode = progress_mode()
    cbs = [keras.callbacks.TerminateOnNaN(raise_error=True), best, *stop, *(callbacks or [])]
    if mode == "bar":
        cbs.append(Progress(name, epochs))
    if backup is not None:
        cbs.append(_Backup(backup, earlier, earlier_seconds))
    _build_optimizer(model)
    train_data.restart()
    for _ in range(initial_epoch):  # the orders of the epochs done before a restart
        train_data.on_epoch_end()
    start = time.perf_counter()
    # Batches shuffles with its own seeded generator; Keras's shuffle would add another order.
    history = model.fit(
        train_data,
        validation_data=val_data,
        epochs=epochs,
        initial_epoch=initial_epoch,
        shuffle=False,
        verbose=0,
        callbacks=cbs,
    )
    seconds = earlier_seconds + time.perf_counter() - start
    if checkpoint is not None:
        model.load_weights(checkpoint)
    if wanted is not None:
        shutil.copyfile(checkpoint, wanted)
    hist = {k: [float(v) for v in vals] for k, vals in earlier.items()}
    for k, vals in history.history.items():
        hist.setdefault(k, []).extend(float(v) for v in vals)
    if backup is not None:
        shutil.rmtree(backup)
    best_epoch = int(np.argmax(hist["val_accuracy"])) + 1
    result = {
        "history": hist,
        "best_epoch": best_epoch,
        "best_val_accuracy": hist["val_accuracy"][best_epoch - 1],
        "seconds": round(seconds, 1),
    }
    if mode == "line":
        print(
            f"{name}: {len(hist['val_accuracy'])} epochs in {seconds:.0f} s · best val acc "
            f"{result['best_val_accuracy']:.4f} at epoch {best_epoch}",
            flush=True,
        )
    return result


def evaluate(model: keras.Model, batches: Batches, teacher_logits=None) -> dict:
    """Accuracy and number of errors of ``model`` (logits) on ``batches`` (unshuffled). For a
    Distiller pass ``distiller.student``.

    With ``teacher_logits`` (the teacher's on the same samples, in order) also the student's
    fidelity to its teacher (Stanton et al. 2021): ``agreement``, the share of samples whose
    top class is the teacher's, and ``kl``, the mean KL(teacher || student) of their softmax
    at T = 1 (:func:`fidelity`)."""
    if batches.shuffle:
        raise ValueError("evaluate needs unshuffled batches (shuffle=False)")
    if teacher_logits is not None and len(teacher_logits) != len(batches.y):
        raise ValueError(
            f"teacher_logits has {len(teacher_logits)} rows for {len(batches.y)} samples"
        )
    logits = np.asarray(model.predict(batches, verbose=0))
    errors = int(np.sum(np.argmax(logits, axis=-1) != batches.y))
    found = {"accuracy": 1.0 - errors / len(batches.y), "errors": errors, "n": len(batches.y)}
    if teacher_logits is not None:
        found.update(fidelity(logits, teacher_logits))
    return found


def fidelity(student_logits, teacher_logits) -> dict:
    """How closely a student's predictions follow its teacher's, from both logits (NumPy,
    float64): ``agreement``, the share of rows with the same top class, and ``kl``, the mean
    KL(softmax(teacher) || softmax(student)) at T = 1."""
    s, t = np.asarray(student_logits, np.float64), np.asarray(teacher_logits, np.float64)
    if s.shape != t.shape or s.ndim != 2:
        raise ValueError(f"need two (samples, classes) arrays alike, got {s.shape} and {t.shape}")
    log_p, log_q = scipy.special.log_softmax(s, axis=-1), scipy.special.log_softmax(t, axis=-1)
    return {
        "agreement": float(np.mean(s.argmax(-1) == t.argmax(-1))),
        "kl": float(np.mean(np.sum(np.exp(log_q) * (log_q - log_p), axis=-1))),
    }


# --------------------------------------------------------------------------- distil and evaluate


@dataclass
class Trained:
    """A student after :func:`distil`: the model, and what its training measured."""

    model: keras.Model
    test_accuracy: float
    test_errors: int
    best_val_accuracy: float
    best_epoch: int
    seconds: float
    history: dict = field(repr=False)


def distil(
    build: Callable[[], keras.Model],
    data: Batches,
    val: Batches,
    test: Batches,
    *,
    epochs: int,
    seed: int,
    teacher=None,
    alpha: float = 0.9,
    lr: float = 1e-3,
    optimizer: str = "adam",
    schedule: str = "constant",
    name: str = "student",
    callbacks: list | None = None,
    checkpoint: str | os.PathLike | None = None,
    patience: int | None = None,
    **distiller_kwargs,
) -> Trained:
    """Build a student with ``build()`` after seeding everything with ``seed``, train it with a
    :class:`kdlib.distill.Distiller`, keep its best epoch on ``val``, and measure it on ``test``.

    This is the course's distil-and-evaluate step (notebook 00 writes it out once):
    ``alpha=0`` without a teacher is the student alone on the labels, by the same code and the
    same batches; a ``teacher`` model, or ``data`` with cached teacher logits, distils it.
    ``distiller_kwargs`` (``temperature``, ``kind``, ``t2_scaling``, ``soft_targets``,
    ``augment``, ...) go to the Distiller. The same ``seed`` gives the same initial weights, so
    runs that differ only in ``alpha`` or the teacher are paired. ``patience``: stop once
    validation accuracy has not improved for that many epochs (:func:`fit`).
    ``schedule``: ``"constant"`` (default) keeps the learning rate at ``lr``, ``"cosine"``
    decays it to 0 over the run. With ``$KDLIB_RESUME=1``
    (``kdlib.cache.resuming``) a run done before is loaded from the cache instead of trained:
    the model ``build()`` made takes its weights, so the result's model is that object either
    way; its ``callbacks`` then do not run, and it is measured on ``test`` again.
    """
    keras.utils.set_random_seed(int(seed))
    student = build()

    def train_student(student, backup=None):
        distiller = distill.Distiller(student, teacher, alpha=alpha, **distiller_kwargs)
        distiller.compile(make_optimizer(optimizer, lr, decay_steps(schedule, data, epochs)))
        return fit(
            distiller,
            data,
            val,
            epochs,
            name=name,
            callbacks=callbacks,
            checkpoint=checkpoint,
            backup=backup,
            patience=patience,
        )

    if cache.resuming():
        # a Distiller option given as None is its default (augment=None: none), so the run
        # is the one without it, and keyed alike
        given = {k: v for k, v in distiller_kwargs.items() if v is not None}
        settings = dict(
            given,
            epochs=epochs,
            seed=seed,
            alpha=alpha,
            lr=lr,
            optimizer=optimizer,
            schedule=schedule,
            **({"patience": patience} if patience is not None else {}),
        )
        config, fingerprint = _run_key(student, teacher, data, val, settings)
        backup = cache.entry(name, config, fingerprint).with_suffix(".backup")
        trained, fitted = cache.train_or_load(
            name,
            lambda: student,
            lambda student: train_student(student, backup),
            config=config,
            data=fingerprint,
        )
        if trained is not student:  # loaded: the built model gets its weights, for whoever holds
            student.set_weights(trained.get_weights())  # it (a chain's next teacher, notebook 04)
    else:
        fitted = train_student(student)
    scored = evaluate(student, test)
    return Trained(
        student,
        scored["accuracy"],
        scored["errors"],
        fitted["best_val_accuracy"],
        fitted["best_epoch"],
        fitted["seconds"],
        fitted["history"],
    )


def _architecture(model: keras.Model) -> list:
    """Each layer's class and configuration, without the names Keras numbers per session
    (``dense_3``), so the same builder gives the same description in any kernel."""

    def unnamed(value):
        if isinstance(value, dict):
            return {k: unnamed(v) for k, v in value.items() if k != "name"}
        if isinstance(value, (list, tuple)):
            return [unnamed(v) for v in value]
        return value

    return [[type(layer).__name__, unnamed(layer.get_config())] for layer in model.layers]


def _run_key(student, teacher, data: Batches, val: Batches, settings: dict) -> tuple[dict, str]:
    """What a resumed :func:`distil` run is keyed on: the student's architecture and initial
    weights (whatever built it), the teachers' weights, every training setting, and the
    training and validation data (with cached logits)."""
    teachers = distill.as_teachers(teacher)
    config = {
        "student": _architecture(student),
        "teachers": [cache.fingerprint(*t.get_weights()) for t in teachers],
        "settings": settings,
        "batch_size": data.batch_size,
        "shuffle": [data.shuffle, data.seed],
    }
    arrays = [data.x, data.y, val.x, val.y, *student.get_weights()]
    if data.teacher_logits is not None:
        arrays.append(data.teacher_logits)
    return config, cache.fingerprint(*arrays)


# --------------------------------------------------------------------------- cached classifiers


def cached_classifier(
    name: str,
    build: Callable[[], keras.Model],
    train_data: Batches,
    val_data: Batches,
    *,
    epochs: int,
    seed: int,
    lr: float = 1e-3,
    optimizer: str = "adam",
    schedule: str = "constant",
    **fit_kwargs,
) -> tuple[keras.Model, dict]:
    """Load the classifier cached under ``name`` for this recipe and training data, or build it
    (``build()``, after seeding with ``seed``), compile it, fit it with model selection on
    ``val_data`` and cache it.

    ``build`` is a builder with its arguments, e.g. ``functools.partial(kdlib.models.mlp,
    hidden=(1200, 1200))``: the cache key is derived from the builder's name and arguments (see
    ``kdlib.cache.describe``), the training data (images, labels, batch size, shuffling seed),
    ``seed``, ``epochs``, ``lr``, ``optimizer`` and ``schedule`` — nothing written by hand.
    ``schedule`` is ``"constant"`` (learning rate ``lr`` throughout) or ``"cosine"`` (from
    ``lr`` to 0 over the ``epochs``). Returns ``(model, info)`` as
    ``kdlib.cache.train_or_load``."""
    steps = decay_steps(schedule, train_data, epochs)

    def new_model():
        keras.utils.set_random_seed(int(seed))
        return compile_classifier(build(), lr=lr, optimizer=optimizer, decay_steps=steps)

    config = {
        "build": cache.describe(build),
        "batch_size": train_data.batch_size,
        "shuffle_seed": train_data.seed,
        "seed": seed,
        "epochs": epochs,
        "lr": lr,
        "optimizer": optimizer,
        "schedule": schedule,
    }
    data = cache.fingerprint(train_data.x, train_data.y)
    if cache.resuming():  # a long teacher that stopped goes on from its last epoch
        fit_kwargs.setdefault("backup", cache.entry(name, config, data).with_suffix(".backup"))
    model, info = cache.train_or_load(
        name,
        new_model,
        lambda model: fit(model, train_data, val_data, epochs, name=name, **fit_kwargs),
        config=config,
        data=data,
    )
    warn_if_at_chance(name, info.get("best_val_accuracy"), model.output.shape[-1])
    return model, info


STALLED = 1.5  # times chance: below it a model has not learned


def stalled(runs: Sequence[Trained], num_classes: int) -> int:
    """How many of ``runs`` stalled: their best validation accuracy stayed below
    :data:`STALLED` times chance. A stalled run is not a slightly worse one; notebooks report
    the count beside the mean."""
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes!r}")
    return sum(run.best_val_accuracy < STALLED / num_classes for run in runs)


def warn_if_at_chance(name: str, accuracy: float | None, num_classes: int) -> None:
    """Warn when a (teacher) model's validation accuracy is no better than guessing: every
    result distilled from it would be meaningless. (At the ``smoke`` profile that can happen.)"""
    if accuracy is not None and accuracy < STALLED / num_classes:
        warnings.warn(
            f"{name}: validation accuracy {accuracy:.4f} is at chance level for {num_classes} "
            "classes; "
            "the model did not learn, and nothing distilled from it means anything",
            stacklevel=3,
        )
