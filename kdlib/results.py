"""Run records and result tables.

A notebook opens a :class:`Run`, logs what it measured, and saves one JSON record:
notebook, profile, parameters, metrics, seed, dataset, the machine (processor, accelerators,
backend, dtype policy), library versions, wall time, the git commit, and the models it loaded
from ``kdlib.cache`` with the time their training had taken. Records go to
``$KDLIB_RESULTS_DIR`` or, by default, ``runs/<profile>/`` (see :func:`results_dir`); only
``make notebooks`` writes the committed records in ``results/``.

``python -m kdlib.results [DIR]`` prints one short table per record in ``DIR`` (default: the
committed ``cpu`` records in ``results/``). :func:`compare` is the course's test of whether a
difference between two sets of runs is beyond the noise between seeds.
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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from scipy import stats

from kdlib import _io, cache
from kdlib.cache import safe_name

REPO = Path(__file__).resolve().parent.parent
PROFILE_FOLDERS = {"cpu": "results", "full": "results/full"}  # the committed records, by profile


def _in_checkout() -> bool:
    return (REPO / "pyproject.toml").exists() and (REPO / "notebooks").is_dir()


def results_dir(profile: str | None = None) -> Path:
    """Where a run's record goes, as an absolute path: ``$KDLIB_RESULTS_DIR`` if set, else
    ``runs/<profile>/`` of the repository kdlib was installed from (editable install), else
    ``./runs/<profile>/``. The committed records (``results/``, ``results/full/``) are written
    only by the command that makes the committed runs, which sets the variable
    (``make notebooks``; see ``kdlib.runner``): a run from JupyterLab, papermill or ``make run``
    never replaces them."""
    env = os.environ.get("KDLIB_RESULTS_DIR")
    if env:
        return Path(env).expanduser().absolute()
    base = REPO if _in_checkout() else Path.cwd()
    return (base / "runs" / (profile or "records")).absolute()


def committed_dir(profile: str) -> Path:
    """The folder of the committed records of ``profile`` (``cpu``: ``results/``, ``full``:
    ``results/full/``)."""
    if profile not in PROFILE_FOLDERS:
        raise ValueError(
            f"only the {' and '.join(PROFILE_FOLDERS)} runs are committed, not {profile!r}"
        )
    return REPO / PROFILE_FOLDERS[profile]


def git_commit() -> dict:
    """The repository's current commit and whether the working tree differs from it.

    ``$KDLIB_SOURCE_COMMIT``, where set, names the commit instead, and ``dirty`` is
    ``$KDLIB_SOURCE_DIRTY`` (``1`` or ``0``), else None (unknown). ``make device-full`` sets the
    commit from the caller's clean checkout, because the copy a lent GPU machine gets need not
    carry that checkout's ``.git``, or may carry an older one whose HEAD and dirty state are not
    the code's; the runner sets both (:func:`source_env`). Outside a checkout without
    them: both None."""
    if os.environ.get("KDLIB_SOURCE_COMMIT"):
        dirty = os.environ.get("KDLIB_SOURCE_DIRTY")
        return {
            "commit": os.environ["KDLIB_SOURCE_COMMIT"],
            "dirty": None if dirty is None else dirty == "1",
        }

    def git(*args) -> str:
        return subprocess.run(
            ["git", "-c", f"safe.directory={REPO}", "-C", str(REPO), *args],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()

    try:
        return {
            "commit": git("rev-parse", "--short", "HEAD") or None,
            "dirty": bool(git("status", "--porcelain")),
        }
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def source_env() -> dict:
    """The environment that makes :func:`git_commit` in a notebook's kernel report the tree as it
    is now. The runner takes it once, before its first notebook: each notebook it commits
    rewrites tracked files (the executed notebook, its record), which would otherwise make the
    next notebook's record say its code was not the commit's."""
    found = git_commit()
    env = {"KDLIB_SOURCE_COMMIT": found["commit"]} if found["commit"] else {}
    if found["commit"] and found["dirty"] is not None:
        env["KDLIB_SOURCE_DIRTY"] = "1" if found["dirty"] else "0"
    return env


def machine() -> dict:
    """What the run ran on: processor, cores, accelerators, Keras backend and dtype policy."""
    import keras

    from kdlib import device

    return {
        "platform": platform.platform(terse=True),
        "processor": platform.processor() or platform.machine(),
        "cpu_cores": os.cpu_count(),
        "accelerators": device.gpus(),
        "backend": keras.backend.backend(),
        "dtype_policy": keras.config.dtype_policy().name,
    }


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


def _plain(value, name: str = "value"):
    """JSON-friendly copies of NumPy scalars/arrays and nested containers, NaN and infinities
    as None; a value JSON cannot hold is a TypeError naming it (:func:`kdlib._io.jsonable`)."""
    return _io.jsonable(value, name)


def val_curves(histories: Mapping[str, Sequence[Mapping]]) -> dict:
    """What a record keeps of training histories (``{label: [history per seed]}``): each run's
    validation accuracy per epoch, enough for ``kdlib.plots.curves`` to draw them again; the
    losses are left out, which keeps records small."""
    return {
        str(label): [{"val_accuracy": list(h["val_accuracy"])} for h in runs]
        for label, runs in histories.items()
    }


class Run:
    """One notebook run: create it at the start, ``log`` metrics, ``save`` at the end. The
    folder :meth:`save` writes to by default (:func:`results_dir`) is checked for writing when
    the run is created, before the notebook's work."""

    def __init__(
        self,
        notebook: str,
        config: dict,
        *,
        dataset: str | None = None,
        requested: str | None = None,
    ):
        self.notebook = notebook
        self.config = dict(config)
        # the record's folder is checked now, not at save(), after the run's work
        _io.check_writable(
            results_dir(self.config.get("profile")), "set KDLIB_RESULTS_DIR to a writable folder"
        )
        self.dataset = dataset
        self.requested = requested or dataset
        self.metrics: dict = {}
        self.started = _dt.datetime.now(_dt.timezone.utc)
        self._t0 = time.perf_counter()
        self._cache_mark = len(cache.loaded())
        # the code this run executes: edits made in the checkout while it runs are not its
        self._commit = git_commit()
        # why committed runs were made from a dirty tree (kdlib.runner --allow-dirty REASON)
        self._dirty_reason = os.environ.get("KDLIB_DIRTY_REASON") or None

    def log(self, **metrics) -> None:
        """Record metrics (numbers, strings, lists, nested dicts; NumPy values become plain
        numbers); later values replace earlier ones. A value a JSON record cannot hold (a path,
        a set, a tensor) is a TypeError naming its key, now rather than at :meth:`save`.
        ``comparisons`` and ``findings`` are :meth:`compare`'s and :meth:`findings`'."""
        reserved = sorted({"comparisons", "findings"} & set(metrics))
        if reserved:
            raise ValueError(
                f"{', '.join(reserved)} are recorded by Run.compare and Run.findings, not log"
            )
        self.metrics.update({k: _plain(v, f"Run.log({k}=...)") for k, v in metrics.items()})

    def compare(self, family: str, comparisons: Comparisons, *, paired: bool = True) -> Family:
        """:func:`compare_all` over one family of comparisons, recorded in the run's
        ``metrics["comparisons"]`` by label (the family, both sides, the difference, its
        interval, ``p``, ``p_holm``, the verdict). A comparison gets one verdict in a run: a
        label recorded before, in this family or another, is an error. Returns the
        :class:`Family`, whose ``table`` shows the same verdicts."""
        taken = self.metrics.setdefault("comparisons", {})
        again = [label for label, _, _ in comparisons if label in taken]
        if again:
            raise ValueError(
                f"{', '.join(map(repr, again))} already has a verdict in this run (family "
                f"{taken[again[0]]['family']!r}): one comparison, one verdict"
            )
        found = Family(family, comparisons, paired=paired)
        for label in found:
            taken[label] = _plain(found.entry(label))
        return found

    def findings(self, effect: str, contrast: str) -> None:
        """Name the run's headline comparison (``effect``: the paper's effect, which the
        experiment is designed to show) and its ``contrast`` (the condition where it should
        vanish), both labels of comparisons :meth:`compare` recorded. The README's index and
        ``docs/results.md`` read them."""
        recorded = self.metrics.get("comparisons", {})
        missing = [label for label in (effect, contrast) if label not in recorded]
        if missing:
            raise ValueError(
                f"findings name comparisons this run has not recorded: {', '.join(missing)}; "
                f"recorded: {', '.join(recorded) or 'none'}"
            )
        self.metrics["findings"] = {"effect": effect, "contrast": contrast}

    def record(self) -> dict:
        """The record as a dict (what :meth:`save` writes)."""
        commit = self._commit
        return {
            "notebook": self.notebook,
            "profile": self.config.get("profile"),
            "dataset": self.dataset,
            "requested_dataset": self.requested,
            "seed": self.config.get("seed"),
            "params": _plain(self.config),
            "metrics": self.metrics,
            "machine": machine(),
            "versions": versions(),
            "git_commit": commit["commit"],
            "git_dirty": commit["dirty"],
            "git_dirty_reason": self._dirty_reason,
            "started": self.started.isoformat(timespec="seconds"),
            "wall_time_s": round(time.perf_counter() - self._t0, 1),
            "resumed": cache.resuming(),  # KDLIB_RESUME=1: students done before were loaded
            "from_cache": cache.loaded()[self._cache_mark :],  # trained before this run
        }

    def save(self, directory: str | os.PathLike | None = None) -> Path:
        """Write the record atomically to ``<directory>/<notebook>.json`` (default
        :func:`results_dir`); return its path."""
        folder = Path(directory) if directory else results_dir(self.config.get("profile"))
        path = folder / f"{safe_name(self.notebook)}.json"
        _io.write_json(path, self.record())
        shown = path.relative_to(REPO) if path.is_relative_to(REPO) else path.name
        print(f"record saved: {shown}")
        return path


def load(directory: str | os.PathLike | None = None) -> list[dict]:
    """All records in ``directory`` (default :func:`results_dir`), sorted by notebook. A file
    that is not a readable record is an error that names it, and so is a ``directory`` that is
    not a folder (a mistyped path would otherwise read as "no records")."""
    folder = Path(directory or results_dir())
    if not folder.is_dir():
        what = "a file, not a folder" if folder.exists() else "no such folder"
        raise FileNotFoundError(f"no records in {folder}: {what}")
    records = []
    for path in sorted(folder.glob("*.json")):
        try:
            record = json.loads(path.read_text())
            if not isinstance(record, dict) or "notebook" not in record:
                raise ValueError("no 'notebook' field")
        except (OSError, ValueError) as e:
            raise ValueError(
                f"{path}: not a readable kdlib record ({e}); re-run its notebook or delete it"
            ) from e
        records.append(record)
    return records


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

    def __init__(
        self,
        rows: Sequence[dict],
        columns: Sequence[str] | None = None,
        digits: int = 4,
        caption: str | None = None,
    ):
        self.rows = list(rows)
        self.columns = list(columns or dict.fromkeys(k for r in self.rows for k in r))
        self.digits = digits
        self.caption = caption  # a line above the table: what its numbers are, on which data

    def _cells(self) -> list[list[str]]:
        return [[_fmt(r.get(c), self.digits) for c in self.columns] for r in self.rows]

    def markdown(self) -> str:
        """The table in Markdown (what Jupyter shows, and what ``kdlib.pages`` writes); a ``|``
        inside a cell is escaped, so it cannot split the cell."""

        def row(cells) -> str:
            return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

        lines = [row(self.columns), row("---" for _ in self.columns)]
        lines += [row(c) for c in self._cells()]
        return "\n".join(([f"**{self.caption}**", ""] if self.caption else []) + lines)

    _repr_markdown_ = markdown

    def __str__(self) -> str:
        cells = self._cells()
        widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(self.columns)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(self.columns, widths))]
        lines.append("  ".join("-" * w for w in widths))
        lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in cells]
        return "\n".join(([self.caption] if self.caption else []) + lines)

    __repr__ = __str__


def mean_std(values: Sequence[float], digits: int = 4) -> str:
    """``"mean ± std"`` of repeated measurements (e.g. one accuracy per seed), the form every
    results table of the course uses. The spread is the sample standard deviation (``ddof=1``):
    with three seeds the population formula would understate it by a fifth. A single value is
    shown alone, since it has no spread. NaN or infinite values are an error, as in
    :func:`compare`: a table would otherwise print ``nan ± nan`` for a run that failed."""
    values = np.asarray(values, dtype=float)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"mean_std needs a flat list of at least one value, got {values.tolist()}")
    if not np.all(np.isfinite(values)):
        raise ValueError(f"mean_std needs finite values, got {values.tolist()}")
    if values.size == 1:
        return f"{values[0]:.{digits}f}"
    return f"{values.mean():.{digits}f} ± {values.std(ddof=1):.{digits}f}"


def p_text(p: float) -> str:
    """A p-value as the course prints it: ``p = 0.045``, or ``p < 0.001`` (never ``p = 0.000``)."""
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


@dataclass(frozen=True)
class Comparison:
    """Mean of ``a`` minus mean of ``b``, its confidence interval and the test's p-value; for
    one of a family of comparisons (:func:`compare_all`), also its Holm-adjusted p-value."""

    difference: float
    low: float
    high: float
    p: float | None
    test: str
    level: float = 0.05
    p_holm: float | None = None  # set by compare_all when the family has 2 or more tests
    family: int = 1

    @property
    def beyond_noise(self) -> bool | None:
        """True when the test rejects "no difference" at ``level`` (by the Holm-adjusted
        p-value in a family); None without a test."""
        p = self.p if self.p_holm is None else self.p_holm
        return None if p is None else p < self.level

    @property
    def p_text(self) -> str:
        """The p-value as tables print it: ``p = 0.045``, or ``p < 0.001`` (never ``p = 0.000``),
        and in a family the adjusted one (``p = 0.013; Holm over 5: p = 0.065``); ``no test``
        where there is none (one run has no spread)."""
        if self.p is None:
            return "no test"
        if self.p_holm is None:
            return p_text(self.p)
        return f"{p_text(self.p)}; Holm over {self.family}: {p_text(self.p_holm)}"

    @property
    def verdict(self) -> str:
        if self.p is None:
            return "n/a (one run has no spread)"
        return f"{'beyond' if self.beyond_noise else 'within'} noise ({self.p_text}, {self.test})"

    def row(self, digits: int = 4) -> dict[str, str]:
        """Table cells: difference, confidence interval, verdict."""
        ci = "n/a" if self.p is None else f"[{self.low:+.{digits}f}, {self.high:+.{digits}f}]"
        return {
            "difference": f"{self.difference:+.{digits}f}",
            f"{1 - self.level:.0%} CI": ci,
            "beyond noise?": self.verdict,
        }


def compare(
    a: Sequence[float], b: Sequence[float], *, paired: bool = True, level: float = 0.05
) -> Comparison:
    """Is ``mean(a) - mean(b)`` beyond the noise between seeds? A two-sided t-test from SciPy:
    paired (``scipy.stats.ttest_rel``) when ``a[i]`` and ``b[i]`` come from the same seed, as
    the course's runs do (same initial weights, same batches: the seed's own luck cancels),
    else Welch's (``ttest_ind(equal_var=False)``). Returns the difference, its ``1 - level``
    confidence interval and the p-value; ``beyond_noise`` when p < ``level``."""
    a, b = np.asarray(a, dtype=float).reshape(-1), np.asarray(b, dtype=float).reshape(-1)
    if not (a.size and b.size) or not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError("compare needs at least one finite value on each side")
    diff = float(a.mean() - b.mean())
    if min(len(a), len(b)) < 2:
        return Comparison(diff, diff, diff, None, "none", level)
    if paired:
        if len(a) != len(b):
            raise ValueError(
                f"a paired test needs one value per seed in each, got {len(a)} and {len(b)}"
            )
        d = a - b
        if np.allclose(
            d, d[0], rtol=0, atol=1e-12
        ):  # no spread: no t statistic, yet a clear answer
            return Comparison(diff, diff, diff, 1.0 if d[0] == 0 else 0.0, "paired t", level)
        result = stats.ttest_rel(a, b)
    else:
        result = stats.ttest_ind(a, b, equal_var=False)
    ci = result.confidence_interval(1 - level)
    return Comparison(
        diff,
        float(ci.low),
        float(ci.high),
        float(result.pvalue),
        "paired t" if paired else "Welch t",
        level,
    )


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's (1979) step-down adjustment of ``m`` p-values: the ``i``-th smallest times
    ``m - i + 1`` (``i`` from 1), made non-decreasing in that order and capped at 1. Calling
    "beyond noise" where an adjusted p-value is below ``level`` keeps the chance of calling even
    one difference that is not real beyond noise at most ``level``; testing each at ``level``
    alone, ten comparisons of students that do not differ would find one about four times in
    ten."""
    p = np.asarray(pvalues, dtype=float)
    if p.ndim != 1 or not np.all((p >= 0) & (p <= 1)):
        raise ValueError(f"holm needs a list of p-values in [0, 1], got {pvalues!r}")
    order = np.argsort(p, kind="stable")
    steps = np.maximum.accumulate(p[order] * (len(p) - np.arange(len(p))))
    adjusted = np.empty(len(p))
    adjusted[order] = np.minimum(steps, 1.0)
    return adjusted.tolist()


Comparisons = Sequence[tuple[str, Sequence[float], Sequence[float]]]


def compare_all(
    comparisons: Comparisons, *, paired: bool = True, level: float = 0.05
) -> dict[str, Comparison]:
    """:func:`compare` for every ``(label, a, b)``, as one family: with two or more tests each
    result carries its Holm-adjusted p-value (:func:`holm`), and ``beyond_noise`` and the
    verdict go by that. A notebook that reads several comparisons off one experiment uses this,
    so that its verdicts and its table (:func:`compare_table`) agree. Returns them by label."""
    labels = [label for label, _, _ in comparisons]
    if len(set(labels)) != len(labels):
        raise ValueError(f"compare_all needs distinct labels, got {labels}")
    found = {label: compare(a, b, paired=paired, level=level) for label, a, b in comparisons}
    tested = [label for label, c in found.items() if c.p is not None]
    if len(tested) < 2:
        return found
    adjusted = holm([found[label].p for label in tested])
    for label, q in zip(tested, adjusted):
        found[label] = replace(found[label], p_holm=q, family=len(tested))
    return found


class Family(dict):
    """The :func:`compare_all` results of one family of comparisons, by label (a dict of
    :class:`Comparison`), with the values compared, so that its table and its record
    (:meth:`Run.compare`) say what its verdicts say."""

    def __init__(self, name: str, comparisons: Comparisons, *, paired: bool = True):
        super().__init__(compare_all(comparisons, paired=paired))
        self.name = name
        self.values = {label: (list(a), list(b)) for label, a, b in comparisons}

    def entry(self, label: str) -> dict:
        """What a record keeps of one comparison."""
        c, (a, b) = self[label], self.values[label]
        return {
            "family": self.name,
            "family_size": c.family,
            "a": a,
            "b": b,
            "difference": c.difference,
            "ci": [c.low, c.high],
            "p": c.p,
            "p_holm": c.p_holm,
            "test": c.test,
            "beyond_noise": c.beyond_noise,
            "verdict": c.verdict,
        }

    def table(self, *, digits: int = 4, caption: str | None = None) -> Table:
        """One row per comparison: each side's ``mean ± std``, the difference, its confidence
        interval and the verdict."""
        rows = [
            {
                "comparison": label,
                "a": mean_std(a, digits),
                "b": mean_std(b, digits),
                **self[label].row(digits),
            }  # fmt: skip
            for label, (a, b) in self.values.items()
        ]
        return Table(rows, caption=caption)


def compare_table(
    comparisons: Comparisons,
    *,
    digits: int = 4,
    paired: bool = True,
    caption: str | None = None,
) -> Table:
    """A table of :func:`compare_all` results (one family: Holm-adjusted where there are two or
    more), one row per ``(label, a, b)``: each side's ``mean ± std``, the difference, its
    confidence interval and the verdict. ``caption``: what the values are, on which data."""
    return Family("", comparisons, paired=paired).table(digits=digits, caption=caption)


def headline_table(record: dict) -> Table:
    """A record's headline measures (``metrics["headline"]``), one row each."""
    rows = [
        {"measure": k, "value": v} for k, v in record.get("metrics", {}).get("headline", {}).items()
    ]
    return Table(rows, columns=["measure", "value"])


def summary(records: Iterable[dict]) -> str:
    """One short table per record: its headline measures, under a line that says which
    notebook, profile, dataset and how long it ran."""
    parts = []
    for r in records:
        minutes = r.get("wall_time_s", 0) / 60
        data = r.get("dataset") or "?"
        if r.get("requested_dataset") not in (None, data):
            data += f" (stand-in for {r['requested_dataset']})"
        parts.append(
            f"{r['notebook']} · {r['profile']} profile · {data} · {minutes:.1f} min\n"
            f"{headline_table(r)}"
        )
    return "\n\n".join(parts) if parts else "(no records)"


if __name__ == "__main__":
    folder = sys.argv[1] if len(sys.argv) > 1 else committed_dir("cpu")
    print(summary(load(folder)))
