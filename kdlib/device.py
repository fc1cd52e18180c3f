"""Device setup: seeds, GPU memory growth, the mixed-precision policy and multi-GPU strategy.

Call :func:`setup` once at the top of a notebook. It prints one line saying what you run on.
"""

from __future__ import annotations

import keras

PRECISIONS = ("auto", "off", "float16", "bfloat16")


def gpus() -> list[str]:
    """Names of the GPUs the current Keras backend sees (empty on a CPU-only machine)."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return [d.name for d in tf.config.list_physical_devices("GPU")]
    if backend == "jax":
        import jax

        return [str(d) for d in jax.devices() if d.platform == "gpu"]
    if backend == "torch":
        import torch

        return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
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
    return {"off": "float32", "float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}[mixed_precision]


def setup(seed: int = 0, mixed_precision: str = "auto", verbose: bool = True) -> dict:
    """Seed Python, NumPy and the backend; enable GPU memory growth; set the dtype policy.

    Returns ``{"backend", "devices", "policy", "seed"}`` and prints it as one line.
    Losses stay float32 under any policy (``kdlib.losses`` casts the logits).
    """
    keras.utils.set_random_seed(int(seed))
    _memory_growth()
    found = gpus()
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


def strategy(devices: list[str] | None = None):
    """A ``tf.distribute`` strategy: ``MirroredStrategy`` over ``devices`` if given, or over all
    GPUs when there are several; otherwise the default (single-device) strategy.

    Build and compile models inside ``with strategy().scope():``. TensorFlow backend only.
    """
    if keras.backend.backend() != "tensorflow":
        raise RuntimeError("tf.distribute strategies need the TensorFlow backend")
    import tensorflow as tf

    if devices is not None:
        return tf.distribute.MirroredStrategy(devices)
    if len(tf.config.list_physical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()
