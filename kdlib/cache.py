"""Train-or-load of trained models, so a re-run does not retrain its teachers.

A model is stored as ``<name>-<key>.keras`` under ``$KDLIB_CACHE_DIR`` (default
``~/.cache/kdlib``), where ``key`` hashes the builder's name, its configuration and a
fingerprint of the training data: change any of them and the model is trained anew. Files are
written atomically (a crash never leaves half a model), loaded with Keras's safe mode (no
arbitrary code), and a file that cannot be read is reported and retrained, never fatal.
Beside each model, ``<name>-<key>.json`` keeps what its training returned (history, metrics).
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np

from kdlib import _io

FORMAT = 1  # bump to invalidate every cached model after an incompatible change


def cache_dir() -> Path:
    """``$KDLIB_CACHE_DIR`` or ``~/.cache/kdlib``."""
    return Path(os.environ.get("KDLIB_CACHE_DIR", Path.home() / ".cache" / "kdlib")).expanduser()


def fingerprint(*arrays: np.ndarray) -> str:
    """A short hash of arrays' shapes, dtypes and bytes: which data a model was trained on."""
    h = hashlib.blake2b(digest_size=8)
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.shape}{a.dtype}".encode())
        h.update(a.data)
    return h.hexdigest()


def key(name: str, config: dict, data: str) -> str:
    """The cache key of a model: builder name + configuration + data fingerprint."""
    blob = json.dumps({"name": name, "config": config, "data": data, "format": FORMAT}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _load(path: Path) -> keras.Model | None:
    try:
        return keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as e:  # any unreadable file: report, then retrain
        warnings.warn(f"kdlib.cache: cannot read {path} ({type(e).__name__}: {e}); retraining", stacklevel=3)
        return None


def train_or_load(
    name: str,
    build: Callable[[], keras.Model],
    train: Callable[[keras.Model], dict],
    *,
    config: dict,
    data: str,
    verbose: bool = True,
) -> tuple[keras.Model, dict]:
    """Load the model cached for ``(name, config, data)``, or build, train and cache it.

    ``build()`` returns a new model; ``train(model)`` trains it and returns a JSON-serialisable
    dict (for example ``kdlib.train.fit``'s result), kept beside the model. ``data`` is the
    training data's :func:`fingerprint`. Returns ``(model, info)``, where ``info`` is that dict
    plus ``"cached"`` (True when loaded) and ``"path"``.
    """
    path = cache_dir() / f"{name}-{key(name, config, data)}.keras"
    meta = path.with_suffix(".json")
    if path.exists() and meta.exists():
        model = _load(path)
        if model is not None:
            info = json.loads(meta.read_text())
            if verbose:
                print(f"{name}: loaded from cache {path}")
            return model, {**info, "cached": True, "path": str(path)}
    model = build()
    info = train(model) or {}
    with _io.atomic_path(path) as tmp:
        model.save(tmp)
    _io.write_json(meta, info)
    return model, {**info, "cached": False, "path": str(path)}
