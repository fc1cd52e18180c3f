"""Execute the course notebooks with papermill: ``make run``, ``make notebooks``.

``python -m kdlib.runner --profile cpu`` executes every ``notebooks/NN_*.ipynb`` into
``runs/cpu/`` (executed copies and their records) and prints the records' summary at the end.
``--commit`` makes the committed runs instead: at ``cpu`` it re-executes the notebooks in place
and writes their records to ``results/``; at ``full`` it writes executed copies to
``notebooks/full/`` and records to ``results/full/``. A committed notebook is replaced only when
its run succeeds: each run goes to a temporary file first, and a failed run is kept in
``runs/<profile>/`` for inspection, with the failing cell and error shown. The other notebooks
still run, and the exit status is non-zero.

Every run executes with ``KDLIB_PROFILE``, an absolute ``KDLIB_RESULTS_DIR`` and
``KDLIB_PROGRESS=line`` (one line per training run in the outputs, not a live bar).
``--resume`` sets ``KDLIB_RESUME=1`` (``kdlib.cache.resuming``): every trained student is
cached, so a run that stopped (a 10-minute call on a lent GPU, a crash) goes on where it stopped
when the same command runs again with the same cache.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

from kdlib import profiles, results

NOTEBOOKS = results.REPO / "notebooks"


def notebooks(only: str | None = None) -> list[Path]:
    """The course notebooks in teaching order, optionally those whose name contains ``only`` or,
    for ``"01,02"``, one of its comma-separated parts."""
    found = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    parts = None if only is None else [p for p in only.split(",") if p]
    return [nb for nb in found if parts is None or any(p in nb.name for p in parts)]


def execute(
    notebook: Path,
    output: Path,
    *,
    profile: str,
    results_dir: Path,
    parameters: dict | None = None,
    resume: bool = False,
) -> str | None:
    """Run one notebook with papermill into ``output``; return None on success or a description
    of the error. The kernel runs with ``KDLIB_PROFILE=profile``, ``KDLIB_RESULTS_DIR`` (absolute)
    and ``KDLIB_PROGRESS`` (``line`` unless set); this process's environment is left as it was.
    ``parameters`` are injected as papermill's; ``resume`` sets ``KDLIB_RESUME=1``."""
    import papermill

    profiles.resolve(profile)
    kernel_env = {
        "KDLIB_PROFILE": profile,
        "KDLIB_RESULTS_DIR": str(Path(results_dir).absolute()),
        "KDLIB_PROGRESS": os.environ.get("KDLIB_PROGRESS", "line"),
        **({"KDLIB_RESUME": "1"} if resume else {}),
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    with mock.patch.dict(os.environ, kernel_env):  # the kernel inherits it; ours comes back
        try:
            papermill.execute_notebook(
                str(notebook),
                str(output),
                parameters=parameters or {},
                cwd=str(notebook.parent),
                progress_bar=True,
                kernel_name="python3",
            )
        except papermill.PapermillExecutionError as e:
            return f"cell {e.exec_count}: {e.ename}: {e.evalue}"
    return None


def _destination(nb: Path, profile: str, commit: bool, out: Path) -> Path:
    if not commit:
        return out / nb.name
    return nb if profile == "cpu" else NOTEBOOKS / profile / nb.name


def run_one(
    nb: Path, profile: str, *, commit: bool, out: Path, records: Path, resume: bool = False
) -> str | None:
    """Execute ``nb``; write it to its destination only if the run succeeds."""
    final = _destination(nb, profile, commit, out)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=f".{nb.stem}.", suffix=".ipynb")
    os.close(fd)
    tmp = Path(tmp)
    try:
        error = execute(nb, tmp, profile=profile, results_dir=records, resume=resume)
        if error is None:
            os.replace(tmp, final)
        else:
            failed = out / nb.name
            failed.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, failed)
            error += f"\n    the failed run is kept in {failed}; {final} is unchanged"
        return error
    finally:
        tmp.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Execute the course notebooks with papermill.")
    parser.add_argument(
        "--profile", default=os.environ.get("KDLIB_PROFILE") or "cpu", choices=profiles.PROFILES
    )
    parser.add_argument(
        "--out", type=Path, help="folder for executed copies and records (default runs/<profile>)"
    )
    parser.add_argument(
        "--commit",
        action="store_true",
        help="make the committed runs (cpu: in place; full: notebooks/full/)",
    )
    parser.add_argument(
        "--only", help="run only notebooks whose file name contains this (01,02: either)"
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="cache every trained student, so a stopped run goes on where it stopped",
    )
    args = parser.parse_args(argv)
    if args.commit and args.profile not in results.PROFILE_FOLDERS:
        parser.error(
            f"--commit makes the committed runs of {' and '.join(results.PROFILE_FOLDERS)}, "
            f"not {args.profile}"
        )
    todo = notebooks(args.only)
    if not todo:
        parser.error(f"no notebook matches {args.only!r} in {NOTEBOOKS}")
    out = (args.out or results.REPO / "runs" / args.profile).absolute()
    records = results.committed_dir(args.profile) if args.commit else out
    failures = {}
    source = results.source_env()  # the tree as found: what every record here names
    for i, nb in enumerate(todo, 1):
        where = _destination(nb, args.profile, args.commit, out)
        print(f"[{i}/{len(todo)}] {nb.name} at profile {args.profile} -> {where}", flush=True)
        start = time.perf_counter()
        with mock.patch.dict(os.environ, source):
            error = run_one(
                nb, args.profile, commit=args.commit, out=out, records=records, resume=args.resume
            )
        minutes = (time.perf_counter() - start) / 60
        if error:
            failures[nb.name] = error
            print(f"    FAILED after {minutes:.1f} min at {error}", flush=True)
        else:
            print(f"    done in {minutes:.1f} min", flush=True)
    done = (
        [r for r in results.load(records) if any(r["notebook"] == nb.stem for nb in todo)]
        if records.is_dir()
        else []
    )
    print(f"\nRecords in {records}:\n{results.summary(done)}")
    if failures:
        print(
            f"\n{len(failures)} notebook(s) failed:\n"
            + "\n".join(f"  {k}: {v}" for k, v in failures.items())
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
