"""Notebooks as tests: papermill with injected parameters, and the committed cpu outputs.

(nbval executes every notebook at the smoke profile as part of the same pytest run.)
"""

import json
import os
from pathlib import Path

import nbformat
import pytest

from kdlib import profiles, runner

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = runner.notebooks()


def test_papermill_parameters_reach_the_record(tmp_path):
    params = {"profile": "smoke", "seed": 3, "temperature": 5.0, "alpha": 0.25, "hinton_temperature": 8.0}
    nb = ROOT / "notebooks" / "01_ensemble_distillation_mnist.ipynb"
    error = runner.execute(nb, tmp_path / nb.name, profile="smoke", results_dir=tmp_path, parameters=params)
    assert error is None, error
    record = json.loads((tmp_path / "01_ensemble_distillation_mnist.json").read_text())
    assert record["profile"] == "smoke" and record["seed"] == 3
    for knob in ("temperature", "alpha", "hinton_temperature"):
        assert record["params"][knob] == params[knob]
    assert record["params"]["epochs"] == profiles.NOTEBOOKS["01_ensemble_distillation_mnist"]["epochs"].smoke
    executed = nbformat.read(tmp_path / nb.name, as_version=4)
    assert any("injected-parameters" in c.metadata.get("tags", []) for c in executed.cells)


def test_the_tensorboard_parameter_writes_a_log_per_student(tmp_path):
    nb = ROOT / "notebooks" / "02_densenet_teacher_student_mnist.ipynb"
    logs = tmp_path / "tb"
    error = runner.execute(nb, tmp_path / nb.name, profile="smoke", results_dir=tmp_path, parameters={"tensorboard": str(logs)})
    assert error is None, error
    students = sorted(d.name for d in logs.iterdir() if d.name.startswith("student"))
    assert students == [f"student{i}_seed0" for i in range(4)]  # alone, T=4, T=10 with and without T²
    for name in students:
        assert list((logs / name).rglob("events.out.tfevents.*")), name


def test_a_failing_notebook_keeps_its_partial_output_and_reports_the_cell(tmp_path):
    nb = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell("x = 1"), nbformat.v4.new_code_cell("raise ValueError('boom')"), nbformat.v4.new_code_cell("y = 2")]
    )
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    src = tmp_path / "99_fails.ipynb"
    nbformat.write(nb, src)
    error = runner.execute(src, tmp_path / "out" / src.name, profile="smoke", results_dir=tmp_path)
    assert error is not None and "ValueError" in error and "boom" in error
    assert (tmp_path / "out" / src.name).exists()


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=[nb.stem for nb in NOTEBOOKS])
def test_committed_notebook_holds_a_cpu_run_with_its_record(nb):
    record = json.loads((ROOT / "results" / f"{nb.stem}.json").read_text())
    assert record["profile"] == "cpu" and record["notebook"] == nb.stem
    executed = nbformat.read(nb, as_version=4)
    code = [c for c in executed.cells if c.cell_type == "code"]
    outputs = "".join(o.get("text", "") for c in code for o in c.get("outputs", []))
    assert "cpu profile:" in outputs and "smoke profile" not in outputs
    assert not any(o.get("output_type") == "error" for c in code for o in c.get("outputs", []))
    assert "parameters" in code[1].metadata.get("tags", [])
    assert "# @param" in code[1].source and "NBVAL_SKIP" in code[0].source


def test_notebooks_are_numbered_and_have_profiles():
    assert [nb.stem[:2] for nb in NOTEBOOKS] == [f"{i:02d}" for i in range(len(NOTEBOOKS))]
    assert {nb.stem for nb in NOTEBOOKS} == set(profiles.NOTEBOOKS)


def test_tests_never_write_into_the_committed_results():
    assert Path(os.environ["KDLIB_RESULTS_DIR"]).resolve() != (ROOT / "results").resolve()
