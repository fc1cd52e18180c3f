"""Run records and result tables.

A notebook opens a :class:`Run`, logs what it measured, and saves one JSON record:
notebook, profile, parameters, metrics, seed, dataset, library versions, wall time and the git
commit when known. Records go to ``$KDLIB_RESULTS_DIR`` or, by default, the repository's
``results/`` folder; tests and ``make run`` point the variable elsewhere, so the committed
``cpu`` records are only rewritten on purpose (``make notebooks``).

``python -m kdlib.results DIR`` prints a summary table of the records in ``DIR``.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from kdlib import _io

REPO = Path(__file__).resolve().parent.parent


def results_dir() -> Path:
    """``$KDLIB_RESULTS_DIR``, else ``results/`` of the repository kdlib was installed from
    (editable install), else ``./results``."""
    env = os.environ.get("KDLIB_RESULTS_DIR")
    if env:
        return Path(env).expanduser()
    if (REPO / "pyproject.toml").exists() and (REPO / "notebooks").is_dir():
        return REPO / "results"
    return Path.cwd() / "results"


def git_commit() -> str | None:
    """The repository's current commit, or None outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, timeout=5, check=True,
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def versions() -> dict:
    """Versions of Python and the libraries a result depends on."""
    import keras
    import numpy

    import kdlib

    found = {
        "python": platform.python_version(),
        "kdlib": kdlib.__version__,
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
        "numpy": numpy.__version__,
    }
    if "tensorflow" in sys.modules:
        found["tensorflow"] = sys.modules["tensorflow"].__version__
    if "jax" in sys.modules:
        found["jax"] = sys.modules["jax"].__version__
    return found


def _plain(value):
    """JSON-friendly copies of NumPy scalars/arrays and nested containers."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


class Run:
    """One notebook run: create it at the start, ``log`` metrics, ``save`` at the end."""

    def __init__(self, notebook: str, config: dict, *, dataset: str | None = None, requested: str | None = None):
        self.notebook = notebook
        self.config = dict(config)
        self.dataset = dataset
        self.requested = requested or dataset
        self.metrics: dict = {}
        self.started = _dt.datetime.now(_dt.timezone.utc)
        self._t0 = time.perf_counter()

    def log(self, **metrics) -> None:
        """Record metrics (numbers, lists, nested dicts); later values replace earlier ones."""
        self.metrics.update(_plain(metrics))

    def record(self) -> dict:
        """The record as a dict (what :meth:`save` writes)."""
        return {
            "notebook": self.notebook,
            "profile": getattr(self.config, "profile", self.config.get("profile")),
            "dataset": self.dataset,
            "requested_dataset": self.requested,
            "seed": self.config.get("seed"),
            "params": _plain(self.config),
            "metrics": self.metrics,
            "versions": versions(),
            "git_commit": git_commit(),
            "started": self.started.isoformat(timespec="seconds"),
            "wall_time_s": round(time.perf_counter() - self._t0, 1),
        }

    def save(self, directory: str | os.PathLike | None = None) -> Path:
        """Write the record atomically to ``<directory>/<notebook>.json``; return its path."""
        path = Path(directory or results_dir()) / f"{self.notebook}.json"
        _io.write_json(path, self.record())
        print(f"record saved: {path}")
        return path


def load(directory: str | os.PathLike | None = None) -> list[dict]:
    """All records in ``directory`` (default :func:`results_dir`), sorted by notebook."""
    folder = Path(directory or results_dir())
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


def _fmt(value, digits: int) -> str:
    """Floats below 1 (accuracies) with ``digits`` decimals, larger ones with one, whole
    numbers without; anything else as text."""
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if value.is_integer() and abs(value) >= 1:
            return str(int(value))
        return f"{value:.{digits}f}" if abs(value) < 1 else f"{value:.1f}"
    return "" if value is None else str(value)


class Table:
    """A small table that renders as Markdown in Jupyter and as aligned text when printed."""

    def __init__(self, rows: Sequence[dict], columns: Sequence[str] | None = None, digits: int = 4):
        self.rows = list(rows)
        self.columns = list(columns or dict.fromkeys(k for r in self.rows for k in r))
        self.digits = digits

    def _cells(self) -> list[list[str]]:
        return [[_fmt(r.get(c), self.digits) for c in self.columns] for r in self.rows]

    def _repr_markdown_(self) -> str:
        head = "| " + " | ".join(self.columns) + " |"
        rule = "| " + " | ".join("---" for _ in self.columns) + " |"
        return "\n".join([head, rule] + ["| " + " | ".join(c) + " |" for c in self._cells()])

    def __str__(self) -> str:
        cells = self._cells()
        widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(self.columns)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(self.columns, widths))]
        lines.append("  ".join("-" * w for w in widths))
        lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in cells]
        return "\n".join(lines)

    __repr__ = __str__


def mean_std(values: Sequence[float], digits: int = 4) -> str:
    """``"mean ± std"`` of repeated measurements (e.g. one accuracy per seed), the form every
    results table of the course uses; a single value is shown alone, since it has no spread."""
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        raise ValueError("mean_std needs at least one value")
    if values.size == 1:
        return f"{values[0]:.{digits}f}"
    return f"{values.mean():.{digits}f} ± {values.std():.{digits}f}"


def difference(a: Sequence[float], b: Sequence[float]) -> dict:
    """Mean of ``a`` minus mean of ``b`` (e.g. accuracies over seeds), the sum of their standard
    deviations, and whether the difference exceeds that sum: a cautious test of whether a
    difference is larger than its error bars."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    diff, bars = a.mean() - b.mean(), a.std() + b.std()
    verdict = "n/a (a single run has no error bar)" if min(len(a), len(b)) < 2 else ("yes" if abs(diff) > bars else "no")
    return {"difference": f"{diff:+.4f}", "std a + std b": f"{bars:.4f}", "larger than the error bars": verdict}


def summary(records: Iterable[dict]) -> Table:
    """One row per record: notebook, profile, dataset, wall time and its headline metrics
    (the record's ``metrics["headline"]`` dict, if the notebook logged one)."""
    rows = []
    for r in records:
        row = {
            "notebook": r["notebook"],
            "profile": r["profile"],
            "dataset": r["dataset"],
            "minutes": f"{r['wall_time_s'] / 60:.1f}",
        }
        row.update(r.get("metrics", {}).get("headline", {}))
        rows.append(row)
    return Table(rows)


if __name__ == "__main__":
    print(summary(load(sys.argv[1] if len(sys.argv) > 1 else None)))
