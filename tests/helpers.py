"""NumPy float64 references and backend-agnostic gradients for the tests."""

import keras
import numpy as np


def log_softmax(z):
    z = np.asarray(z, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def softmax(z):
    return np.exp(log_softmax(z))


def kd_reference(labels, s, t, temperature, alpha, kind="kl", t2_scaling=True):
    """The KD loss in float64, written from the definitions."""
    n = len(labels)
    hard = -log_softmax(s)[np.arange(n), labels].mean()
    log_q = log_softmax(np.asarray(t, np.float64) / temperature)
    q = np.exp(log_q)
    log_p = log_softmax(np.asarray(s, np.float64) / temperature)
    per = (q * (log_q - log_p)).sum(-1) if kind == "kl" else -(q * log_p).sum(-1)
    soft = per.mean() * (temperature**2 if t2_scaling else 1.0)
    return hard, soft, (1 - alpha) * hard + alpha * soft


def grad(fn, x):
    """d fn(x) / dx for a scalar function of one float32 array, on the current backend."""
    backend = keras.backend.backend()
    x = np.asarray(x, dtype=np.float32)
    if backend == "tensorflow":
        import tensorflow as tf

        v = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(v)
            out = fn(v)
        return tape.gradient(out, v).numpy()
    if backend == "jax":
        import jax

        return np.asarray(jax.grad(fn)(x))
    if backend == "torch":
        import torch

        v = torch.tensor(x, requires_grad=True)
        fn(v).backward()
        return v.grad.numpy()
    raise NotImplementedError(backend)
