"""Execute the course notebooks with papermill: ``make run`` and ``make notebooks``.

``python -m kdlib.runner --profile cpu --out runs/cpu`` executes every ``notebooks/NN_*.ipynb``
into ``runs/cpu/`` (executed copies and their records), showing papermill's progress bar, and
prints a summary table of the records at the end. ``--in-place`` re-executes the committed
notebooks themselves and writes their records to ``results/``. A notebook whose cell fails
stops there; its partial executed copy is kept, the failing cell and error are shown, the
others still run, and the exit status is non-zero.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from kdlib import results

NOTEBOOKS = results.REPO / "notebooks"


def notebooks(only: str | None = None) -> list[Path]:
    """The course notebooks in teaching order, optionally those whose name contains ``only``."""
    found = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    return [nb for nb in found if only is None or only in nb.name]


def execute(notebook: Path, output: Path, *, profile: str, results_dir: Path, parameters: dict | None = None) -> str | None:
    """Run one notebook with papermill; return None on success or a description of the error.

    The kernel inherits ``KDLIB_PROFILE`` and ``KDLIB_RESULTS_DIR`` from this process, so no
    parameter cell is injected unless ``parameters`` are given.
    """
    import papermill

    os.environ["KDLIB_PROFILE"] = profile
    os.environ["KDLIB_RESULTS_DIR"] = str(results_dir)
    output.parent.mkdir(parents=True, exist_ok=True)
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Execute the course notebooks with papermill.")
    parser.add_argument("--profile", default="cpu", choices=["smoke", "cpu", "full"])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", type=Path, help="folder for executed copies and records")
    where.add_argument("--in-place", action="store_true", help="re-execute the committed notebooks")
    parser.add_argument("--only", help="run only notebooks whose file name contains this")
    args = parser.parse_args(argv)

    todo = notebooks(args.only)
    if not todo:
        parser.error(f"no notebook matches {args.only!r} in {NOTEBOOKS}")
    records = results.REPO / "results" if args.in_place else args.out
    failures = {}
    for i, nb in enumerate(todo, 1):
        output = nb if args.in_place else args.out / nb.name
        print(f"[{i}/{len(todo)}] {nb.name} at profile {args.profile} -> {output}", flush=True)
        start = time.perf_counter()
        error = execute(nb, output, profile=args.profile, results_dir=records)
        minutes = (time.perf_counter() - start) / 60
        if error:
            failures[nb.name] = error
            print(f"    FAILED after {minutes:.1f} min at {error}\n    partial output kept in {output}", flush=True)
        else:
            print(f"    done in {minutes:.1f} min", flush=True)
    print(f"\nRecords in {records}:")
    print(results.summary(results.load(records)))
    if failures:
        print(f"\n{len(failures)} notebook(s) failed: " + "; ".join(f"{k} ({v})" for k, v in failures.items()))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
