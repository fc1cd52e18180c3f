"""Distillation losses: temperature softmax, soft targets, the KD loss and the hint loss.

Conventions (every function here follows them):

* Models output **logits**. Every function takes logits and says so; none takes probabilities
  except ``target_probs``, which is named for what it is.
* Everything is computed in **float32**, whatever the dtype of the inputs (float16 or bfloat16
  logits from a mixed-precision model are cast first), and from ``log_softmax``, never from
  clipped probabilities; the KL against a teacher's logits in a form that stays exact at high
  temperatures, where the direct difference of two log-softmaxes cancels (:func:`soft_loss`).
  Temperatures are taken from :data:`MIN_TEMPERATURE` to :data:`MAX_TEMPERATURE`.
* ``alpha`` is the weight of the **soft** (distillation) term; the hard term gets ``1 - alpha``.
  The soft term is multiplied by ``T**2`` unless ``t2_scaling=False``: its gradient scales as
  ``1/T**2``, and the factor keeps the two terms' gradients comparable as T changes
  (Hinton et al. 2015, section 2).

The KD loss, for student logits ``s``, teacher logits ``t``, labels ``y`` and temperature ``T``::

    kd = (1 - alpha) * CE(y, softmax(s))  +  alpha * T**2 * KL(softmax(t/T) || softmax(s/T))

How the classic formulations map onto the parameters:

* Hinton et al. (2015): ``kind="kl"`` (or ``"ce"``; same gradient), ``t2_scaling=True``,
  any ``alpha``. The paper's MNIST runs use a "considerably lower weight" on the hard term,
  e.g. ``alpha=0.9``.
* The TF1 ensemble notes (ensemble -> one CNN): ``alpha=0.5``, ``T=3``, but its hard term is
  computed at
  temperature T (a bug: the hard term is always at T = 1 here) and it has no T**2 factor:
  ``t2_scaling=False``.
* The DenseNet notebook: ``kind="kl"``, ``alpha=0.9``, ``T=10``, no T**2 factor
  (``t2_scaling=False``); notebook 02 compares it with the factor on.
* The Colab teacher-student notebook: its ``alpha`` weighs the *hard* term, so its
  ``alpha=0.5`` is ``alpha=0.5`` here too, and ``t2_scaling=False``.
* The quantization homework's Q2, "soft targets only": ``alpha=1.0``, ``kind="ce"``,
  ``t2_scaling=False``.
* The homework's Q3, "hard + T**2 * soft" (weights 1 and 1, not a convex combination):
  ``alpha=0.5``, ``kind="ce"``, ``t2_scaling=True``. This is the homework's loss times 0.5; with
  Adam the factor is immaterial, with SGD it halves the learning rate.
* The homework's Q4, "soft targets from the ground-truth labels": as Q3, but pass
  ``target_probs=one_hot(y)`` instead of teacher logits (the ``Distiller`` does this with
  ``soft_targets="labels"``). The soft term is then the cross-entropy of the one-hot labels
  with the student's tempered softmax.
"""

from __future__ import annotations

import math
import numbers

import keras
from keras import ops

from kdlib._checks import assert_that as _assert

SOFT_KINDS = ("kl", "ce")
# The temperatures the losses take. Below 1e-3, logits / T leave float32's range for logits in
# the thousands; above 1e8, T**2 times a float32 loss nears float32's range. Between them the
# soft term matches float64 (tests/test_losses.py checks it at both ends).
MIN_TEMPERATURE, MAX_TEMPERATURE = 1e-3, 1e8


# --------------------------------------------------------------------------- validation


def check_temperature(temperature: float) -> float:
    """Return ``temperature`` as a float, or raise ValueError unless it is in
    [:data:`MIN_TEMPERATURE`, :data:`MAX_TEMPERATURE`], where the losses are exact."""
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real):
        raise ValueError(f"temperature must be a positive number, got {temperature!r}")
    if not math.isfinite(float(temperature)) or temperature <= 0:
        raise ValueError(f"temperature must be finite and > 0, got {temperature!r}")
    if not MIN_TEMPERATURE <= temperature <= MAX_TEMPERATURE:
        raise ValueError(
            f"temperature must be from {MIN_TEMPERATURE:g} to {MAX_TEMPERATURE:g} (where the "
            f"losses are exact in float32), got {temperature!r}"
        )
    return float(temperature)


def check_alpha(alpha: float) -> float:
    """Return ``alpha`` (weight of the soft term) as a float, or raise unless it is in [0, 1]."""
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real):
        raise ValueError(f"alpha must be a number in [0, 1], got {alpha!r}")
    if not 0.0 <= float(alpha) <= 1.0:  # also rejects NaN
        raise ValueError(
            f"alpha is the weight of the soft term and must be in [0, 1], got {alpha!r}"
        )
    return float(alpha)


def check_smoothing(smoothing: float) -> float:
    """Return ``smoothing`` (the label mass moved off the right class) as a float, or raise
    unless it is in [0, 1)."""
    if isinstance(smoothing, bool) or not isinstance(smoothing, numbers.Real):
        raise ValueError(f"smoothing must be a number in [0, 1), got {smoothing!r}")
    if not 0.0 <= float(smoothing) < 1.0:  # also rejects NaN
        raise ValueError(f"smoothing must be in [0, 1), got {smoothing!r}")
    return float(smoothing)


def _logits(x, name: str):
    """Cast logits to float32 and check they are finite."""
    x = ops.cast(x, "float32")
    _assert(ops.all(ops.isfinite(x)), f"{name} contain NaN or infinite values")
    return x


def _check_same_shape(student_logits, teacher_logits) -> None:
    s, t = tuple(student_logits.shape), tuple(teacher_logits.shape)
    compatible = len(s) == len(t) and all(a is None or b is None or a == b for a, b in zip(s, t))
    if not compatible:
        raise ValueError(
            f"teacher and student logits must have the same shape, got teacher {t} and student {s}"
        )


# --------------------------------------------------------------------------- softmax


def softmax_t(logits, temperature: float = 1.0):
    """Softmax of ``logits / temperature`` over the last axis, in float32 (one row per sample)."""
    temperature = check_temperature(temperature)
    return ops.softmax(ops.cast(logits, "float32") / temperature, axis=-1)


def soft_targets(teacher_logits, temperature: float):
    """The teacher's soft targets ``q = softmax(z / T)``: class probabilities, rows sum to 1."""
    return softmax_t(teacher_logits, temperature)


def smoothed_labels(labels, num_classes: int, smoothing: float = 0.0):
    """Integer ``labels`` as target probabilities: ``1 - smoothing`` on the right class and
    ``smoothing / (num_classes - 1)`` on each of the others (``smoothing=0``: one-hot). With the
    teacher's :func:`off_target_mass` as ``smoothing`` these targets are as confident as the
    teacher's soft targets on average, but say nothing about which wrong class is likelier."""
    smoothing = check_smoothing(smoothing)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be a whole number >= 2, got {num_classes!r}")
    labels = ops.reshape(ops.cast(labels, "int32"), (-1,))
    _check_classes(labels, num_classes)
    one_hot = ops.one_hot(labels, num_classes)
    return one_hot * (1.0 - smoothing) + (1.0 - one_hot) * (smoothing / (num_classes - 1))


def off_target_mass(teacher_logits, labels, temperature: float) -> float:
    """The teacher's mean probability off the right class at ``temperature``:
    ``mean(1 - softmax(t / T)[y])`` over the samples, in float32 from ``log_softmax``."""
    logits = _logits(teacher_logits, "teacher logits")
    labels = ops.reshape(ops.cast(labels, "int32"), (-1,))
    _check_batch(labels, logits)
    _check_classes(labels, logits.shape[-1])
    log_q = ops.log_softmax(logits / check_temperature(temperature), axis=-1)
    right = ops.sum(ops.one_hot(labels, logits.shape[-1]) * ops.exp(log_q), axis=-1)
    return float(ops.convert_to_numpy(ops.mean(1.0 - right)))


def _check_classes(labels, num_classes: int) -> None:
    """Integer ``labels`` are class indices ``0..num_classes - 1``: ``one_hot`` would make a
    row of zeros of any other, silently."""
    inside = ops.logical_and(ops.all(labels >= 0), ops.all(labels < num_classes))
    _assert(inside, f"labels out of range: every label must be in 0..{num_classes - 1}")


# --------------------------------------------------------------------------- loss terms

_NEAR = 20.0  # rows whose scaled logit differences stay below this take the stable form


def _expm1_minus_x_over_x2(x):
    """``(exp(x) - 1 - x) / x**2`` without the cancellation of its three terms near 0: a Taylor
    series where ``|x| < 0.5`` (eight terms: float32-exact), the direct form elsewhere."""
    small = ops.abs(x) < 0.5
    xs = ops.where(small, x, 0.0)
    series = ops.zeros_like(xs)
    for k in range(9, 1, -1):  # 1/2! + x/3! + ... + x**7/9!, by Horner
        series = series * xs + 1.0 / math.factorial(k)
    xb = ops.where(small, 1.0, x)
    return ops.where(small, series, (ops.expm1(xb) - xb) / ops.square(xb))


def _kl_times_t2(student, teacher, temperature: float):
    """Per sample, ``T**2 * KL(softmax(t/T) || softmax(s/T))`` in float32, exact at every
    temperature.

    ``sum q (log q - log p)`` from two log-softmaxes cancels: at high T both are ``-log C``
    plus terms of order ``1/T``, and the KL is of order ``1/T**2`` (at T = 1e4 the direct form
    is off by 9 %). Here, with ``p = softmax(s/T)``, ``v = (t - s) - E_p[t - s]`` (the logit
    differences, centred under ``p``; the KL does not change when ``v`` is shifted) and
    ``x = v / T``, exactly::

        T**2 KL = E_p[v * T expm1(x)] / (1 + G)  -  E_p[v**2 f(x)] * log1p(G) / G,
        G = E_p[x**2 f(x)],  f(x) = (exp(x) - 1 - x) / x**2

    Both expectations have terms of one sign, and the difference of the two is about half
    the first, so nothing cancels; as T grows it tends to ``Var_p(t - s) / 2``, the
    logit-matching limit. Rows where some ``x`` exceeds :data:`_NEAR` (low temperatures,
    where ``exp(x)`` would overflow) use the direct form, which is exact there.
    """
    log_p = ops.log_softmax(student / temperature, axis=-1)
    log_q = ops.log_softmax(teacher / temperature, axis=-1)
    direct = temperature**2 * ops.sum(ops.exp(log_q) * (log_q - log_p), axis=-1)
    p = ops.exp(log_p)
    w = teacher - student
    v = w - ops.sum(p * w, axis=-1, keepdims=True)
    near = ops.max(v, axis=-1) <= _NEAR * temperature
    v = ops.where(ops.expand_dims(near, -1), v, 0.0)  # far rows: zeros, so none overflows
    x = v / temperature
    f = _expm1_minus_x_over_x2(x)
    g = ops.sum(p * ops.square(x) * f, axis=-1)
    first = ops.sum(p * v * temperature * ops.expm1(x), axis=-1) / (1.0 + g)
    tiny = g < 1e-3
    gs = ops.where(tiny, 1.0, g)
    log1p_g_over_g = ops.where(tiny, 1.0 - g / 2.0 + ops.square(g) / 3.0, ops.log1p(gs) / gs)
    stable = first - ops.sum(p * ops.square(v) * f, axis=-1) * log1p_g_over_g
    return ops.where(near, stable, direct)


def _check_batch(labels, logits) -> None:
    """One label per row of logits, and at least one row (where the shapes are known)."""
    n_logits, n_labels = logits.shape[0], labels.shape[0] if len(labels.shape) else 1
    if n_logits == 0:
        raise ValueError("empty batch: the loss of zero samples is undefined")
    if n_logits is not None and n_labels is not None and n_logits != n_labels:
        raise ValueError(f"{n_labels} labels for {n_logits} rows of logits: one label per sample")


def hard_loss(labels, student_logits):
    """Mean cross-entropy of integer ``labels`` with ``softmax(student_logits)`` at T = 1.

    Labels outside ``0..C-1``, or labels with a fractional part (2.7 is no class), raise
    ValueError (eager) or make the loss NaN (compiled).
    """
    logits = _logits(student_logits, "student logits")
    num_classes = logits.shape[-1]
    labels = ops.reshape(labels, (-1,))
    _check_batch(labels, logits)
    valid = ops.ones(ops.shape(labels), "bool")
    if not keras.backend.is_int_dtype(keras.backend.standardize_dtype(labels.dtype)):
        whole = ops.equal(ops.cast(labels, "float32"), ops.round(ops.cast(labels, "float32")))
        _assert(ops.all(whole), "labels must be whole class indices, got a fractional label")
        valid = whole
    labels = ops.cast(labels, "int32")
    valid = ops.logical_and(valid, ops.logical_and(labels >= 0, labels < num_classes))
    _assert(ops.all(valid), f"labels out of range: every label must be in 0..{num_classes - 1}")
    per_sample = -ops.sum(ops.one_hot(labels, num_classes) * ops.log_softmax(logits), axis=-1)
    return ops.mean(ops.where(valid, per_sample, float("nan")))


def soft_loss(
    student_logits,
    teacher_logits=None,
    *,
    temperature: float,
    kind: str = "kl",
    t2_scaling: bool = True,
    target_probs=None,
):
    """Mean soft (distillation) term between the student's and the targets' tempered softmax.

    Targets are either ``teacher_logits`` (soft targets ``softmax(t/T)``) or ``target_probs``,
    class probabilities used as they are (for example one-hot labels, the quantization
    homework's Q4).

    ``kind="kl"``: ``KL(q || p)``; ``kind="ce"``: ``-sum q log p`` (cross-entropy), where
    ``p = softmax(s/T)``. The two differ by the targets' entropy, a constant, so their gradients
    with respect to the student are equal: ``T * (p - q) / batch`` with T**2 scaling.
    """
    temperature = check_temperature(temperature)
    if kind not in SOFT_KINDS:
        raise ValueError(f"kind must be one of {SOFT_KINDS}, got {kind!r}")
    if (teacher_logits is None) == (target_probs is None):
        raise ValueError("pass exactly one of teacher_logits or target_probs")
    student = _logits(student_logits, "student logits")
    t2 = temperature**2
    if teacher_logits is not None:
        _check_same_shape(student, teacher_logits)
        teacher = _logits(teacher_logits, "teacher logits")
        per_sample = _kl_times_t2(student, teacher, temperature)
        if kind == "ce":  # the cross-entropy is the KL plus the targets' entropy
            log_q = ops.log_softmax(teacher / temperature, axis=-1)
            entropy = -ops.sum(ops.exp(log_q) * log_q, axis=-1)
            per_sample = per_sample + t2 * entropy
        return ops.mean(per_sample) / (1.0 if t2_scaling else t2)
    q = ops.cast(target_probs, "float32")
    _check_same_shape(student, q)
    _assert(
        ops.logical_and(ops.all(q >= 0), ops.all(ops.abs(ops.sum(q, axis=-1) - 1.0) < 1e-3)),
        "target_probs must be probabilities: non-negative rows that sum to 1",
    )
    log_p = ops.log_softmax(student / temperature, axis=-1)
    # 0 * log 0 = 0: clamp only inside the log, where q == 0 makes the term vanish anyway.
    log_q = ops.log(ops.maximum(q, 1e-30))
    if kind == "kl":
        per_sample = ops.sum(q * (log_q - log_p), axis=-1)
    else:
        per_sample = -ops.sum(q * log_p, axis=-1)
    return (t2 if t2_scaling else 1.0) * ops.mean(per_sample)


def kd_loss(
    labels, student_logits, teacher_logits=None, *, temperature: float, alpha: float, **options
):
    """``(1 - alpha) * hard + alpha * soft`` (see the module docstring); returns a scalar.

    ``options`` are :func:`soft_loss`'s: ``kind``, ``t2_scaling``, ``target_probs``.
    """
    hard, soft = kd_terms(
        labels, student_logits, teacher_logits, temperature=temperature, alpha=alpha, **options
    )
    return (1.0 - alpha) * hard + alpha * soft


def kd_terms(
    labels,
    student_logits,
    teacher_logits=None,
    *,
    temperature: float,
    alpha: float,
    kind: str = "kl",
    t2_scaling: bool = True,
    target_probs=None,
):
    """The hard and soft terms of :func:`kd_loss`, unweighted, as ``(hard, soft)``.

    A term whose weight is 0 is not computed and returned as 0.0 (``alpha=0`` needs no
    teacher).
    """
    alpha = check_alpha(alpha)
    check_temperature(temperature)
    zero = ops.zeros((), "float32")
    hard = hard_loss(labels, student_logits) if alpha < 1.0 else zero
    soft = zero
    if alpha > 0.0:
        soft = soft_loss(
            student_logits,
            teacher_logits,
            temperature=temperature,
            kind=kind,
            t2_scaling=t2_scaling,
            target_probs=target_probs,
        )
    return hard, soft


def hint_loss(guided, hint):
    """FitNets' hint loss: mean squared difference between the regressed guided features and the
    teacher's hint features, averaged over all elements (batch, positions and channels), in
    float32. Romero et al. write ``1/2 ||u_h - r(v_g)||^2``; the constant only rescales the
    learning rate."""
    guided = ops.cast(guided, "float32")
    hint = ops.cast(hint, "float32")
    g, h = tuple(guided.shape), tuple(hint.shape)
    alike = len(g) == len(h) and all(a is None or b is None or a == b for a, b in zip(g, h))
    if not alike or g[1:] != h[1:]:
        raise ValueError(
            f"the regressor output (guided) and the hint must have the same shape, got guided "
            f"{g} and hint {h}"
        )
    return ops.mean(ops.square(guided - hint))


def logit_gradient(loss_fn, logits):
    """``d loss_fn(logits) / d logits`` by automatic differentiation on the current backend, as
    a float32 NumPy array: to look at what a loss asks of the student's logits."""
    import numpy as np

    x = np.asarray(logits, dtype=np.float32)
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        v = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(v)
            out = loss_fn(v)
        return tape.gradient(out, v).numpy()
    if backend == "jax":
        import jax

        return np.asarray(jax.grad(loss_fn)(x))
    raise NotImplementedError(f"no gradient for backend {backend!r}")


# --------------------------------------------------------------------------- keras.distillation


class SoftTargetDistillation(keras.distillation.DistillationLoss):
    """kdlib's soft term as a ``keras.distillation.DistillationLoss``, for users of the built-in
    ``keras.distillation.Distiller``.

    Unlike the built-in ``LogitsDistillation``, it computes the KL divergence from
    ``log_softmax`` (no probability clipping), supports a soft-target cross-entropy whose targets
    are the teacher's tempered *probabilities* (the built-in feeds tempered logits to non-KL
    losses), and makes the T**2 factor explicit. Note that the built-in ``Distiller`` weighs the
    sum of distillation terms by ``1 - student_loss_weight``: kdlib's ``alpha`` is
    ``1 - student_loss_weight`` there.
    """

    def __init__(self, temperature: float = 4.0, kind: str = "kl", t2_scaling: bool = True):
        self.temperature = check_temperature(temperature)
        if kind not in SOFT_KINDS:
            raise ValueError(f"kind must be one of {SOFT_KINDS}, got {kind!r}")
        self.kind = kind
        self.t2_scaling = bool(t2_scaling)

    def compute_loss(self, teacher_outputs, student_outputs, **kwargs):
        """Soft term between the teacher's and the student's logits (see :func:`soft_loss`)."""
        return soft_loss(
            student_outputs,
            teacher_outputs,
            temperature=self.temperature,
            kind=self.kind,
            t2_scaling=self.t2_scaling,
        )

    def get_config(self) -> dict:
        return {"temperature": self.temperature, "kind": self.kind, "t2_scaling": self.t2_scaling}

    @classmethod
    def from_config(cls, config: dict) -> SoftTargetDistillation:
        return cls(**config)
