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
