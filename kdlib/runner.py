"""Execute the course notebooks with papermill: ``make run``, ``make notebooks``.

``python -m kdlib.runner --profile cpu`` executes every ``notebooks/NN_*.ipynb`` into
``runs/cpu/`` (executed copies and their records) and prints the records' summary at the end.
``--commit`` makes the committed runs instead: at ``cpu`` it re-executes the notebooks in place
and writes their records to ``results/``; at ``full`` it writes executed copies to
``notebooks/full/`` and records to ``results/full/``. A committed notebook is replaced only when
its run succeeds: each run goes to a temporary file first, and a failed run is kept in
``runs/<profile>/`` for inspection, with the failing cell and error shown. The other notebooks
still run, and the exit status is non-zero.

Before any notebook runs, the call is checked: ``--only`` takes notebook numbers or whole
names (an unknown one is an error listing the valid ones); every notebook's settings at the
profile are checked and printed in its banner line; ``--out`` must be a writable folder outside
the committed files (in the checkout, one git ignores); ``--commit`` refuses a working tree with
uncommitted changes unless ``--allow-dirty REASON`` says why, and the reason goes in every
record of the call (``git_dirty_reason``).

Every run executes with ``KDLIB_PROFILE``, an absolute ``KDLIB_RESULTS_DIR`` and
``KDLIB_PROGRESS=line`` (one line per training run in the outputs, not a live bar).
``--resume`` sets ``KDLIB_RESUME=1`` (``kdlib.cache.resuming``): every trained student is
cached, so a run that stopped (a 10-minute call on a lent GPU, a crash) goes on where it stopped
when the same command runs again with the same cache.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

from kdlib import _io, profiles, results

NOTEBOOKS = results.REPO / "notebooks"


def notebooks(only: str | None = None) -> list[Path]:
    """The course notebooks in teaching order, or those ``only`` selects: comma-separated
    notebook numbers (``"1"`` and ``"01"`` both select ``01_*``) or whole file names, with or
    without ``.ipynb``. A selector that matches no notebook is an error listing the valid ones
    (a part of a name, ``"1"`` in ``"cifar10"``, matches nothing)."""
    found = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    if only is None:
        return found
    parts = [p.strip() for p in only.split(",") if p.strip()]
    if not parts:
        raise ValueError(f"--only {only!r} names no notebook; valid: {_valid(found)}")
    chosen, unknown = [], []
    for part in parts:
        matches = [nb for nb in found if _selects(part, nb)]
        if not matches:
            unknown.append(part)
        chosen += [nb for nb in matches if nb not in chosen]
    if unknown:
        raise ValueError(
            f"--only: no notebook {', '.join(map(repr, unknown))} in {NOTEBOOKS}; valid: "
            f"{_valid(found)}"
        )
    return sorted(chosen)


def _selects(part: str, nb: Path) -> bool:
    """Whether the selector ``part`` (a number or a whole name) names ``nb``."""
    if part.isdigit():
        return int(part) == int(nb.name[:2])
    return part in (nb.name, nb.stem)


def _valid(found: list[Path]) -> str:
    return ", ".join(f"{nb.name[:2]} ({nb.stem})" for nb in found) or "none"


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


def _check_out(out: Path) -> Path:
    """``out`` resolved, or a ValueError when it would write among committed files: in the
    committed folders (``results/``, ``notebooks/``) or, inside the checkout, anywhere git does
    not ignore (``runs/`` is ignored), where an executed copy or a smoke record would replace a
    committed file or join the tree. Only ``--commit`` writes the committed runs. A folder that
    cannot be written is a PermissionError."""
    out = out.expanduser().resolve()
    repo = results.REPO.resolve()
    committed = [repo / "results", repo / "notebooks"]
    inside = any(out == c or out.is_relative_to(c) for c in committed)
    if inside or (out.is_relative_to(repo) and _ignored(out, repo) is False):
        raise ValueError(
            f"--out {out} is among the checkout's committed files: executed copies and records "
            f"would replace or join them. Choose a folder git ignores (default runs/<profile>) "
            "or one outside the checkout; --commit makes the committed runs"
        )
    return _io.check_writable(out, "choose another --out")


def _ignored(folder: Path, repo: Path) -> bool | None:
    """Whether git ignores ``folder`` of the checkout ``repo``; None where git cannot tell (a
    copy of the tree without ``.git``)."""
    try:
        found = subprocess.run(
            ["git", "-c", f"safe.directory={repo}", "-C", str(repo), "check-ignore", "-q"]
            + [f"{folder.relative_to(repo)}/"],
            capture_output=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return {0: True, 1: False}.get(found.returncode)


def _dirty_tree(allow_dirty: str | None) -> str | None:
    """The reason to make committed runs from a working tree with uncommitted changes:
    ``allow_dirty`` itself; without it, a dirty tree is a ValueError. A tree git cannot judge
    (a copy without ``.git`` on a lent machine: ``dirty`` is None) is taken as it is."""
    if results.git_commit()["dirty"] and not allow_dirty:
        raise ValueError(
            "--commit makes the committed runs, and the working tree has uncommitted changes "
            "(see git status): commit them first, or pass --allow-dirty REASON (the reason is "
            "recorded in every record of the call)"
        )
    return allow_dirty


def _settings(nb: Path, profile: str) -> str:
    """The settings ``nb`` runs with at ``profile`` (checked by ``profiles.get``), for the
    banner: what this run is, not what the profile is meant to be."""
    if nb.stem not in profiles.NOTEBOOKS:
        return ""
    return f"\n    settings: {profiles.get(nb.stem, profile)!r}"


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
        "--only",
        help="run only these notebooks: numbers or whole names, comma-separated (1,02: 01 and 02)",
    )
    parser.add_argument(
        "--allow-dirty",
        metavar="REASON",
        help="with --commit, run from a tree with uncommitted changes; REASON goes in the records",
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
    if args.allow_dirty is not None and not args.commit:
        parser.error("--allow-dirty goes with --commit (other runs may start from any tree)")
    try:
        todo = notebooks(args.only)
        if not todo:
            raise ValueError(f"no notebook in {NOTEBOOKS}")
        banners = [_settings(nb, args.profile) for nb in todo]  # every setting checked first
        out = _check_out(args.out or results.REPO / "runs" / args.profile)
        reason = _dirty_tree(args.allow_dirty) if args.commit else None
        records = results.committed_dir(args.profile) if args.commit else out
        _io.check_writable(records, "the records of this call go there")
    except (ValueError, PermissionError) as e:
        parser.error(str(e))
    failures = {}
    source = results.source_env()  # the tree as found: what every record here names
    if reason:
        source["KDLIB_DIRTY_REASON"] = reason
    for i, (nb, settings) in enumerate(zip(todo, banners), 1):
        where = _destination(nb, args.profile, args.commit, out)
        print(
            f"[{i}/{len(todo)}] {nb.name} at profile {args.profile} -> {where}{settings}",
            flush=True,
        )
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
