"""The Distiller, teacher logits, ensembles, hint stage and chains on tiny problems."""

import functools
import json
import os
import shutil
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
from keras import layers, ops

from kdlib import distill, losses, train
from kdlib.data import Batches
from tests.helpers import kd_reference, softmax

rng = np.random.default_rng(7)


def _net(name, hidden=16, classes=4, bn=False):
    inputs = keras.Input((6,))
    x = layers.Dense(hidden, activation="relu")(inputs)
    if bn:
        x = layers.Dropout(0.3)(layers.BatchNormalization()(x))
    return keras.Model(inputs, layers.Dense(classes)(x), name=name)


def _data(n=64, classes=4):
    x = rng.uniform(size=(n, 6)).astype(np.float32)
    y = rng.integers(0, classes, n)
    return x, y


def _weights(model):
    return [np.array(w) for w in model.get_weights()]


def _np(x):
    return np.asarray(ops.convert_to_numpy(x), dtype=np.float64)


@pytest.mark.backend
def test_teacher_weights_are_unchanged_by_fit():
    keras.utils.set_random_seed(0)
    teacher, student = _net("teacher", bn=True), _net("student")
    x, y = _data()
    before = _weights(teacher)
    d = distill.Distiller(student, teacher, temperature=3.0, alpha=0.7)
    d.compile(keras.optimizers.AdamW(1e-2, weight_decay=0.1))
    student_before = _weights(student)
    d.fit(x, y, epochs=2, batch_size=16, verbose=0)
    for a, b in zip(before, _weights(teacher)):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(student_before, _weights(student)))


@pytest.mark.backend
def test_distillation_moves_the_student_toward_the_teacher():
    keras.utils.set_random_seed(1)
    teacher, student = _net("teacher", hidden=32), _net("student", hidden=8)
    x, y = _data(256)
    d = distill.Distiller(student, teacher, temperature=2.0, alpha=1.0)
    d.compile(keras.optimizers.Adam(1e-2))
    history = d.fit(x, y, epochs=8, batch_size=32, verbose=0).history
    assert history["soft_loss"][-1] < 0.5 * history["soft_loss"][0]
    assert set(history) == {"loss", "hard_loss", "soft_loss", "accuracy"}


@pytest.mark.backend
def test_cached_logits_and_online_teacher_give_the_same_loss():
    keras.utils.set_random_seed(2)
    teacher, student = _net("teacher"), _net("student")
    x, y = _data(32)
    t = np.asarray(teacher.predict(x, verbose=0))
    s = student(x)
    online = distill.Distiller(student, teacher, temperature=4.0, alpha=0.6)
    cached = distill.Distiller(student, None, temperature=4.0, alpha=0.6)
    a = online.compute_loss(x, y, s, training=True)
    b = cached.compute_loss(x, y, s, sample_weight=t, training=True)
    np.testing.assert_allclose(_np(a), _np(b), rtol=1e-6)
    np.testing.assert_allclose(_np(a), kd_reference(y, _np(s), t, 4.0, 0.6)[2], rtol=1e-4)


@pytest.mark.backend
def test_cached_logit_training_through_the_pipeline():
    keras.utils.set_random_seed(3)
    teacher, student = _net("teacher"), _net("student")
    x, y = _data(64)
    t = distill.predict_logits(teacher, x)
    d = distill.Distiller(student, temperature=2.0, alpha=0.5)
    d.compile("adam")
    history = d.fit(
        Batches(x, y, 16, shuffle=True, teacher_logits=t), epochs=1, shuffle=False, verbose=0
    ).history
    assert np.isfinite(history["soft_loss"][0]) and history["soft_loss"][0] > 0


@pytest.mark.backend
def test_ensemble_logits_are_the_mean_of_the_members():
    keras.utils.set_random_seed(4)
    members = [_net(f"m{i}") for i in range(3)]
    x, _ = _data(20)
    each = [np.asarray(m.predict(x, verbose=0)) for m in members]
    np.testing.assert_allclose(
        distill.predict_logits(members, x), np.mean(each, axis=0), rtol=1e-5, atol=1e-6
    )
    d = distill.Distiller(_net("student"), members)
    np.testing.assert_allclose(
        _np(d.teacher_logits(x)), np.mean(each, axis=0), rtol=1e-5, atol=1e-6
    )


@pytest.mark.backend
def test_mean_probs_rule_averages_the_soft_targets():
    logits = [rng.normal(0, 3, (5, 7)).astype(np.float32) for _ in range(4)]
    combined = _np(distill.combine_logits(logits, "mean_probs", temperature=2.5))
    expected = np.mean([softmax(z / 2.5) for z in logits], axis=0)
    np.testing.assert_allclose(softmax(combined / 2.5), expected, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="needs the temperature"):
        distill.combine_logits(logits, "mean_probs")


@pytest.mark.backend
def test_evaluate_reports_the_student_alone():
    keras.utils.set_random_seed(5)
    teacher, student = _net("teacher"), _net("student")
    x, y = _data(64)
    d = distill.Distiller(student, teacher, temperature=3.0, alpha=0.9)
    d.compile("adam")
    history = d.fit(x, y, epochs=1, batch_size=16, validation_data=(x, y), verbose=0).history
    assert "val_soft_loss" not in history and "val_accuracy" in history
    logs = d.evaluate(x, y, batch_size=64, return_dict=True, verbose=0)
    assert set(logs) == {"loss", "accuracy"}
    logits = _np(student(x))
    ce = -np.log(softmax(logits)[np.arange(len(y)), y]).mean()
    np.testing.assert_allclose(logs["loss"], ce, rtol=1e-4)
    np.testing.assert_allclose(logs["accuracy"], np.mean(logits.argmax(-1) == y), rtol=1e-6)


@pytest.mark.backend
def test_labels_as_soft_targets_need_no_teacher():
    x, y = _data(16)
    s = _net("student")(x)
    d = distill.Distiller(_net("s2"), soft_targets="labels", temperature=5.0, alpha=0.5, kind="ce")
    got = d.compute_loss(x, y, s, training=True)
    onehot = np.eye(4)[y]
    soft = -(onehot * np.log(softmax(_np(s) / 5.0))).sum(-1).mean() * 25.0
    hard = -np.log(softmax(_np(s))[np.arange(16), y]).mean()
    np.testing.assert_allclose(_np(got), 0.5 * hard + 0.5 * soft, rtol=1e-4)


@pytest.mark.backend
def test_bad_configurations_are_reported():
    x, y = _data(8)
    s = _net("student")(x)
    with pytest.raises(ValueError, match="must carry cached teacher logits"):
        distill.Distiller(_net("student")).compute_loss(x, y, s, training=True)
    with pytest.raises(ValueError, match="same shape"):
        distill.Distiller(_net("student"), _net("wide", classes=5)).compute_loss(
            x, y, s, training=True
        )
    with pytest.raises(ValueError, match="pass no teacher"):
        distill.Distiller(_net("a"), _net("b"), soft_targets="labels")
    with pytest.raises(ValueError, match="alpha"):
        distill.Distiller(_net("a"), _net("b"), alpha=2.0)
    with pytest.raises(ValueError, match="temperature"):
        distill.Distiller(_net("a"), _net("b"), temperature=0.0)
    with pytest.raises(ValueError, match="takes no 'loss'"):
        distill.Distiller(_net("a"), _net("b")).compile("adam", loss="mse")


@pytest.mark.backend
def test_labels_out_of_range_stop_training_with_a_clear_error():
    """fit reads the labels of both splits before a step; inside a step, TensorFlow's graph runs
    the check and names the fault, and under JAX's jit, where no value exists to check, the
    loss becomes NaN and fit stops on it (kdlib._checks.assert_that)."""
    x, y = _data(32)
    y[3] = 9
    d = distill.Distiller(_net("student"), _net("teacher"), temperature=2.0, alpha=0.5)
    d.compile("adam")
    with pytest.raises(ValueError, match="training labels run from 0 to 9, but the model has 4"):
        train.fit(d, Batches(x, y, 8), Batches(x, y % 4, 8), epochs=1)
    stop = [keras.callbacks.TerminateOnNaN(raise_error=True)]  # as train.fit has it
    expected = "labels out of range" if keras.backend.backend() == "tensorflow" else "NaN or Inf"
    with pytest.raises(Exception, match=expected):
        d.fit(Batches(x, y, 8), epochs=1, verbose=0, callbacks=stop)


def test_hint_stage_trains_the_guided_layers_toward_the_hint():
    keras.utils.set_random_seed(6)

    def conv_net(name, tap, filters):
        inputs = keras.Input((8, 8, 1))
        x = layers.Conv2D(filters, 3, padding="same", activation="relu", name=tap)(inputs)
        x = layers.GlobalAveragePooling2D()(x)
        return keras.Model(inputs, layers.Dense(4)(x), name=name)

    teacher, student = conv_net("teacher", "hint", 6), conv_net("student", "guided", 3)
    x = rng.uniform(size=(64, 8, 8, 1)).astype(np.float32)
    y = rng.integers(0, 4, 64)
    teacher_before = _weights(teacher)
    stage = distill.HintTrainer(student, teacher)
    stage.compile(keras.optimizers.Adam(1e-2))
    loss = stage.fit(x, y, epochs=10, batch_size=16, verbose=0).history["loss"]
    assert loss[-1] < 0.5 * loss[0]
    for a, b in zip(teacher_before, _weights(teacher)):
        np.testing.assert_array_equal(a, b)
    # the student's own layer was trained in place
    np.testing.assert_array_equal(
        stage.guided.get_layer("guided").get_weights()[0],
        student.get_layer("guided").get_weights()[0],
    )


def test_hint_regressor_rules():
    assert distill.hint_regressor((None, 8, 8, 32), (None, 8, 8, 256)).kernel_size == (1, 1)
    assert distill.hint_regressor((None, 10, 10, 32), (None, 8, 8, 256), "fitnet").kernel_size == (
        3,
        3,
    )
    with pytest.raises(ValueError, match="same size"):
        distill.hint_regressor((None, 10, 10, 32), (None, 8, 8, 256))


def test_chain_distils_stage_by_stage_with_frozen_teachers():
    keras.utils.set_random_seed(8)
    models = [_net("t", hidden=32), _net("a", hidden=16), _net("s", hidden=4)]
    x, y = _data(64)

    def train_stage(distiller, i):
        distiller.compile("adam")
        h = distiller.fit(x, y, epochs=1, batch_size=16, verbose=0).history
        return {"stage": i, "soft_loss": h["soft_loss"][-1]}

    stages = distill.chain(models, train_stage, temperature=3.0, alpha=0.8)
    assert [(s.teacher.name, s.student.name, s.record["stage"]) for s in stages] == [
        ("t", "a", 0),
        ("a", "s", 1),
    ]
    assert all(m.trainable for m in models)  # teachers are read, not frozen for good


PARALLEL = """
import os, sys
import numpy as np
import keras
if keras.backend.backend() == "tensorflow":
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    devices = ["/cpu:0", "/cpu:1"]
else:
    import jax
    assert len(jax.devices()) == 2, jax.devices()
    devices = None
from kdlib import device, distill
from kdlib.data import Batches

def run(parallel):
    keras.utils.set_random_seed(0)
    def net(n):
        i = keras.Input((6,))
        return keras.Model(i, keras.layers.Dense(4)(keras.layers.Dense(n, activation="relu")(i)))
    teacher, student = net(16), net(8)
    d = distill.Distiller(student, teacher, temperature=2.0, alpha=0.7)
    d.compile(keras.optimizers.SGD(0.1))
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(128, 6)).astype("float32"); y = rng.integers(0, 4, 128)
    return d.fit(Batches(x, y, 32), epochs=3, verbose=0).history["loss"]

single = run(False)
with device.parallel(devices) as p:
    replicas = getattr(p, "num_replicas_in_sync", None) or len(p.device_mesh.devices.reshape(-1))
    assert replicas == 2, replicas
    both = run(True)
np.testing.assert_allclose(both, single, rtol=5e-4)  # reduction order differs, a 2x bug would not
print("OK", single, both)
"""


@pytest.mark.backend
def test_distiller_trains_data_parallel_on_two_devices_with_the_single_device_loss():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    out = subprocess.run(
        [sys.executable, "-c", PARALLEL], capture_output=True, text=True, timeout=300, env=env
    )
    assert out.returncode == 0 and "OK" in out.stdout, out.stdout[-2000:] + out.stderr[-3000:]


def test_losses_module_exposes_the_same_soft_term_to_keras_distillation():
    d = keras.distillation.Distiller(
        teacher=_net("t"),
        student=_net("s"),
        distillation_losses=losses.SoftTargetDistillation(temperature=3.0),
    )
    d.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = _data(32)
    assert np.isfinite(d.fit(x, y, epochs=1, verbose=0).history["loss"][0])


def test_runs_that_stay_below_one_and_a_half_times_chance_count_as_stalled():
    def run(val):
        return train.Trained(None, 0.0, 0, val, 1, 0.0, {})

    runs = [run(0.10), run(0.149), run(0.151), run(0.9)]
    assert train.stalled(runs, 10) == 2 and train.stalled(runs, 2) == 3  # 0.75 for two
    assert train.stalled([], 10) == 0
    with pytest.raises(ValueError, match="num_classes must be at least 2"):
        train.stalled(runs, 1)


def test_a_teacher_at_chance_level_is_reported():
    with pytest.warns(UserWarning, match="at chance level for 10 classes"):
        train.warn_if_at_chance("teacher", 0.1, 10)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        train.warn_if_at_chance("teacher", 0.6, 10)
        train.warn_if_at_chance("teacher", None, 10)


def test_cosine_schedule_decays_the_learning_rate_to_zero():
    x, y = _data(n=32)
    model = train.compile_classifier(_net("cosine"), lr=0.1, optimizer="sgd", decay_steps=10)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)  # 4 steps
    lr = float(ops.convert_to_numpy(model.optimizer.learning_rate))
    assert lr == pytest.approx(0.1 * 0.5 * (1 + np.cos(np.pi * 4 / 10)), rel=1e-5)
    model.fit(x, y, batch_size=8, epochs=2, verbose=0)  # steps 5..12: past the end
    assert float(ops.convert_to_numpy(model.optimizer.learning_rate)) == pytest.approx(
        0.0, abs=1e-9
    )
    for bad in (0, -3, 2.5):
        with pytest.raises(ValueError, match="decay_steps"):
            train.make_optimizer("adam", 1e-3, decay_steps=bad)


@pytest.mark.filterwarnings("ignore:.*at chance level")
def test_cached_classifier_keys_on_the_builder_its_arguments_and_the_schedule(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("KDLIB_CACHE_DIR", str(tmp_path))
    x, y = _data(n=32)
    batches = Batches(x, y, 8, shuffle=True, seed=0)
    calls = []

    def net(hidden=16, name="cached"):
        calls.append(hidden)
        return _net(name, hidden=hidden)

    def get(schedule="cosine", hidden=16):
        return train.cached_classifier(
            "sched",
            functools.partial(net, hidden=hidden),
            batches,
            batches,
            epochs=2,
            seed=0,
            schedule=schedule,
        )

    model, _ = get()
    assert float(ops.convert_to_numpy(model.optimizer.learning_rate)) == pytest.approx(
        0.0, abs=1e-9
    )  # 8 of 8 steps
    get()
    assert calls == [16]  # loaded, not retrained
    get("constant")
    get("cosine", hidden=32)  # another argument of the builder: another model
    assert calls == [16, 16, 32]
    with pytest.raises(ValueError, match="schedule must be"):
        get("step")
    with pytest.raises(ValueError, match="a lambda cannot describe"):
        train.cached_classifier("sched", lambda: _net("x"), batches, batches, epochs=1, seed=0)


@pytest.mark.backend
def test_a_model_used_as_a_teacher_can_still_be_trained_afterwards():
    keras.utils.set_random_seed(9)
    teacher, student = _net("teacher", bn=True), _net("student")
    x, y = _data(64)
    d = distill.Distiller(student, teacher, temperature=2.0, alpha=0.5)
    d.compile("adam")
    d.fit(x, y, epochs=1, batch_size=16, verbose=0)
    assert teacher.trainable and all(v.trainable for v in teacher.trainable_weights)
    teacher_ids = {id(v) for v in teacher.variables}
    assert not teacher_ids & {id(v) for v in d.trainable_variables}
    assert teacher_ids <= {id(v) for v in d.non_trainable_variables}
    before = _weights(teacher)
    train.compile_classifier(teacher, lr=1e-2).fit(x, y, epochs=1, verbose=0)
    assert any(not np.array_equal(a, b) for a, b in zip(before, _weights(teacher)))


@pytest.mark.backend
def test_library_misuse_gets_a_clear_error():
    x, y = _data(8)
    m = _net("m")
    with pytest.raises(ValueError, match="cannot be its own teacher"):
        distill.Distiller(m, m)
    with pytest.raises(ValueError, match="cannot be its own teacher"):
        distill.HintTrainer(m, m)
    with pytest.raises(ValueError, match="a teacher must be a keras.Model, got str"):
        distill.Distiller(_net("s"), [_net("t"), "teacher.keras"])
    with pytest.raises(ValueError, match="augmentation with cached teacher logits is refused"):
        distill.Distiller(_net("s"), augment="jitter")
    s = _net("student")(x)
    d = distill.Distiller(
        _net("student"), _net("teacher"), temperature=np.float32(4.0), alpha=np.float64(0.5)
    )
    assert d.temperature == 4.0 and d.alpha == 0.5
    with pytest.raises(ValueError, match="3 labels for 8 rows of logits"):
        d.compute_loss(x, y[:3], s, training=True)
    with pytest.raises(ValueError, match="fractional label"):
        d.compute_loss(x, np.array([0, 2.7, 1, 3, 0, 1, 2, 3]), s, training=True)
    with pytest.raises(ValueError, match="empty batch"):
        losses.hard_loss(np.zeros(0, int), np.zeros((0, 4), np.float32))
    with pytest.raises(ValueError, match="target_probs must be probabilities"):
        losses.soft_loss(s, temperature=2.0, target_probs=np.full((8, 4), 0.5, np.float32))


@pytest.mark.backend
def test_augmentation_with_an_online_teacher_shows_both_the_same_images():
    keras.utils.set_random_seed(10)
    seen = {}

    class Probe(keras.layers.Layer):
        def __init__(self, role, **kwargs):
            super().__init__(**kwargs)
            self.role = role

        def call(self, x):
            seen[self.role] = x
            return x

    def conv(role):
        inputs = keras.Input((8, 8, 1))
        x = Probe(role)(inputs)
        x = layers.GlobalAveragePooling2D()(layers.Conv2D(2, 3)(x))
        return keras.Model(inputs, layers.Dense(4)(x), name=role)

    d = distill.Distiller(
        conv("student"), conv("teacher"), temperature=2.0, alpha=0.5, augment="jitter"
    )
    x = np.zeros((16, 8, 8, 1), np.float32)
    x[:, 4, 4, 0] = 1.0
    student_logits, teacher_logits = d(x, training=True)
    a, b = (np.asarray(ops.convert_to_numpy(seen[k])) for k in ("student", "teacher"))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, x)  # augmented
    np.testing.assert_array_equal(
        np.asarray(ops.convert_to_numpy(d(x))), np.asarray(ops.convert_to_numpy(d.student(x)))
    )
    d.compile("adam")
    assert np.isfinite(
        d.fit(x, np.zeros(16, int), epochs=1, batch_size=8, verbose=0).history["loss"][0]
    )


@pytest.mark.backend
def test_a_distil_run_traces_its_training_step_once(monkeypatch):
    # The step's Python runs only when the backend traces it: once per run, not once to make
    # the optimizer's variables and again without (TensorFlow, before fit built them: ~3 s a run)
    traced = []
    compute_loss = distill.Distiller.compute_loss

    def counting(self, *args, training=True, **kwargs):
        traced.append(training)
        return compute_loss(self, *args, training=training, **kwargs)

    monkeypatch.setattr(distill.Distiller, "compute_loss", counting)
    x, y = _data(n=48)
    batches = Batches(x, y, 8, teacher_logits=rng.normal(size=(48, 4)).astype(np.float32))
    train.distil(
        lambda: _net("once"),
        batches,
        Batches(x, y, 16),
        Batches(x, y, 16),
        epochs=3,
        seed=0,
        temperature=2.0,
    )
    assert traced.count(True) == 1


def test_progress_bar_counts_every_batch_and_line_mode_prints_one_line(monkeypatch, capsys):
    x, y = _data(n=48)
    batches = Batches(x, y, 8)
    bars = []
    import tqdm.auto

    class Recorder(tqdm.auto.tqdm):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            bars.append(self)

    monkeypatch.setattr(tqdm.auto, "tqdm", Recorder)
    monkeypatch.setenv("KDLIB_PROGRESS", "bar")
    train.fit(train.compile_classifier(_net("bar")), batches, batches, 3, name="bar")
    assert (
        len(bars) == 1 and bars[0].total == 3 * 6 and bars[0].n == 18
    )  # every batch of every epoch
    assert "val acc" in str(bars[0].postfix) and "epoch" in str(bars[0].postfix)
    monkeypatch.setenv("KDLIB_PROGRESS", "line")
    capsys.readouterr()
    train.fit(train.compile_classifier(_net("line")), batches, batches, 2, name="line")
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "line: 2 epochs in" in out and "\r" not in out
    monkeypatch.setenv("KDLIB_PROGRESS", "loud")
    with pytest.raises(ValueError, match="KDLIB_PROGRESS must be one of"):
        train.fit(train.compile_classifier(_net("x")), batches, batches, 1)


@pytest.mark.backend
def test_a_resumed_run_loads_each_finished_student_and_retrains_only_what_changed(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("KDLIB_CACHE_DIR", str(tmp_path))
    x, y = _data(n=48)
    logits = rng.normal(size=(48, 4)).astype(np.float32)
    plain = Batches(x, y, 8, shuffle=True, seed=0)
    soft = Batches(x, y, 8, shuffle=True, seed=0, teacher_logits=logits)
    val = test = Batches(x, y, 16)
    fits = []
    real_fit = train.fit
    monkeypatch.setattr(train, "fit", lambda *a, **k: fits.append(k["name"]) or real_fit(*a, **k))

    built = []

    def run(data=soft, alpha=0.5, seed=0, name="s", **options):
        def build():
            built.append(_net("student"))
            return built[-1]

        return train.distil(
            build, data, val, test, epochs=2, seed=seed, alpha=alpha, name=name, **options
        )

    monkeypatch.setenv("KDLIB_RESUME", "0")  # the default: nothing cached
    off = run()
    assert fits == ["s"] and list(tmp_path.iterdir()) == []

    monkeypatch.setenv("KDLIB_RESUME", "1")
    first = run()
    assert first.test_errors == off.test_errors  # resuming changes nothing about a run
    assert first.history == off.history
    again = run()  # a new kernel would build the layers under other automatic names
    assert fits == ["s", "s"]  # loaded, not trained
    assert (again.test_errors, again.best_epoch, again.history) == (
        first.test_errors,
        first.best_epoch,
        first.history,
    )
    np.testing.assert_allclose(_np(again.model(x)), _np(first.model(x)), rtol=1e-6)
    # the object build() made is the loaded run, for whoever kept it (a chain's next teacher)
    assert again.model is built[-1]
    run(augment=None)  # an option at its default, spelled out: the same run
    assert fits == ["s", "s"]

    run(alpha=0.7)
    run(seed=1)
    run(data=Batches(x, y, 8, shuffle=True, seed=0, teacher_logits=logits + 1))
    run(data=plain, alpha=0.0)
    run(kind="ce")
    assert fits == ["s"] * 7  # another alpha, seed, teacher, data or option: trained anew

    monkeypatch.setenv("KDLIB_RESUME", "yes")
    with pytest.raises(ValueError, match="KDLIB_RESUME must be 0 or 1"):
        run()


def test_resume_keys_are_the_same_in_every_kernel_for_every_course_model():
    from kdlib import models

    builders = [
        functools.partial(models.mlp, hidden=(8,)),
        functools.partial(models.mnist_cnn, width=0.25),
        functools.partial(models.densenet, 2, (1, 1), input_shape=(28, 28, 1), stem="small"),
        functools.partial(models.svhn_cnn, weight_bits=4, activation_bits=4),
        functools.partial(models.fitnet_student),
        functools.partial(models.fitnet, batch_norm=True),
    ]
    for build in builders:
        keys = []
        for _ in range(2):  # the second build numbers its layers on from the first
            keras.utils.set_random_seed(3)
            keys.append(train._architecture(build()))
        assert keys[0] == keys[1], build


class _Stop(Exception):
    pass


class _StopAfter(keras.callbacks.Callback):
    def __init__(self, epochs, pause=0.0):
        super().__init__()
        self.epochs, self.seen, self.pause = epochs, [], pause

    def on_epoch_end(self, epoch, logs=None):
        time.sleep(self.pause)  # an epoch that takes at least this long
        self.seen.append(epoch)
        if len(self.seen) == self.epochs:
            raise _Stop


@pytest.mark.backend
@pytest.mark.parametrize("distilled", [False, True])
def test_a_run_stopped_mid_way_goes_on_from_its_last_epoch_as_if_never_stopped(tmp_path, distilled):
    x, y = _data(n=64)
    logits = rng.normal(size=(64, 4)).astype(np.float32)
    data = Batches(x, y, 8, shuffle=True, seed=3, teacher_logits=logits if distilled else None)
    val = Batches(x, y, 32)

    def model():  # no dropout: a resumed run must then match an uninterrupted one exactly
        keras.utils.set_random_seed(5)
        net = _net("s", hidden=8)
        if distilled:
            net = distill.Distiller(net, None, alpha=0.5)
            net.compile(train.make_optimizer("adam", 1e-2, decay_steps=48))
            return net
        return train.compile_classifier(net, lr=1e-2, decay_steps=48)

    whole = model()
    reference = train.fit(whole, data, val, 6)
    stopped, backup = model(), tmp_path / "run.backup"
    stop = _StopAfter(4, pause=0.4)
    with pytest.raises(_Stop):
        train.fit(stopped, data, val, 6, backup=backup, callbacks=[stop])
    progress = json.loads((backup / "progress.json").read_text())
    assert progress["epoch"] == 3  # 4th not saved
    assert progress["seconds"] >= 3 * 0.4  # the time the 3 saved epochs took
    resumed, seen = model(), _StopAfter(99)
    result = train.fit(resumed, data, val, 6, backup=backup, callbacks=[seen])
    assert seen.seen == [3, 4, 5]  # only the epochs not done
    # all 6 epochs' training time (the record rounds to 0.1 s), not only the 3 resumed ones
    assert result["seconds"] >= round(progress["seconds"], 1)
    assert not backup.exists()  # removed when the run ended
    assert result["history"]["loss"] == pytest.approx(reference["history"]["loss"], rel=1e-5)
    assert result["best_epoch"] == reference["best_epoch"]
    for a, b in zip(resumed.get_weights(), whole.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.backend
def test_a_stopped_run_resumes_from_its_backup_alone_when_it_has_a_checkpoint_too(tmp_path):
    """The backup folder holds the best weights so far, so a run resumes from it alone (a lent
    GPU's cache comes back without the checkpoints folder); the checkpoint gets them at the end."""
    x, y = _data(n=64)
    data, val = Batches(x, y, 8, shuffle=True, seed=3), Batches(x, y, 32)

    def model():
        keras.utils.set_random_seed(5)
        return train.compile_classifier(_net("s", hidden=8), lr=1e-2, decay_steps=48)

    whole = model()
    reference = train.fit(whole, data, val, 6)
    backup, checkpoint = tmp_path / "run.backup", tmp_path / "checkpoints" / "s.weights.h5"
    with pytest.raises(_Stop):
        train.fit(model(), data, val, 6, checkpoint=checkpoint, backup=backup,
                  callbacks=[_StopAfter(4)])  # fmt: skip
    assert (backup / "best.weights.h5").exists()
    shutil.rmtree(checkpoint.parent, ignore_errors=True)  # left behind on the other machine
    resumed = model()
    result = train.fit(resumed, data, val, 6, checkpoint=checkpoint, backup=backup)
    assert result["best_epoch"] == reference["best_epoch"] and not backup.exists()
    for a, b in zip(resumed.get_weights(), whole.get_weights()):  # the best epoch's weights
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    again = model()
    again.optimizer.build(again.trainable_variables)  # the checkpoint saved the optimizer's too
    again.load_weights(checkpoint)  # the checkpoint holds them too
    for a, b in zip(again.get_weights(), whole.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.backend
@pytest.mark.filterwarnings("ignore:.*chance level")  # 4 epochs on noise
def test_a_teacher_stopped_mid_way_resumes_only_when_asked(tmp_path, monkeypatch):
    monkeypatch.setenv("KDLIB_CACHE_DIR", str(tmp_path))
    x, y = _data(n=32)
    batches = Batches(x, y, 8, shuffle=True, seed=0)

    def teacher(stop):
        return train.cached_classifier(
            "t", functools.partial(_net, "t"), batches, batches, epochs=4, seed=0, callbacks=[stop]
        )

    monkeypatch.setenv("KDLIB_RESUME", "0")
    with pytest.raises(_Stop):
        teacher(_StopAfter(2))
    assert list(tmp_path.glob("*.backup")) == []  # nothing kept: the next call starts again
    monkeypatch.setenv("KDLIB_RESUME", "1")
    with pytest.raises(_Stop):
        teacher(_StopAfter(2))
    assert len(list(tmp_path.glob("t-*.backup"))) == 1
    seen = _StopAfter(99)
    _, info = teacher(seen)
    assert seen.seen == [1, 2, 3] and len(info["history"]["loss"]) == 4
    assert list(tmp_path.glob("*.backup")) == [] and len(list(tmp_path.glob("t-*.keras"))) == 1


@pytest.mark.backend
def test_smoothed_labels_as_soft_targets_match_the_float64_reference():
    x, y = _data(16)
    s = _net("student")(x)
    eps, t = 0.3, 4.0
    d = distill.Distiller(_net("s2"), soft_targets="labels", smoothing=eps, temperature=t)
    got = d.compute_loss(x, y, s, training=True)
    target = np.where(np.eye(4)[y] == 1, 1 - eps, eps / 3)
    log_p = np.log(softmax(_np(s) / t))
    soft = (target * (np.log(target) - log_p)).sum(-1).mean() * t**2
    hard = -np.log(softmax(_np(s))[np.arange(16), y]).mean()
    np.testing.assert_allclose(_np(got), 0.1 * hard + 0.9 * soft, rtol=1e-4)
    with pytest.raises(ValueError, match="soft_targets='labels' only"):
        distill.Distiller(_net("a"), _net("b"), smoothing=0.1)
    with pytest.raises(ValueError, match=r"smoothing must be in \[0, 1\)"):
        distill.Distiller(_net("a"), soft_targets="labels", smoothing=1.0)


def test_patience_stops_a_run_that_no_longer_improves_and_keeps_its_best_epoch(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.uniform(size=(64, 6)).astype(np.float32), rng.integers(0, 4, 64)
    noise = rng.integers(0, 4, 64)  # labels the inputs cannot predict: validation soon stalls
    data = Batches(x, noise, 16, shuffle=True, seed=0)
    val = Batches(x[:32], y[:32], 32)
    for checkpoint in (None, tmp_path / "best.weights.h5"):
        keras.utils.set_random_seed(0)
        model = train.compile_classifier(_net("student", hidden=64))
        fitted = train.fit(model, data, val, 40, patience=2, checkpoint=checkpoint)
        val_acc = fitted["history"]["val_accuracy"]
        assert len(val_acc) < 40  # stopped early
        assert len(val_acc) - fitted["best_epoch"] == 2  # two epochs without improvement
        kept = train.evaluate(model, val)["accuracy"]
        assert kept == pytest.approx(fitted["best_val_accuracy"])
    with pytest.raises(ValueError, match="patience must be a positive integer"):
        train.fit(model, data, val, 3, patience=0)


@pytest.mark.backend
def test_fidelity_is_top1_agreement_and_the_kl_from_teacher_to_student():
    from scipy.special import rel_entr
    from scipy.special import softmax as sp_softmax

    s, t = rng.normal(0, 3, (40, 5)), rng.normal(0, 3, (40, 5))
    t[:10] = s[:10]  # some rows agree exactly
    found = train.fidelity(s, t)
    assert found["agreement"] == pytest.approx(np.mean(s.argmax(1) == t.argmax(1)))
    kl = rel_entr(sp_softmax(t, axis=1), sp_softmax(s, axis=1)).sum(1).mean()
    assert found["kl"] == pytest.approx(kl, rel=1e-9)
    assert train.fidelity(t, t) == {"agreement": 1.0, "kl": pytest.approx(0.0, abs=1e-12)}
    with pytest.raises(ValueError, match="alike"):
        train.fidelity(s, t[:, :4])
    model = _net("student")
    x = rng.uniform(size=(40, 6)).astype(np.float32)
    batches = Batches(x, rng.integers(0, 4, 40), 20)
    scored = train.evaluate(model, batches, teacher_logits=_np(model(x)))
    assert scored["agreement"] == 1.0 and scored["kl"] == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="rows for 40 samples"):
        train.evaluate(model, batches, teacher_logits=np.zeros((39, 4)))
