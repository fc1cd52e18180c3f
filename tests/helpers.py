"""NumPy float64 references for the tests, written from the definitions."""

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
