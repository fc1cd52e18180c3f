"""Small file helpers shared by ``cache``, ``data``, ``train`` and ``results``: atomic writes,
a check that a folder can be written before any work is spent, and a check that a value can
be stored as JSON, made when it is handed over rather than when the file is written."""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one step.

    A crash or an exception leaves ``path`` as it was (never half-written) and removes the
    temporary file. The temporary name keeps ``path``'s suffix (Keras checks ``.keras``).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    except OSError as e:  # its message would name the temporary file, which never existed
        raise _refused(path, e) from e
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _refused(path: Path, e: OSError) -> OSError:
    """The error of a write to ``path`` that the system refused, naming ``path`` and the
    existing folder or file in its way (not a temporary name): a PermissionError for a folder
    that cannot be written, an OSError of ``e``'s kind otherwise."""
    return OSError(
        e.errno,
        f"cannot write {path}: {e.strerror or e} ({_in_the_way(path.parent)}; choose another "
        "folder or change its permissions)",
    )


def _in_the_way(folder: Path) -> str:
    """What stops a write into ``folder``: the nearest existing path at or above it, and
    whether it is a file or a folder that cannot be written."""
    blocker = next(p for p in (folder, *folder.parents) if p.exists())
    return f"{blocker} is {'not writable' if blocker.is_dir() else 'a file, not a folder'}"


def write_json(path: str | os.PathLike, obj) -> Path:
    """Write ``obj`` as indented, strict JSON (no NaN or infinity: a ValueError) to ``path``
    atomically; return the path."""
    text = json.dumps(obj, indent=2, sort_keys=False, allow_nan=False) + "\n"
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def check_writable(folder: str | os.PathLike, hint: str = "choose another folder") -> Path:
    """Create ``folder`` and check that a file can be written there; raise PermissionError with
    ``hint`` otherwise. Call it before long work whose result goes there."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(folder / ".write-test") as probe:
            probe.write_bytes(b"")
        (folder / ".write-test").unlink()
    except OSError as e:
        raise PermissionError(f"cannot write to {folder} ({_in_the_way(folder)}): {hint}") from e
    return folder


def jsonable(value, name: str):
    """``value`` as plain JSON data: NumPy scalars and arrays become numbers and lists, tuples
    lists, dict keys strings, and NaN or infinite floats None (strict JSON has no such numbers,
    and a reader should see "no value"). Anything else (a path, a set, a tensor, an object) is
    a TypeError naming where it is (``name``, then ``[key]``/``[index]``), so it is refused when
    it is logged, not when the record is written at the end of a run."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.generic) and not isinstance(value, np.object_):
        return jsonable(value.item(), name)
    if isinstance(value, np.ndarray) and value.dtype != object:
        return jsonable(value.tolist(), name)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): jsonable(v, f"{name}[{k!r}]") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v, f"{name}[{i}]") for i, v in enumerate(value)]
    raise TypeError(
        f"{name} is a {type(value).__module__}.{type(value).__name__}, which a JSON record "
        "cannot hold: store a number, a string, or a list or dict of them (e.g. float(x) for a "
        "tensor, str(path), sorted(a_set))"
    )
