"""Train-or-load of trained models, so a re-run does not retrain its teachers.

A model is stored as ``<name>-<key>.keras`` under ``$KDLIB_CACHE_DIR`` (default
``~/.cache/kdlib``), where ``key`` hashes the configuration (the builder and its arguments, see
:func:`describe`, and the training recipe) and a fingerprint of the training data: change any
of them and the model is trained anew. Files are written atomically (a crash never leaves half
a model), loaded with Keras's safe mode (no arbitrary code), and a file that cannot be read,
model or metadata, is reported and retrained, never fatal. The folder is checked for writing
before any training, so a trained model is never lost to a folder it cannot be saved in.
Beside each model, ``<name>-<key>.json`` keeps what its training returned (history, metrics).
With ``$KDLIB_RESUME=1`` (:func:`resuming`) the students of ``kdlib.train.distil`` are cached
as well, so a long run can stop and resume.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import warnings
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np

from kdlib import _io

FORMAT = 2  # bump to invalidate every cached model after an incompatible change
_LOADED: list[dict] = []  # what this process loaded, for the run records (see loaded())


def cache_dir() -> Path:
    """``$KDLIB_CACHE_DIR`` or ``~/.cache/kdlib``, as an absolute path."""
    return (
        Path(os.environ.get("KDLIB_CACHE_DIR") or Path.home() / ".cache" / "kdlib")
        .expanduser()
        .absolute()
    )


def resuming() -> bool:
    """``$KDLIB_RESUME=1``: ``kdlib.train.distil`` caches each trained student too, with what
    its training measured, so a long run that stopped (a crash, a 10-minute call on a lent GPU,
    the end of a session) resumes where it stopped: runs already done are loaded and say so
    ("loaded from the kdlib cache"), a teacher or student cut off mid-training goes on from its
    last finished epoch (``kdlib.train.fit``'s ``backup``), and the run's record says
    ``"resumed": true``. Off by
    default (``0``): a course run trains its students, and a changed notebook never meets an
    old result."""
    value = os.environ.get("KDLIB_RESUME", "0")
    if value not in ("0", "1"):
        raise ValueError(f"KDLIB_RESUME must be 0 or 1, got {value!r}")
    return value == "1"


def loaded() -> list[dict]:
    """Every model this process loaded from the cache, in order: ``{"name", "file",
    "train_seconds"}`` (how long it had taken to train, when known). A run's record lists those
    it loaded, so a time or a result that rests on earlier training says so."""
    return [dict(entry) for entry in _LOADED]


def safe_name(name: str) -> str:
    """``name`` as a file name that stays inside its folder: letters, digits, ``.``, ``_`` and
    ``-`` kept, anything else (``/``, ``..`` as a whole, spaces) replaced by ``_``."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"a name must be a non-empty string, got {name!r}")
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", name)
    return "_" + cleaned if cleaned.startswith(".") else cleaned


def fingerprint(*arrays: np.ndarray) -> str:
    """A short hash of arrays' shapes, dtypes and bytes: which data a model was trained on."""
    h = hashlib.blake2b(digest_size=8)
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.shape}{a.dtype}".encode())
        h.update(a.data)
    return h.hexdigest()


def describe(build: Callable) -> dict:
    """What a builder makes, for a cache key: its qualified name and, for a
    ``functools.partial``, its arguments. ``describe(partial(mlp, hidden=(800, 800)))`` is
    ``{"builder": "kdlib.models.mlp", "args": [], "kwargs": {"hidden": [800, 800]}}``."""
    if isinstance(build, functools.partial):
        inner = describe(build.func)
        return {**inner, "args": list(build.args), "kwargs": dict(sorted(build.keywords.items()))}
    module = getattr(build, "__module__", "?")
    if getattr(build, "__name__", "") == "<lambda>":
        raise ValueError(
            "a lambda cannot describe the model it builds: pass the builder with its arguments, "
            "e.g. functools.partial(kdlib.models.mlp, hidden=(1200, 1200))"
        )
    return {
        "builder": f"{module}.{getattr(build, '__qualname__', repr(build))}",
        "args": [],
        "kwargs": {},
    }


def key(name: str, config: dict, data: str) -> str:
    """The cache key of a model: name + configuration + data fingerprint."""
    blob = json.dumps(
        {"name": name, "config": config, "data": data, "format": FORMAT},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def entry(name: str, config: dict, data: str) -> Path:
    """The file :func:`train_or_load` keeps the model of ``(name, config, data)`` in:
    ``<name>-<key>.keras`` (``.json`` beside it; ``.backup``, its training's state while it
    runs with ``$KDLIB_RESUME=1``)."""
    return cache_dir() / f"{safe_name(name)}-{key(name, config, data)}.keras"


def _load(path: Path, meta: Path) -> tuple[keras.Model, dict] | None:
    try:
        info = json.loads(meta.read_text())
        if not isinstance(info, dict):
            raise ValueError("not a JSON object")
        return keras.saving.load_model(path, compile=False, safe_mode=True), info
    except Exception as e:  # any unreadable file: report, then retrain
        warnings.warn(
            f"kdlib.cache: cannot read {path} or {meta.name} ({type(e).__name__}: {e}); retraining",
            stacklevel=3,
        )
        return None


def _for_inference(model: keras.Model) -> keras.Model:
    """What the cache keeps: the model without its optimizer's state, which a loaded model
    (``compile=False``) never uses and which, for Adam, is two thirds of the file (notebook 01's
    ``full`` CNN: 16.6 MB with it). The same layers, names and weights, in a copy."""
    if getattr(model, "optimizer", None) is None:
        return model
    copy = type(model).from_config(model.get_config())
    copy.set_weights(model.get_weights())
    return copy


def train_or_load(
    name: str,
    build: Callable[[], keras.Model],
    train: Callable[[keras.Model], dict],
    *,
    config: dict,
    data: str,
) -> tuple[keras.Model, dict]:
    """Load the model cached for ``(name, config, data)``, or build, train and cache it.

    ``build()`` returns a new model; ``train(model)`` trains it and returns a dict of JSON data
    (for example ``kdlib.train.fit``'s result; NumPy numbers are converted), kept beside the
    model. ``data`` is the training data's :func:`fingerprint`. Returns ``(model, info)``, where
    ``info`` is that dict plus ``"cached"`` (True when loaded) and ``"path"``.

    The folder and the entry's paths are checked before ``build``. A model that trained but
    cannot be cached (a value of ``info`` JSON cannot hold, a model the cache could not load
    again in safe mode, such as one with a ``Lambda`` layer) is saved beside the entry and the
    RuntimeError names the file, so its training is not lost.
    """
    folder = cache_dir()
    path = entry(name, config, data)
    meta = path.with_suffix(".json")
    if path.exists() and meta.exists():
        loaded = _load(path, meta)
        if loaded is not None:
            model, info = loaded
            _LOADED.append({"name": name, "file": path.name, "train_seconds": info.get("seconds")})
            print(f"{name}: loaded from the kdlib cache ({path.name})")
            return model, {**info, "cached": True, "path": str(path)}
    _check_target(folder, path, meta)
    model = build()
    info = train(model) or {}
    try:
        _store(model, info, path, meta, name)
    except Exception as e:
        raise RuntimeError(
            f"{name}: trained, but it cannot be cached in {path} ({type(e).__name__}: {e}); "
            f"{_save_elsewhere(model, path)}"
        ) from e
    return model, {**_io.jsonable(info, name), "cached": False, "path": str(path)}


def _check_target(folder: Path, path: Path, meta: Path) -> None:
    """Before any training: the cache folder can be written, and the entry's two paths are free
    for files (a folder there would fail the save once the training is done)."""
    _io.check_writable(folder, "set KDLIB_CACHE_DIR to a writable folder")
    for target in (path, meta):
        if target.exists() and not target.is_file():
            raise IsADirectoryError(
                f"the cache entry {target} is a folder, not a file: remove it (or set "
                "KDLIB_CACHE_DIR to another folder) before training"
            )


def _store(model: keras.Model, info: dict, path: Path, meta: Path, name: str) -> None:
    """Write the entry: ``info`` as JSON (NumPy values as numbers; anything else a TypeError
    naming it), and the model, kept only if it loads back the way :func:`train_or_load` loads
    it (safe mode): a model the cache could not read again would be trained anew every time."""
    plain = _io.jsonable(info, f"{name}: what train returned")
    with _io.atomic_path(path) as tmp:
        _for_inference(model).save(tmp)
        keras.saving.load_model(tmp, compile=False, safe_mode=True)
    _io.write_json(meta, plain)


def _save_elsewhere(model: keras.Model, path: Path) -> str:
    """Save a trained model that cannot be cached beside its entry, so its training is not
    lost, and say where: the whole model (``<entry>.unsaved.keras``), else its weights."""
    whole = path.with_name(f"{path.stem}.unsaved.keras")
    try:
        model.save(whole)
        return (
            f"the trained model is saved in {whole} (keras.saving.load_model(path, "
            "safe_mode=False) reads it, if you trust it)"
        )
    except Exception:
        weights = path.with_name(f"{path.stem}.unsaved.weights.h5")
        try:
            model.save_weights(weights)
        except Exception as e:
            return f"and saving it elsewhere failed too ({type(e).__name__}: {e})"
        return f"its trained weights are saved in {weights} (model.load_weights reads them)"
