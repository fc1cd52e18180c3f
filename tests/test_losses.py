"""kdlib.losses against an independent NumPy float64 reference, gradients included."""

import itertools

import keras
import numpy as np
import pytest
from keras import ops

from kdlib import losses
from tests.helpers import kd_reference, soft_reference_exact, softmax

pytestmark = pytest.mark.backend

rng = np.random.default_rng(1234)
CASES = [
    (batch, classes, temperature, alpha, kind, t2)
    for (batch, classes), temperature, alpha, kind, t2 in itertools.product(
        [(1, 2), (7, 10), (32, 100)],
        [0.5, 1.0, 4.0, 20.0],
        [0.0, 0.3, 0.9, 1.0],
        ["kl", "ce"],
        [True, False],
    )
]


def _np(x):
    return np.asarray(ops.convert_to_numpy(x), dtype=np.float64)


def _random_case(batch, classes, scale=5.0):
    s = rng.normal(0, scale, (batch, classes)).astype(np.float32)
    t = rng.normal(0, scale, (batch, classes)).astype(np.float32)
    y = rng.integers(0, classes, batch)
    return y, s, t


@pytest.mark.parametrize("batch,classes,temperature,alpha,kind,t2", CASES)
def test_kd_loss_matches_float64_reference(batch, classes, temperature, alpha, kind, t2):
    y, s, t = _random_case(batch, classes)
    hard, soft, total = kd_reference(y, s, t, temperature, alpha, kind, t2)
    got_hard, got_soft = losses.kd_terms(
        y, s, t, temperature=temperature, alpha=alpha, kind=kind, t2_scaling=t2
    )
    got = losses.kd_loss(y, s, t, temperature=temperature, alpha=alpha, kind=kind, t2_scaling=t2)
    np.testing.assert_allclose(_np(got), total, rtol=2e-5, atol=2e-5)
    if alpha < 1:
        np.testing.assert_allclose(_np(got_hard), hard, rtol=2e-5, atol=2e-5)
    if alpha > 0:
        np.testing.assert_allclose(_np(got_soft), soft, rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("temperature", [1.0, 2.5, 10.0])
def test_softmax_t_rows_match_reference(temperature):
    z = rng.normal(0, 8, (5, 10)).astype(np.float32)
    np.testing.assert_allclose(
        _np(losses.softmax_t(z, temperature)), softmax(z / temperature), rtol=1e-5, atol=1e-7
    )
    np.testing.assert_allclose(_np(losses.soft_targets(z, temperature)).sum(-1), 1.0, rtol=1e-6)
    # each row on its own: the softmax is per sample, not over the whole batch (the FitNets
    # notebook's bug)
    np.testing.assert_allclose(
        _np(losses.softmax_t(z[:1], temperature)),
        softmax(z[:1] / temperature),
        rtol=1e-5,
        atol=1e-7,
    )


@pytest.mark.parametrize("kind", ["kl", "ce"])
@pytest.mark.parametrize("temperature", [1.0, 3.0, 8.0])
def test_soft_gradient_is_T_times_p_minus_q_over_batch(kind, temperature):
    """Hinton et al. section 2: dC/ds_i = (1/T)(p_i - q_i), times T**2 -> T (p_i - q_i)."""
    _, s, t = _random_case(16, 10, scale=3.0)
    g = losses.logit_gradient(
        lambda v: losses.soft_loss(v, t, temperature=temperature, kind=kind), s
    )
    expected = temperature * (softmax(s / temperature) - softmax(t / temperature)) / len(s)
    np.testing.assert_allclose(g, expected, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("kind", ["kl", "ce"])
@pytest.mark.parametrize("t2", [True, False])
@pytest.mark.parametrize("temperature,alpha", [(1.0, 0.5), (4.0, 0.9), (20.0, 0.3), (2.0, 0.0)])
def test_kd_loss_gradient_matches_float64_reference(kind, t2, temperature, alpha):
    """The whole loss a student is trained on: (1 - alpha)(p - onehot) / N from the hard term,
    plus alpha * T**e (p_T - q_T) / N from the soft one, e = 1 with T**2 scaling, -1 without."""
    y, s, t = _random_case(12, 10, scale=3.0)
    g = losses.logit_gradient(
        lambda v: losses.kd_loss(
            y, v, t, temperature=temperature, alpha=alpha, kind=kind, t2_scaling=t2
        ),
        s,
    )
    onehot = np.eye(10)[y]
    soft = softmax(s / temperature) - softmax(t / temperature)
    expected = (
        (1 - alpha) * (softmax(s) - onehot) + alpha * temperature ** (1 if t2 else -1) * soft
    ) / len(s)
    np.testing.assert_allclose(g, expected, rtol=1e-4, atol=1e-7)


# every temperature the losses accept, the Specs' range (1e-3 to 1e4) within it, both ends included
EVERY_TEMPERATURE = sorted({*np.geomspace(losses.MIN_TEMPERATURE, losses.MAX_TEMPERATURE, 12), 1e4})


@pytest.mark.parametrize("temperature", EVERY_TEMPERATURE)
@pytest.mark.parametrize("scale", [0.01, 1.0, 30.0])
def test_kd_loss_and_its_gradient_match_float64_at_every_accepted_temperature(temperature, scale):
    """At high T the soft term is of order 1/T**2 inside differences of order 1/T: a direct
    log-softmax difference in float32 is 9 % off at T = 1e4 and negative at 1e6."""
    y, s, t = _random_case(16, 10, scale=scale)
    hard, _, _ = kd_reference(y, s, t, 1.0, 0.0)
    for kind, t2 in itertools.product(["kl", "ce"], [True, False]):
        soft, gradient = soft_reference_exact(s, t, temperature, kind, t2)
        got_soft = losses.soft_loss(s, t, temperature=temperature, kind=kind, t2_scaling=t2)
        np.testing.assert_allclose(_np(got_soft), soft, rtol=1e-5, atol=0)
        got = losses.kd_loss(y, s, t, temperature=temperature, alpha=0.7, kind=kind, t2_scaling=t2)
        np.testing.assert_allclose(_np(got), 0.3 * hard + 0.7 * soft, rtol=1e-5, atol=0)
        g = losses.logit_gradient(
            lambda v, k=kind, e=t2: losses.soft_loss(
                v, t, temperature=temperature, kind=k, t2_scaling=e
            ),
            s,
        )
        np.testing.assert_allclose(g, gradient, rtol=1e-4, atol=1e-6 * np.abs(gradient).max())


@pytest.mark.parametrize("temperature", [1e-4, 1e9, 1e30])
def test_temperatures_where_the_losses_are_not_exact_are_refused(temperature):
    y, s, t = _random_case(4, 10)
    with pytest.raises(ValueError, match="temperature must be from 0.001 to 1e"):
        losses.kd_loss(y, s, t, temperature=temperature, alpha=0.5)


def test_soft_gradient_without_t2_scaling_is_smaller_by_T2():
    _, s, t = _random_case(8, 10)
    with_t2 = losses.logit_gradient(lambda v: losses.soft_loss(v, t, temperature=5.0), s)
    without = losses.logit_gradient(
        lambda v: losses.soft_loss(v, t, temperature=5.0, t2_scaling=False), s
    )
    np.testing.assert_allclose(
        with_t2, 25.0 * without, rtol=1e-4, atol=1e-7
    )  # float32: 1e-8 is below its step here


def test_high_temperature_limit_is_logit_matching():
    """Hinton et al. section 2.1: for zero-mean logits and large T, the gradient approaches
    (s - t) / (C * batch): distillation becomes matching logits."""
    batch, classes = 8, 10
    _, s, t = _random_case(batch, classes, scale=1.0)
    s, t = s - s.mean(-1, keepdims=True), t - t.mean(-1, keepdims=True)
    target = (s - t) / (classes * batch)
    errors = []
    for temperature in (10.0, 100.0, 1000.0):
        g = losses.logit_gradient(lambda v, T=temperature: losses.soft_loss(v, t, temperature=T), s)
        errors.append(np.abs(g - target).max() / np.abs(target).max())
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 1e-2


def test_hard_term_is_at_temperature_one_and_ignores_T():
    y, s, t = _random_case(6, 10)
    a = losses.kd_terms(y, s, t, temperature=2.0, alpha=0.5)[0]
    b = losses.kd_terms(y, s, t, temperature=9.0, alpha=0.5)[0]
    np.testing.assert_allclose(_np(a), _np(b), rtol=1e-6)


def test_target_probs_from_labels_is_cross_entropy_at_T():
    """The quantization homework's Q4: one-hot labels as the soft targets."""
    y, s, _ = _random_case(9, 10)
    onehot = np.eye(10, dtype=np.float32)[y]
    got = losses.soft_loss(s, temperature=4.0, kind="ce", target_probs=onehot)
    expected = -(onehot * np.log(softmax(s / 4.0))).sum(-1).mean() * 16.0
    np.testing.assert_allclose(_np(got), expected, rtol=1e-5)


def test_losses_are_float32_for_half_precision_logits():
    """Half-precision logits are upcast before the softmax: the loss is float32 and equals the
    float64 reference on the same (rounded) half-precision values."""
    y, s, t = _random_case(4, 10)
    for dtype in ("float16", "bfloat16"):
        s_half, t_half = ops.cast(s, dtype), ops.cast(t, dtype)
        loss = losses.kd_loss(y, s_half, t_half, temperature=3.0, alpha=0.7)
        assert keras.backend.standardize_dtype(loss.dtype) == "float32"
        expected = kd_reference(y, _np(s_half), _np(t_half), 3.0, 0.7)[2]
        np.testing.assert_allclose(_np(loss), expected, rtol=1e-5)


def test_float16_logits_of_magnitude_1e4_give_a_finite_loss():
    s = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 5e3]], dtype=np.float16)
    t = np.array([[-1e4, 1e4, 0.0], [1e4, -1e4, -5e3]], dtype=np.float16)
    for kind in ("kl", "ce"):
        loss = _np(losses.kd_loss(np.array([0, 1]), s, t, temperature=2.0, alpha=0.5, kind=kind))
        expected = kd_reference(np.array([0, 1]), s, t, 2.0, 0.5, kind)[2]
        assert np.isfinite(loss) and loss > 1e3
        np.testing.assert_allclose(loss, expected, rtol=1e-5)


@pytest.mark.parametrize("which", ["student", "teacher"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_logits_are_reported(which, bad):
    y, s, t = _random_case(3, 4)
    (s if which == "student" else t)[1, 2] = bad
    with pytest.raises(ValueError, match=f"{which} logits contain NaN or infinite"):
        losses.kd_loss(y, s, t, temperature=2.0, alpha=0.5)


def test_shape_mismatch_is_reported():
    y, s, _ = _random_case(4, 10)
    with pytest.raises(ValueError, match="same shape.*teacher \\(4, 8\\).*student \\(4, 10\\)"):
        losses.kd_loss(y, s, np.zeros((4, 8), np.float32), temperature=2.0, alpha=0.5)


@pytest.mark.parametrize("temperature", [0, -1.0, float("nan"), float("inf"), "3", None])
def test_bad_temperature_is_reported(temperature):
    y, s, t = _random_case(2, 3)
    with pytest.raises(ValueError, match="temperature"):
        losses.kd_loss(y, s, t, temperature=temperature, alpha=0.5)


@pytest.mark.parametrize("alpha", [-0.1, 1.5, float("nan"), "0.5"])
def test_bad_alpha_is_reported(alpha):
    y, s, t = _random_case(2, 3)
    with pytest.raises(ValueError, match="alpha"):
        losses.kd_loss(y, s, t, temperature=2.0, alpha=alpha)


@pytest.mark.parametrize("label", [-1, 10, 11])
def test_labels_out_of_range_are_reported(label):
    y, s, t = _random_case(3, 10)
    y[1] = label
    with pytest.raises(ValueError, match="labels out of range.*0..9"):
        losses.kd_loss(y, s, t, temperature=2.0, alpha=0.5)


def test_hint_loss_is_mean_squared_error_and_checks_shapes():
    a = rng.normal(size=(2, 4, 4, 3)).astype(np.float32)
    b = rng.normal(size=(2, 4, 4, 3)).astype(np.float32)
    np.testing.assert_allclose(
        _np(losses.hint_loss(a, b)), ((a.astype(np.float64) - b) ** 2).mean(), rtol=1e-5
    )
    with pytest.raises(ValueError, match="same shape"):
        losses.hint_loss(a, b[:, :2])


def test_keras_distillation_builtin_kl_agrees_where_both_are_right():
    """The built-in LogitsDistillation with a KLDivergence *instance* (its probability path,
    T**2 included) and kdlib's soft term agree for moderate logits, where the built-in's
    probability clipping does not bite."""
    _, s, t = _random_case(16, 10, scale=2.0)
    for temperature in (1.0, 3.0, 10.0):
        builtin = keras.distillation.LogitsDistillation(
            temperature=temperature, loss=keras.losses.KLDivergence()
        )
        ours = losses.SoftTargetDistillation(temperature=temperature, kind="kl")
        np.testing.assert_allclose(
            _np(builtin.compute_loss(t, s)), _np(ours.compute_loss(t, s)), rtol=1e-4, atol=1e-6
        )


def test_builtin_default_string_loss_takes_the_logits_path():
    """Why kdlib has its own soft term (1/2): the built-in's default ``loss="kl_divergence"``
    resolves to a plain function, not a ``KLDivergence`` instance, so it is fed the tempered
    *logits* instead of probabilities and is not the KL of the soft targets."""
    _, s, t = _random_case(16, 10, scale=2.0)
    reference = kd_reference(np.zeros(16, int), s, t, 2.0, 1.0)[1]
    builtin = _np(keras.distillation.LogitsDistillation(temperature=2.0).compute_loss(t, s))
    np.testing.assert_allclose(
        _np(losses.SoftTargetDistillation(temperature=2.0).compute_loss(t, s)), reference, rtol=1e-5
    )
    assert abs(builtin - reference) / reference > 0.5


def test_builtin_kl_clips_where_kdlib_does_not():
    """Why kdlib computes from log_softmax (2/2): with confident teachers the built-in's clipped
    probabilities give a visibly wrong KL; kdlib matches the float64 reference."""
    s = np.array([[0.0, 30.0, 0.0]], dtype=np.float32)
    t = np.array([[30.0, 0.0, 0.0]], dtype=np.float32)
    reference = kd_reference(np.array([0]), s, t, 1.0, 1.0)[1]
    builtin = _np(
        keras.distillation.LogitsDistillation(
            temperature=1.0, loss=keras.losses.KLDivergence()
        ).compute_loss(t, s)
    )
    ours = _np(losses.SoftTargetDistillation(temperature=1.0).compute_loss(t, s))
    np.testing.assert_allclose(ours, reference, rtol=1e-5)
    assert abs(builtin - reference) / reference > 0.2


def test_smoothed_labels_and_the_teachers_off_target_mass_match_numpy():
    y = rng.integers(0, 10, 50)
    got = _np(losses.smoothed_labels(y, 10, 0.2))
    expected = np.full((50, 10), 0.2 / 9)
    expected[np.arange(50), y] = 0.8
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    np.testing.assert_allclose(_np(losses.smoothed_labels(y, 10)), np.eye(10)[y])
    t = rng.normal(0, 5, (50, 10)).astype(np.float32)
    for temperature in (1.0, 4.0, 20.0):
        mass = 1 - softmax(t.astype(np.float64) / temperature)[np.arange(50), y]
        assert losses.off_target_mass(t, y, temperature) == pytest.approx(mass.mean(), rel=1e-5)
    for bad in (-0.1, 1.0, float("nan"), True):
        with pytest.raises(ValueError, match="smoothing"):
            losses.smoothed_labels(y, 10, bad)
