"""Notebooks as tests: their shared cells, papermill with injected parameters, the runner's
guarantees, the committed outputs, the Colab install cell, and a JAX kernel without TensorFlow.

(nbval executes every notebook at the smoke profile as part of the same pytest run.)
"""

import functools
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

import kdlib
from kdlib import course, profiles, results, runner
from tests.helpers import tree_state

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = runner.notebooks()
NOISE = re.compile(r"absl|cuInit|oneDNN|/tmp/|Traceback|\r")


def _code(nb) -> list:
    return [c for c in nb.cells if c.cell_type == "code"]


def _outputs(cell) -> str:
    parts = []
    for o in cell.get("outputs", []):
        parts.append(
            o.get("text", "") if isinstance(o.get("text", ""), str) else "".join(o["text"])
        )
        parts.append(str(o.get("data", {}).get("text/plain", "")))
    return "".join(parts)


def test_notebooks_are_numbered_and_have_profiles():
    assert [nb.stem[:2] for nb in NOTEBOOKS] == [f"{i:02d}" for i in range(len(NOTEBOOKS))]
    assert {nb.stem for nb in NOTEBOOKS} == set(profiles.NOTEBOOKS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[nb.stem for nb in NOTEBOOKS])
def test_every_notebook_opens_with_the_shared_cells(path):
    nb = nbformat.read(path, as_version=4)
    code = _code(nb)
    assert course.colab_badge(path.stem) in nb.cells[0].source
    assert code[0].source == course.install_cell()
    assert code[1].source == profiles.parameters_cell(path.stem) and "parameters" in code[
        1
    ].metadata.get("tags", [])
    assert code[2].source.startswith("import kdlib  # first")  # before Keras, to quiet TensorFlow
    assert (
        f'kdlib.course.start("{path.stem}"' in code[2].source
        or f'NOTEBOOK = "{path.stem}"' in code[2].source
    )
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    for part in ("You will learn", "Prerequisites", "Time:", "## Exercises", "arxiv.org"):
        assert part in text, (path.stem, part)


def test_the_release_the_notebooks_install_is_this_version():
    assert course.REF == f"v{kdlib.__version__}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[nb.stem for nb in NOTEBOOKS])
def test_committed_notebook_holds_a_clean_cpu_run_with_its_record(path):
    record = json.loads((ROOT / "results" / f"{path.stem}.json").read_text())
    assert record["profile"] == "cpu" and record["notebook"] == path.stem
    code = _code(nbformat.read(path, as_version=4))
    outputs = "".join(_outputs(c) for c in code)
    assert "cpu profile:" in outputs and "smoke profile" not in outputs
    assert not any(o.get("output_type") == "error" for c in code for o in c.get("outputs", []))
    assert not NOISE.search(outputs), NOISE.search(outputs)


def test_full_runs_live_apart_from_the_cpu_runs():
    for record_path in sorted((ROOT / "results" / "full").glob("*.json")):
        record = json.loads(record_path.read_text())
        assert record["profile"] == "full" and {
            "processor",
            "accelerators",
            "backend",
            "dtype_policy",
        } <= set(record["machine"])
        assert (ROOT / "notebooks" / "full" / f"{record_path.stem}.ipynb").is_file()
    assert not list((ROOT / "results").glob("*full*.json"))


def test_papermill_parameters_reach_the_record_and_tensorboard_logs_each_student(tmp_path):
    nb = ROOT / "notebooks" / "02_densenet_teacher_student_mnist.ipynb"
    logs = tmp_path / "tb"
    params = {
        "profile": "smoke",
        "seed": 3,
        "temperature": 5.0,
        "alpha": 0.25,
        "n_train": 600,
        "student_bn_momentum": 0.5,
        "tensorboard": str(logs),
    }
    error = runner.execute(
        nb, tmp_path / nb.name, profile="smoke", results_dir=tmp_path, parameters=params
    )
    assert error is None, error
    record = json.loads((tmp_path / f"{nb.stem}.json").read_text())
    assert record["profile"] == "smoke" and record["seed"] == 3
    for knob in ("temperature", "alpha", "n_train", "student_bn_momentum"):
        assert record["params"][knob] == params[knob]
    assert record["params"]["epochs"] == profiles.NOTEBOOKS[nb.stem]["epochs"].smoke
    executed = nbformat.read(tmp_path / nb.name, as_version=4)
    printed = "".join(o.get("text", "") for c in executed.cells for o in c.get("outputs", []))
    momentum = dict(re.findall(r"^(\w+): growth .* BatchNorm momentum (.*)$", printed, re.M))
    teacher = profiles.NOTEBOOKS[nb.stem]["bn_momentum"].smoke  # not set: the profile's
    assert momentum == {"teacher": str(teacher), "student": "0.5"}
    assert any("injected-parameters" in c.metadata.get("tags", []) for c in executed.cells)
    students = sorted(d.name for d in logs.iterdir() if d.name.startswith("student"))
    assert len(students) == 3 and all(
        list((logs / s).rglob("events.out.tfevents.*")) for s in students
    )


def _notebook(tmp_path, name, *sources) -> Path:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / name
    nbformat.write(nb, path)
    return path


def test_a_failed_committed_run_leaves_the_notebook_untouched_and_keeps_the_failure(tmp_path):
    nb = _notebook(tmp_path / "nbs", "99_fails.ipynb", "x = 1", "raise ValueError('boom')", "y = 2")
    before, profile = nb.read_bytes(), os.environ.get("KDLIB_PROFILE")
    error = runner.run_one(
        nb, "cpu", commit=True, out=tmp_path / "runs", records=tmp_path / "records"
    )
    assert error is not None and "ValueError" in error and "boom" in error and "unchanged" in error
    assert nb.read_bytes() == before  # the committed copy is intact
    failed = nbformat.read(tmp_path / "runs" / nb.name, as_version=4)
    assert any(o.get("output_type") == "error" for c in failed.cells for o in c.get("outputs", []))
    assert [p.name for p in (tmp_path / "nbs").iterdir()] == [nb.name]  # no temporary file left
    assert os.environ.get("KDLIB_PROFILE") == profile  # the caller's environment is left alone
    ok = _notebook(tmp_path / "nbs2", "98_works.ipynb", "print('fine')")
    assert (
        runner.run_one(ok, "cpu", commit=True, out=tmp_path / "runs", records=tmp_path / "records")
        is None
    )
    assert "fine" in _outputs(_code(nbformat.read(ok, as_version=4))[0])  # replaced by the run


def test_every_notebook_of_one_runner_call_names_the_tree_the_call_found(tmp_path, monkeypatch):
    """The runner's first committed notebook rewrites tracked files; the kernels of the later
    ones must still record the commit and state the call started from, not a "dirty" tree."""
    cell = (
        "import os\n"
        "print('SOURCE', *(os.environ.get(f'KDLIB_SOURCE_{k}') for k in ('COMMIT', 'DIRTY')))"
    )
    folder = tmp_path / "nbs"
    for name in ("90_first.ipynb", "91_second.ipynb"):
        _notebook(folder, name, cell)
    monkeypatch.setattr(runner, "NOTEBOOKS", folder)
    monkeypatch.setattr(results, "git_commit", lambda: {"commit": "aaa1111", "dirty": False})
    monkeypatch.delenv("KDLIB_SOURCE_COMMIT", raising=False)
    assert runner.main(["--profile", "smoke", "--out", str(tmp_path / "runs")]) == 0
    for name in ("90_first.ipynb", "91_second.ipynb"):
        out = _outputs(_code(nbformat.read(tmp_path / "runs" / name, as_version=4))[0])
        assert "SOURCE aaa1111 0" in out, (name, out)  # what results.git_commit reads there
    assert "KDLIB_SOURCE_COMMIT" not in os.environ  # the caller's environment is left alone


def test_committed_runs_go_where_readers_find_them(tmp_path):
    nb = runner.NOTEBOOKS / "00_soft_targets_temperature.ipynb"
    assert runner._destination(nb, "cpu", True, tmp_path) == nb
    assert runner._destination(nb, "full", True, tmp_path) == runner.NOTEBOOKS / "full" / nb.name
    assert runner._destination(nb, "smoke", False, tmp_path) == tmp_path / nb.name
    with pytest.raises(SystemExit):
        runner.main(["--profile", "smoke", "--commit"])  # smoke runs are never committed
    names = [nb.name[:2] for nb in runner.notebooks("01,05")]
    assert names == ["01", "05"] and len(runner.notebooks()) == len(runner.notebooks(None)) > 5
    with pytest.raises(SystemExit):
        runner.main(["--profile", "smoke", "--only", "99"])  # matches nothing: said at once


def test_make_run_honours_the_profile_in_the_environment():
    out = subprocess.run(
        ["make", "-n", "run"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "KDLIB_PROFILE": "smoke"},
    )
    assert "kdlib.runner --profile smoke" in out.stdout, out.stdout + out.stderr
    out = subprocess.run(["make", "-n", "notebooks"], cwd=ROOT, capture_output=True, text=True)
    assert "--commit" in out.stdout
    out = subprocess.run(
        ["make", "-n", "lab", "ARGS=--port=9999"], cwd=ROOT, capture_output=True, text=True
    )
    assert "jupyter lab" in out.stdout and "--port=9999" in out.stdout
    assert ("--allow-root" in out.stdout) == (os.getuid() == 0)


def test_the_colab_install_cell_installs_the_pinned_release_from_a_clone(tmp_path):
    """The install cell's logic, offline: a fake Colab, the repository's HEAD cloned locally as
    the source (KDLIB_GIT), pip without dependencies into a scratch folder."""
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    head = subprocess.run(
        ["git", "-C", str(clone), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    site = tmp_path / "site"
    code = (
        "import sys, types\nsys.modules['google.colab'] = types.ModuleType('google.colab')\n"
        + course.install_cell()
    )
    env = {
        **os.environ,
        "KDLIB_GIT": f"git+file://{clone}@{head}",
        "PIP_NO_DEPS": "1",
        "PIP_TARGET": str(site),
        "PYTHONPATH": str(site),
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }
    out = subprocess.run(  # in tmp_path: no kdlib of the working tree on sys.path
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"installed kdlib {kdlib.__version__} from git+file://" in out.stdout
    assert "restart" not in out.stdout  # TensorFlow was not touched
    assert (site / "kdlib" / "course.py").is_file()
    assert (site / f"kdlib-{kdlib.__version__}.dist-info").is_dir()


def test_a_jax_kernel_without_tensorflow_records_jax_and_no_tensorflow(tmp_path, monkeypatch):
    """What `pip install -e ".[jax]"` gives: a kernel on JAX with TensorFlow made unimportable
    (`tests/no_tensorflow.py` as an IPython start-up file). `make test` runs every notebook so;
    here a notebook's opening cells (parameters, `course.start`) and its `run.save()`, through
    the runner, must write a record that names JAX and not TensorFlow."""
    startup = tmp_path / "ipython" / "profile_default" / "startup"
    startup.mkdir(parents=True)
    (startup / "00-no-tensorflow.py").write_text((ROOT / "tests" / "no_tensorflow.py").read_text())
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    nb = nbformat.read(ROOT / "notebooks" / "00_soft_targets_temperature.ipynb", as_version=4)
    nb.cells = _code(nb)[:3] + [
        nbformat.v4.new_code_cell("import sys\nassert 'tensorflow' not in sys.modules"),
        nbformat.v4.new_code_cell("run.save()"),
    ]
    assert "course.start(" in nb.cells[2].source
    path = tmp_path / "00_soft_targets_temperature.ipynb"
    nbformat.write(nb, path)
    error = runner.execute(
        path, tmp_path / "out" / path.name, profile="smoke", results_dir=tmp_path
    )
    assert error is None, error
    record = json.loads((tmp_path / f"{path.stem}.json").read_text())
    assert record["machine"]["backend"] == "jax" and "tensorflow" not in record["versions"]
    assert "jax" in record["versions"]


def test_the_tree_state_sees_a_file_written_over_deleted_or_left_behind(tmp_path):
    """conftest.py compares this state at a session's start and end, so a test that writes
    over a committed file fails the run; the ignored folders (runs/, caches) do not count."""
    git = functools.partial(subprocess.run, cwd=tmp_path, check=True, capture_output=True)
    git(["git", "init", "-q"])
    (tmp_path / ".gitignore").write_text("runs/\n")
    for name in ("README.md", "kept.json", "gone.json"):
        (tmp_path / name).write_text(name)
    git(["git", "add", "."])
    before = tree_state(tmp_path)
    assert set(before) == {".gitignore", "README.md", "kept.json", "gone.json"}
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "out.json").write_text("{}")
    assert tree_state(tmp_path) == before
    (tmp_path / "README.md").write_text("overwritten")
    (tmp_path / "gone.json").unlink()
    (tmp_path / "left.ipynb").write_text("{}")
    after = tree_state(tmp_path)
    changed = {p for p in before.keys() | after.keys() if before.get(p) != after.get(p)}
    assert changed == {"README.md", "gone.json", "left.ipynb"}
    assert tree_state(tmp_path.parent / "not-a-checkout") is None


def test_a_resumed_run_loads_its_students_and_its_record_says_so(tmp_path, monkeypatch):
    nb = ROOT / "notebooks" / "00_soft_targets_temperature.ipynb"
    monkeypatch.setenv("KDLIB_CACHE_DIR", str(tmp_path / "cache"))
    records = []
    for i in range(2):
        out = tmp_path / str(i)
        error = runner.execute(nb, out / nb.name, profile="smoke", results_dir=out, resume=True)
        assert error is None, error
        records.append(json.loads((out / f"{nb.stem}.json").read_text()))
    assert os.environ.get("KDLIB_RESUME") is None  # the caller's environment is left alone
    assert records[0]["resumed"] is records[1]["resumed"] is True
    assert records[0]["metrics"] == records[1]["metrics"]
    assert records[0]["from_cache"] == []  # trained everything
    loaded = {e["name"]: e["train_seconds"] for e in records[1]["from_cache"]}
    assert {"00_teacher", "student alone, seed 0", "student distilled, seed 0"} <= set(loaded)
    assert all(seconds > 0 for seconds in loaded.values())
    outputs = "".join(_outputs(c) for c in _code(nbformat.read(tmp_path / "1" / nb.name, 4)))
    for run in ("teacher", "student alone, seed 0", "student distilled, seed 0"):
        assert f"{run}: loaded from the kdlib cache" in outputs


VERDICT = re.compile(r"(?:beyond noise|within noise|n/a) \([^)]*\)")


def printed_verdicts(nb, labels) -> dict[str, set[str]]:
    """Every verdict a notebook's outputs print, by the comparison label on the same line (the
    longest label a line holds, so that a label inside another's is not counted twice)."""
    found: dict[str, set[str]] = {}
    by_length = sorted(labels, key=len, reverse=True)
    for cell in _code(nb):
        for line in _outputs(cell).splitlines():
            verdicts = VERDICT.findall(line)
            label = next((label for label in by_length if label in line), None)
            if verdicts and label is not None:
                found.setdefault(label, set()).update(verdicts)
    return found


def test_the_verdict_check_finds_a_comparison_printed_with_two_verdicts():
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("")
    cell.outputs = [
        nbformat.v4.new_output(
            "stream", text="KD vs alone: +1.00 points, beyond noise (p = 0.01)\n"
        ),
        nbformat.v4.new_output("stream", text="KD vs alone  within noise (p = 0.07)\n"),
        nbformat.v4.new_output("stream", text="hints + KD vs alone: within noise (p = 0.4)\n"),
    ]
    nb.cells.append(cell)
    found = printed_verdicts(nb, ["KD vs alone", "hints + KD vs alone"])
    assert found == {
        "KD vs alone": {"beyond noise (p = 0.01)", "within noise (p = 0.07)"},
        "hints + KD vs alone": {"within noise (p = 0.4)"},
    }


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[nb.stem for nb in NOTEBOOKS])
def test_each_comparison_is_printed_with_the_one_verdict_its_record_holds(path):
    record = json.loads((ROOT / "results" / f"{path.stem}.json").read_text())
    recorded = record["metrics"]["comparisons"]
    assert recorded and set(record["metrics"]["findings"].values()) <= set(recorded)
    printed = printed_verdicts(nbformat.read(path, as_version=4), recorded)
    assert set(printed) == set(recorded), sorted(set(recorded) - set(printed))
    for label, verdicts in printed.items():
        assert verdicts == {recorded[label]["verdict"]}, (label, verdicts)
