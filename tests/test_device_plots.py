"""kdlib.device and kdlib.plots."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from matplotlib.figure import Figure

from kdlib import device, plots


@pytest.mark.backend
def test_setup_seeds_sets_the_policy_and_prints_one_line(capsys):
    try:
        info = device.setup(seed=3, mixed_precision="bfloat16")
        assert (
            keras.config.dtype_policy().name == "mixed_bfloat16"
            and info["policy"] == "mixed_bfloat16"
        )
        a = keras.random.uniform((3,), seed=None)
        device.setup(seed=3, mixed_precision="off")
        b = keras.random.uniform((3,), seed=None)
        assert keras.config.dtype_policy().name == "float32"
    finally:
        keras.config.set_dtype_policy("float32")
    lines = capsys.readouterr().out.strip().splitlines()
    assert (
        len(lines) == 2
        and f"backend {keras.backend.backend()}" in lines[0]
        and "seed 3" in lines[0]
    )
    np.testing.assert_allclose(np.asarray(a, dtype=np.float32), np.asarray(b, dtype=np.float32))
    assert info["backend"] == keras.backend.backend() and info["devices"]


class _FakeDevice:
    def __init__(self, platform, kind, name):
        self.platform, self.device_kind, self.name = platform, kind, name

    def __str__(self):
        return self.name


def test_gpus_name_the_gpu_model_so_a_record_says_what_it_ran_on(monkeypatch):
    """This machine has no GPU: the backends' device lists are faked."""
    jax = pytest.importorskip("jax")
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    monkeypatch.setattr(
        jax,
        "devices",
        lambda: [
            _FakeDevice("gpu", "NVIDIA H100 80GB HBM3", "cuda:0"),
            _FakeDevice("cpu", "cpu", "cpu:0"),
        ],
    )
    assert device.gpus() == ["NVIDIA H100 80GB HBM3 (cuda:0)"]
    tf = pytest.importorskip("tensorflow")
    monkeypatch.setattr(keras.backend, "backend", lambda: "tensorflow")
    gpu = _FakeDevice("GPU", "", "/physical_device:GPU:0")
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind: [gpu])
    monkeypatch.setattr(
        tf.config.experimental, "get_device_details", lambda d: {"device_name": "NVIDIA H100"}
    )
    assert device.gpus() == ["NVIDIA H100 (/physical_device:GPU:0)"]


def test_auto_precision_is_float16_on_a_gpu_only():
    assert device.policy_name("auto", has_gpu=True) == "mixed_float16"
    assert device.policy_name("auto", has_gpu=False) == "float32"
    assert device.policy_name("float16", has_gpu=False) == "mixed_float16"
    with pytest.raises(ValueError, match="mixed_precision must be one of"):
        device.policy_name("fp8", has_gpu=True)


@pytest.mark.backend
def test_parallel_on_one_device_is_the_default_strategy_or_a_one_device_mesh():
    with device.parallel() as p:
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            assert p is tf.distribute.get_strategy()
        else:
            assert keras.distribution.distribution() is p
    if keras.backend.backend() == "jax":
        assert keras.distribution.distribution() is None  # restored after the block


def test_soft_target_plot_has_one_bar_group_per_temperature():
    fig = plots.soft_targets([5.0, 2.0, -1.0, 0.5], [1, 4, 20], class_names=list("abcd"))
    ax = fig.axes[0]
    assert isinstance(fig, Figure) and len(ax.containers) == 3
    heights = [[bar.get_height() for bar in c] for c in ax.containers]
    np.testing.assert_allclose([sum(h) for h in heights], 1.0, rtol=1e-6)
    assert max(heights[0]) > max(heights[1]) > max(heights[2])  # higher T, softer


def test_curves_and_sweep_plots():
    fig = plots.curves({"a": {"val_accuracy": [0.1, 0.5]}, "b": {"val_accuracy": [0.2, 0.4, 0.6]}})
    assert [len(line.get_xdata()) for line in fig.axes[0].lines] == [2, 3]
    fig = plots.curves(
        {"a": [{"val_accuracy": [0.1, 0.5]}, {"val_accuracy": [0.3, 0.7]}]}
    )  # two seeds
    np.testing.assert_allclose(fig.axes[0].lines[0].get_ydata(), [0.2, 0.6])
    assert len(fig.axes[0].collections) == 1  # the band between the seeds
    fig = plots.curves(  # a seed that stopped early counts at the epochs it ran
        {"a": [{"val_accuracy": [0.1, 0.5, 0.9]}, {"val_accuracy": [0.3]}]}
    )
    np.testing.assert_allclose(fig.axes[0].lines[0].get_ydata(), [0.2, 0.5, 0.9])
    assert all(float(t).is_integer() for t in fig.axes[0].get_xticks())  # whole epochs
    fig = plots.sweep(
        {"KD": {2: [0.8, 0.82], 4: [0.85, 0.87]}}, "T", baselines={"alone": [0.7, 0.72]}
    )
    ax = fig.axes[0]
    assert len(ax.containers) == 1 and ax.get_xlabel() == "T"
    np.testing.assert_allclose(
        np.asarray(ax.containers[0].lines[0].get_ydata(), dtype=float), [0.81, 0.86]
    )
    fig = plots.accuracy_vs_size({"teacher": (3.3, [0.9, 0.91]), "q2": (0.2, [0.8])})
    assert fig.axes[0].get_xscale() == "log" and len(fig.axes[0].texts) == 2


def test_importing_kdlib_leaves_no_native_notice_for_a_later_float16_value():
    pytest.importorskip("tensorflow")
    probe = (
        "import kdlib, keras, numpy as np\nkeras.ops.cast(np.ones(3), 'float16')\nprint('done')\n"
    )
    env = {**os.environ, "KERAS_BACKEND": "tensorflow"}
    run = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=300
    )
    assert run.returncode == 0 and run.stdout.strip() == "done", run.stderr
    assert "oneDNN" not in run.stderr and "DT_HALF" not in run.stderr, run.stderr
