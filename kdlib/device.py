"""Device setup: seeds, GPU memory growth, the mixed-precision policy, and data parallelism.

Call :func:`setup` once at the top of a notebook. It prints one line saying what you run on.
:func:`parallel` trains on several devices with the backend's own data parallelism:
``tf.distribute.MirroredStrategy`` on TensorFlow, ``keras.distribution.DataParallel`` on JAX.
"""

from __future__ import annotations

import contextlib
import numbers
from collections.abc import Iterator

import keras

from kdlib import _quiet

PRECISIONS = ("auto", "off", "float16", "bfloat16")


def gpus() -> list[str]:
    """The GPUs the current Keras backend sees, each as its model and its name
    (``"NVIDIA H100 80GB HBM3 (cuda:0)"``), so a run's record says what it ran on; empty on a
    CPU-only machine."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        with _quiet.tensorflow_startup():  # the first device query logs "failed call to cuInit"
            found = tf.config.list_physical_devices("GPU")
            details = [tf.config.experimental.get_device_details(d) for d in found]
        return [f"{x.get('device_name', 'GPU')} ({d.name})" for d, x in zip(found, details)]
    if backend == "jax":
        import jax

        return [f"{d.device_kind} ({d})" for d in jax.devices() if d.platform == "gpu"]
    return []


def _memory_growth() -> None:
    """Let TensorFlow take GPU memory as it needs it rather than all at start."""
    if keras.backend.backend() != "tensorflow":
        return
    import tensorflow as tf

    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # already initialised: growth can no longer change, nothing lost
            pass


def policy_name(mixed_precision: str, has_gpu: bool) -> str:
    """The Keras dtype policy for a ``mixed_precision`` choice (``"auto"``: float16 on a GPU,
    float32 on a CPU, where float16 is slow)."""
    if mixed_precision not in PRECISIONS:
        raise ValueError(f"mixed_precision must be one of {PRECISIONS}, got {mixed_precision!r}")
    if mixed_precision == "auto":
        return "mixed_float16" if has_gpu else "float32"
    return {"off": "float32", "float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}[
        mixed_precision
    ]


def setup(seed: int = 0, mixed_precision: str = "auto", verbose: bool = True) -> dict:
    """Seed Python, NumPy and the backend; enable GPU memory growth; set the dtype policy.

    Returns ``{"backend", "devices", "policy", "seed"}`` and prints it as one line.
    Losses stay float32 under any policy (``kdlib.losses`` casts the logits). ``seed`` is a
    whole number from 0 to 2**32 - 1 (1.5 would be taken as 1 without a word).
    """
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed < 2**32:
        raise ValueError(f"seed must be a whole number from 0 to 2**32 - 1, got {seed!r}")
    keras.utils.set_random_seed(int(seed))
    found = gpus()
    _memory_growth()
    policy = policy_name(mixed_precision, bool(found))
    keras.config.set_dtype_policy(policy)
    info = {
        "backend": keras.backend.backend(),
        "devices": found or ["CPU"],
        "policy": policy,
        "seed": int(seed),
    }
    if verbose:
        print(
            f"kdlib: backend {info['backend']} (Keras {keras.__version__}) · devices "
            f"{', '.join(info['devices'])} · dtype policy {policy} · seed {seed}"
        )
    return info


def _short(name: str) -> str:
    """A device name in one spelling: ``"/gpu:0"``, ``"GPU:0"``, ``"/device:GPU:0"`` and
    ``"/job:localhost/replica:0/task:0/device:GPU:0"`` are all ``"gpu:0"``."""
    return name.lower().rsplit("device:", 1)[-1].lstrip("/")


def available() -> list[str]:
    """The devices the current backend can train on, as ``"cpu:0"``, ``"gpu:0"``, ..."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        with _quiet.tensorflow_startup():
            return [_short(d.name) for d in tf.config.list_logical_devices()]
    return [_short(d) for d in keras.distribution.list_devices()]


def check_devices(devices) -> list[str]:
    """``devices`` as a list of names (one name alone is a one-device list), each a device this
    machine has; a ValueError naming the missing ones and the devices there otherwise, so a
    run meant for a GPU never trains on the CPU without a word."""
    if isinstance(devices, str):
        devices = [devices]
    if not isinstance(devices, (list, tuple)) or not devices:
        raise ValueError(f"devices must be a non-empty list of device names, got {devices!r}")
    if not all(isinstance(d, str) for d in devices):
        raise ValueError(f"device names must be strings such as '/gpu:0', got {devices!r}")
    there = available()
    missing = [d for d in devices if _short(d) not in there]
    if missing:
        raise ValueError(
            f"no device {', '.join(map(repr, missing))} here; this machine has "
            f"{', '.join(there) or 'none'} ({keras.backend.backend()} backend)"
        )
    return list(devices)


@contextlib.contextmanager
def parallel(devices: list[str] | str | None = None) -> Iterator[object]:
    """Data parallelism for the current backend: build, compile and fit models inside
    ``with kdlib.device.parallel():``. Each batch is split across the devices and the gradients
    are averaged, so the training is the single-device training, faster.

    TensorFlow: a ``tf.distribute.MirroredStrategy`` over ``devices`` (names such as
    ``"/gpu:0"``), by default every GPU when there are several, else the default strategy.
    JAX: ``keras.distribution.DataParallel`` over ``devices`` (names such as ``"gpu:0"``; see
    ``keras.distribution.list_devices()``), by default every device of JAX's default platform;
    set as the global distribution inside the block and restored after it. Yields the strategy
    or the distribution. Batch sizes should be a multiple of the number of devices.

    ``devices`` may be one name (``"/cpu:0"``); a device this machine does not have is a
    ValueError naming the devices it has (:func:`check_devices`), before the block runs.
    """
    backend = keras.backend.backend()
    if devices is not None:
        devices = check_devices(devices)
    if backend == "tensorflow":
        import tensorflow as tf

        if devices is not None:
            strategy = tf.distribute.MirroredStrategy(devices)
        elif len(gpus()) > 1:
            strategy = tf.distribute.MirroredStrategy()
        else:
            strategy = tf.distribute.get_strategy()
        with strategy.scope():
            yield strategy
    elif backend == "jax":
        names = [_short(d) for d in devices] if devices else keras.distribution.list_devices()
        distribution = keras.distribution.DataParallel(devices=names)
        previous = keras.distribution.distribution()
        keras.distribution.set_distribution(distribution)
        try:
            yield distribution
        finally:
            keras.distribution.set_distribution(previous)
    else:
        raise RuntimeError(f"kdlib.device.parallel supports TensorFlow and JAX, not {backend!r}")
