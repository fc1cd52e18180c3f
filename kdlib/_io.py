"""Small file helpers shared by ``cache``, ``data``, ``train`` and ``results``: atomic writes,
and a check that a folder can be written before any work is spent."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one step.

    A crash or an exception leaves ``path`` as it was (never half-written) and removes the
    temporary file. The temporary name keeps ``path``'s suffix (Keras checks ``.keras``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


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
        raise PermissionError(f"cannot write to {folder} ({e.strerror or e}): {hint}") from e
    return folder
