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


def soft_reference_exact(s, t, temperature, kind="kl", t2_scaling=True, digits=40):
    """The soft term and its gradient with respect to ``s``, ``T**e (p - q) / batch`` (e = 1
    with T**2 scaling, -1 without), from the definitions in ``digits``-digit decimal
    arithmetic. Float64 is not enough at high temperatures: the KL, of order 1/T**2, is a
    difference of log-probabilities of order 1, and at T = 1e4 with logits 0.01 apart float64
    keeps only four of its digits."""
    from decimal import Decimal, localcontext

    with localcontext() as ctx:
        ctx.prec = digits
        big_t = Decimal(float(temperature))

        def log_softmax_row(row):
            z = [Decimal(float(v)) / big_t for v in row]
            top = max(z)
            log_sum = sum((v - top).exp() for v in z).ln() + top
            return [v - log_sum for v in z]

        per_sample, gradient = [], []
        for s_row, t_row in zip(s, t):
            log_p, log_q = log_softmax_row(s_row), log_softmax_row(t_row)
            p, q = [v.exp() for v in log_p], [v.exp() for v in log_q]
            if kind == "kl":
                per_sample.append(sum(b * (lb - la) for a, b, la, lb in zip(p, q, log_p, log_q)))
            else:
                per_sample.append(-sum(b * la for b, la in zip(q, log_p)))
            gradient.append([a - b for a, b in zip(p, q)])
        n = len(per_sample)
        scale = big_t**2 if t2_scaling else Decimal(1)
        soft = float(scale * sum(per_sample) / n)
        factor = big_t if t2_scaling else 1 / big_t
        grad = np.array([[float(factor * g / n) for g in row] for row in gradient])
    return soft, grad


def tree_state(root) -> dict[str, str] | None:
    """SHA-1 of every file git tracks under ``root`` or would track (untracked, not ignored), by
    path; None outside a git checkout. Two states differ when a test wrote over a committed
    notebook, record or README, deleted one, or left a file behind in the tree."""
    import hashlib
    import subprocess
    from pathlib import Path

    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=root,
            capture_output=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    state = {}
    for name in filter(None, listed.decode().split("\0")):
        path = Path(root) / name
        state[name] = hashlib.sha1(path.read_bytes()).hexdigest() if path.is_file() else None
    return state
