"""Value checks on tensors that work eagerly and inside traced steps, shared by ``losses`` and
``quant``: a bad value is an error that says what is wrong, not a NaN found later."""

from __future__ import annotations

import keras
from keras import ops


def is_concrete(x) -> bool:
    """True when ``x`` holds values now (eager), False inside a traced graph or jit."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.executing_eagerly()
    if backend == "jax":
        import jax

        return not isinstance(x, jax.core.Tracer)
    return True


def assert_that(condition, message: str) -> None:
    """Raise ``ValueError(message)`` when the boolean tensor ``condition`` is False.

    Eager values are checked at once. In a traced TensorFlow graph the check becomes a
    ``tf.debugging.Assert`` that fails at run time with the same message. Where no value
    exists (JAX jit, TensorFlow XLA) the check cannot run; the bad values then come out as
    NaN, and ``kdlib.train.fit`` stops on a non-finite loss.
    """
    if is_concrete(condition):
        if not bool(ops.convert_to_numpy(condition)):
            raise ValueError(message)
    elif keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.debugging.Assert(condition, [message])
