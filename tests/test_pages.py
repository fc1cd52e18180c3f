"""The pages made from the records (kdlib.pages): the README's notebook index and
docs/results.md say what the records give, --check catches a stale page, the committed pages
are current, and the README keeps to its length budget."""

import json
from pathlib import Path

import numpy as np
import pytest

from kdlib import course, pages, results

ROOT = Path(__file__).resolve().parent.parent
README_BUDGET = 150  # lines

ALONE = [0.950, 0.955, 0.952]
KD = [0.966, 0.968, 0.963]
NO_T2 = [0.951, 0.957, 0.950]


def _notebook(folder: Path, stem: str, title: str, question: str) -> None:
    cell = {
        "cell_type": "markdown",
        "metadata": {},
        "source": f"# {stem[:2]} · {title}\n\nbadge\n\n**Question.** {question}\n\n**Papers.** x",
    }
    (folder / f"{stem}.ipynb").write_text(json.dumps({"cells": [cell], "nbformat": 4}))


def _record(stem: str, family: results.Family | None, findings: dict | None) -> dict:
    metrics = {"headline": {"teacher": 0.99, "alone": results.mean_std(ALONE)}}
    if family is not None:
        metrics["comparisons"] = {label: family.entry(label) for label in family}
    if findings is not None:
        metrics["findings"] = findings
    return {
        "notebook": stem,
        "profile": "cpu",
        "dataset": "fashion_mnist",
        "requested_dataset": "cifar10",
        "metrics": metrics,
        "machine": {
            "cpu_cores": 2,
            "accelerators": [],
            "backend": "jax",
            "dtype_policy": "float32",
        },
        "versions": {"keras": "3.15.1", "jax": "0.10.2"},
        "wall_time_s": 90.0,
    }


def _family() -> results.Family:
    return results.Family("losses", [("KD vs alone", KD, ALONE), ("T² off vs alone", NO_T2, ALONE)])


@pytest.fixture
def checkout(tmp_path):
    """A checkout in miniature: two notebooks, a README with the index markers, one record with
    findings and one without."""
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "results").mkdir()
    _notebook(tmp_path / "notebooks", "00_kd", "Soft targets", "Some context. Does KD help?")
    _notebook(tmp_path / "notebooks", "01_old", "Old record", "Is this recorded yet?")
    findings = {"effect": "KD vs alone", "contrast": "T² off vs alone"}
    for stem, family, found in [("00_kd", _family(), findings), ("01_old", None, None)]:
        (tmp_path / "results" / f"{stem}.json").write_text(json.dumps(_record(stem, family, found)))
    readme = f"# Course\n\n{pages.INDEX_START}\nold index\n{pages.INDEX_END}\n\n## After\n"
    (tmp_path / "README.md").write_text(readme)
    return tmp_path


def _rows(readme: str) -> dict[str, str]:
    block = readme.split(pages.INDEX_START)[1].split(pages.INDEX_END)[0]
    return {line.split(" | ")[0].strip("| "): line for line in block.strip().splitlines()[2:]}


def test_the_index_gives_each_notebook_its_question_and_the_headline_its_record_names(checkout):
    text = pages.pages(checkout)[checkout / "README.md"]
    rows = _rows(text)
    assert set(rows) == {"00", "01"}
    family = _family()
    effect = 100 * (np.mean(np.array(KD, np.float64)) - np.mean(np.array(ALONE, np.float64)))
    contrast = 100 * (np.mean(np.array(NO_T2, np.float64)) - np.mean(np.array(ALONE, np.float64)))
    assert "[Soft targets](notebooks/00_kd.ipynb)" in rows["00"]
    assert "| Does KD help? |" in rows["00"]  # the question, not its context
    assert (
        f"effect: KD vs alone, {effect:+.2f} points, {family['KD vs alone'].verdict}" in rows["00"]
    )
    assert f"contrast: T² off vs alone, {contrast:+.2f} points" in rows["00"]
    assert family["T² off vs alone"].verdict in rows["00"]
    assert f"| {pages.NO_HEADLINE} |" in rows["01"]  # no findings: said, not left blank
    assert course.colab_url("01_old") in rows["01"]
    assert text.startswith("# Course\n\n") and text.endswith(f"{pages.INDEX_END}\n\n## After\n")


def test_a_difference_in_counts_is_shown_in_the_records_unit_not_in_points(checkout):
    errors = results.Family(
        "errors", [("KD", [118, 110, 125], [148, 140, 156]), ("x", [1, 2, 3], [2, 2, 2])]
    )
    record = _record("00_kd", errors, {"effect": "KD", "contrast": "x"})
    assert "effect: KD, -30.3, " in pages.headline(record)
    assert "points" not in pages.headline(record)


def test_findings_naming_an_unrecorded_comparison_are_an_error_naming_the_notebook():
    record = _record("03_x", _family(), {"effect": "KD vs alone", "contrast": "hints"})
    with pytest.raises(ValueError, match="03_x: its findings name 'hints'"):
        pages.headline(record)
    record["metrics"]["findings"]["contrast"] = "T² off vs alone"
    del record["metrics"]["comparisons"]["T² off vs alone"]["verdict"]
    with pytest.raises(ValueError, match="lacks verdict"):
        pages.headline(record)


def test_the_results_page_shows_every_record_with_its_machine_and_comparisons(checkout):
    page = pages.pages(checkout)[checkout / pages.RESULTS_PAGE]
    kd, off = _family()["KD vs alone"], _family()["T² off vs alone"]
    assert "### 00_kd · `cpu`" in page and "### 01_old · `cpu`" in page
    assert "fashion_mnist (stand-in for cifar10" in page and "2-core CPU · jax 0.10.2" in page
    assert f"| alone | {results.mean_std(ALONE)} |" in page  # the headline table
    assert f"| KD vs alone | losses | {results.mean_std(KD)} | {results.mean_std(ALONE)} |" in page
    assert f"[{100 * kd.low:+.2f}, {100 * kd.high:+.2f}] | {kd.verdict} |" in page
    assert off.verdict in page
    assert "No comparisons with verdicts recorded yet." in page  # 01_old
    assert "No `full` records are committed yet." in page


def test_check_fails_on_a_stale_page_and_names_it(checkout, capsys):
    assert pages.main(["--root", str(checkout), "--check"]) == 1
    assert "README.md is stale" in capsys.readouterr().err
    assert pages.main(["--root", str(checkout)]) == 0
    assert (checkout / pages.RESULTS_PAGE).is_file()
    assert pages.main(["--root", str(checkout), "--check"]) == 0
    path = checkout / "results" / "01_old.json"
    record = json.loads(path.read_text())
    record["metrics"]["headline"]["teacher"] = 0.5
    path.write_text(json.dumps(record))
    capsys.readouterr()
    assert pages.main(["--root", str(checkout), "--check"]) == 1
    err = capsys.readouterr().err
    assert "docs/results.md is stale" in err and "README.md" not in err


def test_a_readme_without_the_index_markers_is_an_error(checkout):
    (checkout / "README.md").write_text("# Course\n\nno index here\n")
    with pytest.raises(ValueError, match="needs the markers"):
        pages.pages(checkout)


def test_a_notebook_without_a_question_is_an_error_naming_it(checkout):
    _notebook(checkout / "notebooks", "02_bad", "No question", "A statement.")
    with pytest.raises(ValueError, match="02_bad.ipynb: its \\*\\*Question\\.\\*\\* paragraph"):
        pages.index(checkout)


def test_the_committed_index_and_results_page_are_what_the_committed_records_give(capsys):
    assert pages.main(["--check"]) == 0, capsys.readouterr().err


def test_the_readme_keeps_to_its_length_budget():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= README_BUDGET, f"README.md has {len(lines)} lines, over {README_BUDGET}"


def test_make_notebooks_remakes_the_pages_after_the_runner_and_make_pages_alone():
    import subprocess

    def planned(target: str) -> list[str]:
        out = subprocess.run(["make", "-n", target], cwd=ROOT, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        return out.stdout.splitlines()

    lines = planned("notebooks")
    runner = next(i for i, line in enumerate(lines) if "kdlib.runner" in line)
    assert any("-m kdlib.pages" in line for line in lines[runner + 1 :])
    assert any(line.endswith("-m kdlib.pages") for line in planned("pages"))
