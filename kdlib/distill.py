"""Distillation as small composable pieces: the ``Distiller``, teacher logits for caching,
ensembles, FitNets' hint stage, and teacher-assistant chains.

The ``Distiller`` is a ``keras.Model`` that trains a student from

* one teacher model,
* an ensemble (a list of models; their logits are combined, see :func:`combine_logits`),
* no teacher at all, when every training batch carries cached teacher logits:
  ``(x, y, teacher_logits)``, as made by ``kdlib.data.Batches(..., teacher_logits=...)``,
* or the ground-truth labels as soft targets (``soft_targets="labels"``, the quantization
  homework's Q4).

It overrides ``call`` and ``compute_loss`` (not ``train_step``), so ``fit``, ``evaluate``,
callbacks, mixed precision, ``tf.distribute`` and ``keras.distribution`` work as for any Keras
model, on every backend. The teacher always runs with ``training=False``, behind
``stop_gradient``: it gets no gradient and no update, and its ``trainable`` flag is not touched.

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
from kdlib.data import augment as augment_lib

COMBINE_RULES = ("mean_logits", "mean_probs")
SOFT_TARGET_SOURCES = ("teacher", "labels")


def combine_logits(logits: Sequence, rule: str = "mean_logits", temperature: float | None = None):
    """Combine the logits of several teachers into one set of logits.

    ``"mean_logits"``: the arithmetic mean of the logits (the TF1 ensemble notes). Its softmax
    at any T is the
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


def _per_replica(loss):
    """``loss`` divided by the number of ``tf.distribute`` replicas, as Keras does for its own
    losses: each replica's gradients are summed across replicas, so a ``compute_loss`` override
    that skipped this would train with the gradients times the number of devices (and log a loss
    that many times too large). No-op on one device and on other backends."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        if replicas > 1:
            loss = loss / replicas
    return loss


def as_teachers(teacher) -> list[keras.Model]:
    """``teacher`` (a model, a list or tuple of models, or ``None``) as a list of models; a
    clear error on anything else, before any work is spent."""
    if teacher is None:
        return []
    teachers = list(teacher) if isinstance(teacher, (list, tuple)) else [teacher]
    for t in teachers:
        if not isinstance(t, keras.Model):
            raise ValueError(f"a teacher must be a keras.Model, got {type(t).__name__}")
    classes = [t.output.shape[-1] for t in teachers]
    if len(set(classes)) > 1:
        raise ValueError(
            f"teachers have {', '.join(map(str, classes))} classes: an ensemble needs one "
            "class count"
        )
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

    ``dataset`` is what the models take: unshuffled ``kdlib.data.Batches`` (its labels are
    ignored) or a float array of inputs. Pass the result to ``kdlib.data.Batches(...,
    teacher_logits=...)`` to train without re-running the teacher.
    """
    teachers = as_teachers(teacher)
    if not teachers:
        raise ValueError("predict_logits needs a teacher model or a list of them")
    outputs = [np.asarray(t.predict(dataset, verbose=0), dtype="float32") for t in teachers]
    if len(outputs) == 1:
        return outputs[0]
    return np.asarray(ops.convert_to_numpy(combine_logits(outputs, combine, temperature)))


class _FrozenTeachers:
    """For a Keras model that holds teachers: their variables are state the training step reads
    but never trains. The teachers' own ``trainable`` flags are left as the caller set them (a
    model used once as a teacher can still be trained on its own afterwards)."""

    _frozen_ids: frozenset = frozenset()

    def _freeze(self, teachers: Sequence[keras.Model]) -> None:
        self._frozen_ids = frozenset(id(v) for t in teachers for v in t.variables)

    def _trains(self, v) -> bool:
        return v.trainable and id(v) not in self._frozen_ids

    @property
    def trainable_weights(self):
        return [v for v in super().trainable_weights if id(v) not in self._frozen_ids]

    @property
    def non_trainable_weights(self):
        return [v for v in self.weights if not self._trains(v)] if self.trainable else self.weights

    @property
    def trainable_variables(self):
        return [v for v in super().trainable_variables if id(v) not in self._frozen_ids]

    @property
    def non_trainable_variables(self):
        return (
            [v for v in self.variables if not self._trains(v)] if self.trainable else self.variables
        )


class Distiller(_FrozenTeachers, keras.Model):
    """Train ``student`` from a teacher, an ensemble, cached logits or the labels.

    Args:
        student: the model to train; outputs logits.
        teacher: a trained model, a list of trained models (an ensemble, combined by
            ``combine``), or ``None`` when batches carry cached teacher logits
            ``(x, y, teacher_logits)``, when ``soft_targets="labels"``, or when ``alpha=0``
            (the labels alone: the student trained without a teacher, by the same code).
        temperature: T of the soft term (the hard term is always at T = 1).
        alpha: weight of the soft term; the hard term gets ``1 - alpha``.
        kind: ``"kl"`` or ``"ce"`` soft term (same gradient; see ``kdlib.losses``).
        t2_scaling: multiply the soft term by T**2 (default, Hinton et al.).
        soft_targets: ``"teacher"`` or ``"labels"`` (the labels as the soft targets: one-hot,
            or smoothed by ``smoothing``).
        smoothing: with ``soft_targets="labels"``, the mass taken off the right class and
            spread evenly over the others (``kdlib.losses.smoothed_labels``): label smoothing
            as a control for KD, at the teacher's own mass off the right class
            (``kdlib.losses.off_target_mass``) it keeps the teacher's confidence and drops
            its ranking of the wrong classes (Yuan et al. 2020).
        combine: how an ensemble's logits are combined (:func:`combine_logits`).
        augment: ``"jitter"`` or ``"flip_crop"``: augment each training batch on the device
            (``kdlib.data.Augment``) before the teacher and the student see it, so the soft
            targets are the teacher's answers for the image the student sees. Refused with
            cached logits, which belong to the un-augmented images.

    In training, the model's forward pass returns ``(student logits, teacher logits)``: the
    teacher runs in the same compiled step as the student, with ``training=False`` and behind
    ``stop_gradient``; its variables are state of that step, never trained. At inference
    (``predict``, ``evaluate``, ``distiller(x)``) it is the student alone.

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
        smoothing: float = 0.0,
        combine: str = "mean_logits",
        augment: str | None = None,
        name: str = "distiller",
    ):
        super().__init__(name=name)
        if not isinstance(student, keras.Model):
            raise ValueError(f"student must be a keras.Model, got {type(student).__name__}")
        if soft_targets not in SOFT_TARGET_SOURCES:
            raise ValueError(
                f"soft_targets must be one of {SOFT_TARGET_SOURCES}, got {soft_targets!r}"
            )
        if combine not in COMBINE_RULES:
            raise ValueError(f"combine must be one of {COMBINE_RULES}, got {combine!r}")
        if kind not in losses.SOFT_KINDS:
            raise ValueError(f"kind must be one of {losses.SOFT_KINDS}, got {kind!r}")
        self.temperature = losses.check_temperature(temperature)
        self.alpha = losses.check_alpha(alpha)
        teachers = as_teachers(teacher)
        if any(t is student for t in teachers):
            raise ValueError("the student cannot be its own teacher: pass two different models")
        if smoothing and soft_targets != "labels":
            raise ValueError("smoothing applies to soft_targets='labels' only")
        self.smoothing = losses.check_smoothing(smoothing)
        if soft_targets == "labels" and teachers:
            raise ValueError(
                "soft_targets='labels' takes its targets from the labels: pass no teacher"
            )
        if (
            augment_lib.check(augment)
            and not teachers
            and soft_targets == "teacher"
            and self.alpha > 0
        ):
            raise ValueError(
                "augmentation with cached teacher logits is refused: the logits were computed "
                "for the un-augmented images; pass the teacher model (Distiller(student, "
                "teacher, augment=...)) or augment=None"
            )
        self.student = student
        self.teachers = teachers
        self._freeze(teachers)
        self.augment = augment_lib.Augment(augment, name="augment") if augment else None
        if self.augment is not None:
            self.augment.build(student.input_shape)
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

    @property
    def _online(self) -> bool:
        """True when each training step runs the teacher(s)."""
        return bool(self.teachers) and self.alpha > 0

    def call(self, x, training=None):
        if not training:
            return self.student(x, training=training)
        if self.augment is not None:
            x = self.augment(x, training=True)
        student = self.student(x, training=True)
        return (student, self.teacher_logits(x)) if self._online else student

    def teacher_logits(self, x):
        """The teachers' (combined) logits for a batch, float32, without gradient."""
        outputs = [ops.cast(t(x, training=False), "float32") for t in self.teachers]
        if len(outputs) == 1:
            combined = outputs[0]
        else:
            combined = combine_logits(outputs, self.combine, self.temperature)
        return ops.stop_gradient(combined)

    def _soft_targets(self, x, y, student, teacher, sample_weight):
        """``(teacher_logits, target_probs)`` for the soft term, exactly one of them set."""
        if self.soft_targets == "labels":
            return None, losses.smoothed_labels(y, student.shape[-1], self.smoothing)
        if self.teachers:
            if sample_weight is not None:
                raise ValueError(
                    "Distiller with a teacher model got a third batch element; sample "
                    "weights are not supported (cached logits need teacher=None)"
                )
            return (self.teacher_logits(x) if teacher is None else teacher), None
        if sample_weight is None:
            raise ValueError(
                "this Distiller has no teacher model, so every training batch must carry "
                "cached teacher logits: (x, y, teacher_logits); see "
                "kdlib.data.Batches(..., teacher_logits=...)"
            )
        return ops.stop_gradient(ops.cast(sample_weight, "float32")), None

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        self._logs_training = bool(training)
        if y_pred is None:
            y_pred = self(x, training=training)
        student, teacher = y_pred if isinstance(y_pred, tuple) else (y_pred, None)
        if not training:  # evaluation: the student alone
            return _per_replica(losses.hard_loss(y, student))
        teacher_logits, target_probs = (None, None)
        if self.alpha > 0:
            teacher_logits, target_probs = self._soft_targets(x, y, student, teacher, sample_weight)
        hard, soft = losses.kd_terms(
            y,
            student,
            teacher_logits,
            temperature=self.temperature,
            alpha=self.alpha,
            kind=self.kind,
            t2_scaling=self.t2_scaling,
            target_probs=target_probs,
        )
        self.hard_tracker.update_state(hard)
        self.soft_tracker.update_state(soft)
        return _per_replica((1.0 - self.alpha) * hard + self.alpha * soft)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        student = y_pred[0] if isinstance(y_pred, tuple) else y_pred
        self.accuracy_tracker.update_state(y, student)
        logs = {"loss": self._loss_tracker.result(), "accuracy": self.accuracy_tracker.result()}
        if self._logs_training:
            logs["hard_loss"] = self.hard_tracker.result()
            logs["soft_loss"] = self.soft_tracker.result()
        return logs


# --------------------------------------------------------------------------- FitNets hints


def hint_regressor(guided_shape, hint_shape, rule: str = "conv1x1") -> keras.layers.Layer:
    """A convolutional regressor from the student's guided features to the hint's shape.

    ``"conv1x1"`` (the FitNets notebook): a 1x1 convolution, for guided and hint maps of equal size.
    ``"fitnet"`` (Romero et al. 2015): a valid convolution whose kernel is
    ``guided_size - hint_size + 1``, so any larger guided map lands on the hint's size.
    Both are linear, as in that notebook.
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
        return keras.layers.Conv2D(
            hc, (gh - hh + 1, gw - hw + 1), padding="valid", name="regressor"
        )
    raise ValueError(f"rule must be 'conv1x1' or 'fitnet', got {rule!r}")


class HintTrainer(_FrozenTeachers, keras.Model):
    """FitNets' stage 1: train the student's layers up to ``guided_layer``, plus a regressor,
    to predict the teacher's ``hint_layer`` features with :func:`kdlib.losses.hint_loss`.

    The guided sub-network shares its layers with ``student``, so fitting this model trains
    the student's lower layers in place; stage 2 is ordinary KD of the whole student. The
    teacher is read, never trained, and its ``trainable`` flag is left as it was.
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
        if teacher is student:
            raise ValueError("the student cannot be its own teacher: pass two different models")
        self.guided = keras.Model(student.inputs, student.get_layer(guided_layer).output)
        self.hint = keras.Model(teacher.inputs, teacher.get_layer(hint_layer).output)
        self._freeze([teacher])
        self.regressor = hint_regressor(self.guided.output.shape, self.hint.output.shape, rule)

    def call(self, x, training=None):
        return self.regressor(self.guided(x, training=training))

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if y_pred is None:
            y_pred = self(x, training=training)
        target = ops.stop_gradient(self.hint(x, training=False))
        return _per_replica(losses.hint_loss(y_pred, target))


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
    ``distiller_kwargs``) and returns its record. Each stage's teacher is read, not trained.
    Returns every
    stage with its student and record; the last stage's student is the chain's result.
    """
    if len(models) < 2:
        raise ValueError("a chain needs a teacher and at least one student")
    stages = []
    for i, (teacher, student) in enumerate(zip(models[:-1], models[1:])):
        distiller = Distiller(student, teacher, name=f"distiller_{i}", **distiller_kwargs)
        stages.append(Stage(teacher, student, train_stage(distiller, i)))
    return stages
