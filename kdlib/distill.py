"""Distillation as small composable pieces: the ``Distiller``, teacher logits for caching,
ensembles, FitNets' hint stage, and teacher-assistant chains.

The ``Distiller`` is a ``keras.Model`` that trains a student from

* one teacher model,
* an ensemble (a list of models; their logits are combined, see :func:`combine_logits`),
* no teacher at all, when every training batch carries cached teacher logits:
  ``(x, y, teacher_logits)``, as made by ``kdlib.data.to_dataset(..., teacher_logits=...)``,
* or the ground-truth labels as soft targets (``soft_targets="labels"``, seed 004's Q4).

It overrides ``compute_loss`` (not ``train_step``), so ``fit``, ``evaluate``, callbacks,
mixed precision and ``tf.distribute`` work as for any Keras model, on every backend.
The teacher always runs with ``training=False``, behind ``stop_gradient``, and is frozen
(``teacher.trainable = False``): it gets no gradient and no update.

``fit`` logs ``loss`` (the weighted total), ``hard_loss``, ``soft_loss`` and the student's
``accuracy``; ``evaluate`` (and the ``val_`` logs) report the student alone: its
cross-entropy as ``loss`` and its ``accuracy``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from kdlib import losses

COMBINE_RULES = ("mean_logits", "mean_probs")
SOFT_TARGET_SOURCES = ("teacher", "labels")


def combine_logits(logits: Sequence, rule: str = "mean_logits", temperature: float | None = None):
    """Combine the logits of several teachers into one set of logits.

    ``"mean_logits"``: the arithmetic mean of the logits (seed 000). Its softmax at any T is the
    normalised *geometric* mean of the members' tempered probabilities.
    ``"mean_probs"``: ``T * log(mean_k softmax(z_k / T))``, logits whose softmax at ``T`` is the
    *arithmetic* mean of the members' soft targets (Hinton et al.'s ensemble average); it needs
    the temperature.
    """
    if rule not in COMBINE_RULES:
        raise ValueError(f"rule must be one of {COMBINE_RULES}, got {rule!r}")
    if len(logits) == 0:
        raise ValueError("need the logits of at least one teacher")
    stacked = ops.stack([ops.cast(z, "float32") for z in logits], axis=0)
    if rule == "mean_logits":
        return ops.mean(stacked, axis=0)
    if temperature is None:
        raise ValueError("rule='mean_probs' needs the temperature")
    t = losses.check_temperature(temperature)
    log_probs = ops.log_softmax(stacked / t, axis=-1)
    n = float(len(logits))
    return t * (ops.logsumexp(log_probs, axis=0) - np.log(n))


def _as_teachers(teacher) -> list[keras.Model]:
    if teacher is None:
        return []
    teachers = list(teacher) if isinstance(teacher, (list, tuple)) else [teacher]
    for t in teachers:
        if not isinstance(t, keras.Model):
            raise ValueError(f"a teacher must be a keras.Model, got {type(t).__name__}")
    return teachers


def predict_logits(
    teacher,
    dataset,
    *,
    combine: str = "mean_logits",
    temperature: float | None = None,
) -> np.ndarray:
    """The (combined) logits of a teacher or ensemble for every sample of ``dataset``, as a
    float32 NumPy array, in the dataset's order, computed in batches with ``training=False``.

    ``dataset`` is what the models take: an unshuffled ``kdlib.data.to_dataset(...)`` (its
    labels are ignored) or a float array of inputs. Cache the result and pass it to
    ``kdlib.data.to_dataset(..., teacher_logits=...)`` to train without re-running the teacher.
    """
    teachers = _as_teachers(teacher)
    if not teachers:
        raise ValueError("predict_logits needs a teacher model or a list of them")
    outputs = [np.asarray(t.predict(dataset, verbose=0), dtype="float32") for t in teachers]
    if len(outputs) == 1:
        return outputs[0]
    return np.asarray(ops.convert_to_numpy(combine_logits(outputs, combine, temperature)))


class Distiller(keras.Model):
    """Train ``student`` from a teacher, an ensemble, cached logits or the labels.

    Args:
        student: the model to train; outputs logits.
        teacher: a trained model, a list of trained models (an ensemble, combined by
            ``combine``), or ``None`` when batches carry cached teacher logits
            ``(x, y, teacher_logits)`` or when ``soft_targets="labels"``.
        temperature: T of the soft term (the hard term is always at T = 1).
        alpha: weight of the soft term; the hard term gets ``1 - alpha``.
        kind: ``"kl"`` or ``"ce"`` soft term (same gradient; see ``kdlib.losses``).
        t2_scaling: multiply the soft term by T**2 (default, Hinton et al.).
        soft_targets: ``"teacher"`` or ``"labels"`` (one-hot labels as the soft targets).
        combine: how an ensemble's logits are combined (:func:`combine_logits`).

    Keras hands the third element of a batch to ``compute_loss`` as ``sample_weight``; for a
    Distiller without a teacher that slot carries the cached teacher logits. Sample weights
    proper are not supported.
    """

    def __init__(
        self,
        student: keras.Model,
        teacher=None,
        *,
        temperature: float = 4.0,
        alpha: float = 0.9,
        kind: str = "kl",
        t2_scaling: bool = True,
        soft_targets: str = "teacher",
        combine: str = "mean_logits",
        name: str = "distiller",
    ):
        super().__init__(name=name)
        if not isinstance(student, keras.Model):
            raise ValueError(f"student must be a keras.Model, got {type(student).__name__}")
        if soft_targets not in SOFT_TARGET_SOURCES:
            raise ValueError(f"soft_targets must be one of {SOFT_TARGET_SOURCES}, got {soft_targets!r}")
        if combine not in COMBINE_RULES:
            raise ValueError(f"combine must be one of {COMBINE_RULES}, got {combine!r}")
        if kind not in losses.SOFT_KINDS:
            raise ValueError(f"kind must be one of {losses.SOFT_KINDS}, got {kind!r}")
        self.student = student
        self.teachers = _as_teachers(teacher)
        if soft_targets == "labels" and self.teachers:
            raise ValueError("soft_targets='labels' takes its targets from the labels: pass no teacher")
        for t in self.teachers:
            t.trainable = False
        self.temperature = losses.check_temperature(temperature)
        self.alpha = losses.check_alpha(alpha)
        self.kind = kind
        self.t2_scaling = bool(t2_scaling)
        self.soft_targets = soft_targets
        self.combine = combine
        self.hard_tracker = keras.metrics.Mean(name="hard_loss")
        self.soft_tracker = keras.metrics.Mean(name="soft_loss")
        self.accuracy_tracker = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
        self._logs_training = False

    def compile(self, optimizer="adam", **kwargs):
        """Compile with an optimizer; the loss and metrics are the Distiller's own."""
        for key in ("loss", "metrics", "weighted_metrics", "loss_weights"):
            if kwargs.get(key) is not None:
                raise ValueError(
                    f"Distiller.compile takes no {key!r}: the loss is the KD loss set by "
                    "temperature/alpha/kind, and the metrics are hard_loss, soft_loss, accuracy"
                )
            kwargs.pop(key, None)
        super().compile(optimizer=optimizer, **kwargs)

    def call(self, x, training=None):
        return self.student(x, training=training)

    def teacher_logits(self, x):
        """The teachers' (combined) logits for a batch, float32, without gradient."""
        outputs = [ops.cast(t(x, training=False), "float32") for t in self.teachers]
        if len(outputs) == 1:
            combined = outputs[0]
        else:
            combined = combine_logits(outputs, self.combine, self.temperature)
        return ops.stop_gradient(combined)

    def _soft_targets(self, x, y, y_pred, sample_weight):
        """``(teacher_logits, target_probs)`` for the soft term, exactly one of them set."""
        if self.soft_targets == "labels":
            num_classes = y_pred.shape[-1]
            return None, ops.one_hot(ops.reshape(ops.cast(y, "int32"), (-1,)), num_classes)
        if self.teachers:
            if sample_weight is not None:
                raise ValueError(
                    "Distiller with a teacher model got a third batch element; sample "
                    "weights are not supported (cached logits need teacher=None)"
                )
            return self.teacher_logits(x), None
        if sample_weight is None:
            raise ValueError(
                "this Distiller has no teacher model, so every training batch must carry "
                "cached teacher logits: (x, y, teacher_logits); see "
                "kdlib.data.to_dataset(..., teacher_logits=...)"
            )
        return ops.stop_gradient(ops.cast(sample_weight, "float32")), None

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        self._logs_training = bool(training)
        if y_pred is None:
            y_pred = self(x, training=training)
        if not training:  # evaluation: the student alone
            return losses.hard_loss(y, y_pred)
        teacher_logits, target_probs = (None, None)
        if self.alpha > 0:
            teacher_logits, target_probs = self._soft_targets(x, y, y_pred, sample_weight)
        hard, soft = losses.kd_terms(
            y,
            y_pred,
            teacher_logits,
            temperature=self.temperature,
            alpha=self.alpha,
            kind=self.kind,
            t2_scaling=self.t2_scaling,
            target_probs=target_probs,
        )
        self.hard_tracker.update_state(hard)
        self.soft_tracker.update_state(soft)
        return (1.0 - self.alpha) * hard + self.alpha * soft

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        self.accuracy_tracker.update_state(y, y_pred)
        logs = {"loss": self._loss_tracker.result(), "accuracy": self.accuracy_tracker.result()}
        if self._logs_training:
            logs["hard_loss"] = self.hard_tracker.result()
            logs["soft_loss"] = self.soft_tracker.result()
        return logs


# --------------------------------------------------------------------------- FitNets hints


def hint_regressor(guided_shape, hint_shape, rule: str = "conv1x1") -> keras.layers.Layer:
    """A convolutional regressor from the student's guided features to the hint's shape.

    ``"conv1x1"`` (seed 003): a 1x1 convolution, for guided and hint maps of equal size.
    ``"fitnet"`` (Romero et al. 2015): a valid convolution whose kernel is
    ``guided_size - hint_size + 1``, so any larger guided map lands on the hint's size.
    Both are linear, as in the seed.
    """
    (gh, gw, _), (hh, hw, hc) = tuple(guided_shape[-3:]), tuple(hint_shape[-3:])
    if rule == "conv1x1":
        if (gh, gw) != (hh, hw):
            raise ValueError(
                f"a 1x1 regressor needs guided and hint maps of the same size, got "
                f"{(gh, gw)} and {(hh, hw)}; use rule='fitnet'"
            )
        return keras.layers.Conv2D(hc, 1, name="regressor")
    if rule == "fitnet":
        if gh < hh or gw < hw:
            raise ValueError(f"the guided map {(gh, gw)} must be at least the hint's {(hh, hw)}")
        return keras.layers.Conv2D(hc, (gh - hh + 1, gw - hw + 1), padding="valid", name="regressor")
    raise ValueError(f"rule must be 'conv1x1' or 'fitnet', got {rule!r}")


class HintTrainer(keras.Model):
    """FitNets' stage 1: train the student's layers up to ``guided_layer``, plus a regressor,
    to predict the teacher's ``hint_layer`` features with :func:`kdlib.losses.hint_loss`.

    The guided sub-network shares its layers with ``student``, so fitting this model trains
    the student's lower layers in place; stage 2 is ordinary KD of the whole student.
    """

    def __init__(
        self,
        student: keras.Model,
        teacher: keras.Model,
        *,
        guided_layer: str = "guided",
        hint_layer: str = "hint",
        rule: str = "conv1x1",
        name: str = "hint_trainer",
    ):
        super().__init__(name=name)
        self.guided = keras.Model(student.inputs, student.get_layer(guided_layer).output)
        self.hint = keras.Model(teacher.inputs, teacher.get_layer(hint_layer).output)
        teacher.trainable = False
        self.hint.trainable = False
        self.regressor = hint_regressor(self.guided.output.shape, self.hint.output.shape, rule)

    def call(self, x, training=None):
        return self.regressor(self.guided(x, training=training))

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if y_pred is None:
            y_pred = self(x, training=training)
        target = ops.stop_gradient(self.hint(x, training=False))
        return losses.hint_loss(y_pred, target)


# --------------------------------------------------------------------------- chains


@dataclass
class Stage:
    """One step of a chain: ``student`` distilled from ``teacher``; ``record`` is what the
    stage's training function returned (metrics, history, ...)."""

    teacher: keras.Model
    student: keras.Model
    record: dict


def chain(
    models: Sequence[keras.Model],
    train_stage: Callable[[Distiller, int], dict],
    **distiller_kwargs,
) -> list[Stage]:
    """Distil stage by stage along ``models``: ``models[0]`` (trained) teaches ``models[1]``,
    which, once trained, teaches ``models[2]``, and so on (teacher -> assistant(s) -> student,
    Mirzadeh et al. 2020).

    ``train_stage(distiller, i)`` compiles and fits stage ``i``'s ``Distiller`` (built with
    ``distiller_kwargs``) and returns its record. Each stage's teacher is frozen. Returns every
    stage with its student and record; the last stage's student is the chain's result.
    """
    if len(models) < 2:
        raise ValueError("a chain needs a teacher and at least one student")
    stages = []
    for i, (teacher, student) in enumerate(zip(models[:-1], models[1:])):
        distiller = Distiller(student, teacher, name=f"distiller_{i}", **distiller_kwargs)
        stages.append(Stage(teacher, student, train_stage(distiller, i)))
    return stages
