"""The Colab badges and install cells come from one setting, kdlib.course.REPOSITORY: changing
it changes every badge, every install cell, the README index's Colab links, and (through
course.sync, run on copies here) the notebooks."""

import shutil
from pathlib import Path

import nbformat
import pytest

from kdlib import course, pages

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
PUBLISHED = course.REPOSITORY
FORK = "github.com/someone/kd-fork"


@pytest.fixture
def copies(tmp_path):
    for path in NOTEBOOKS:
        shutil.copy(path, tmp_path / path.name)
    return tmp_path


def _opening(path: Path) -> tuple[str, str]:
    nb = nbformat.read(path, as_version=4)
    return nb.cells[0].source, next(c for c in nb.cells if c.cell_type == "code").source


def test_the_setting_changes_every_badge_install_cell_and_index_link(monkeypatch):
    monkeypatch.setattr(course, "REPOSITORY", FORK)
    for path in NOTEBOOKS:
        assert "colab.research.google.com/github/someone/kd-fork/" in course.colab_badge(path.stem)
    assert f"git+https://{FORK}@{course.REF}" in course.install_cell()
    assert PUBLISHED not in course.install_cell()
    links = pages.index(ROOT).splitlines()[2:]
    assert len(links) == len(NOTEBOOKS)
    assert all("github/someone/kd-fork/blob/main/notebooks/" in line for line in links)
    assert not any("kdlib-course" in line for line in links)


def test_sync_rewrites_every_notebooks_badge_and_install_cell(copies, monkeypatch):
    assert course.sync(copies) == []  # the committed notebooks carry the setting's cells
    monkeypatch.setattr(course, "REPOSITORY", FORK)
    assert [p.name for p in course.sync(copies)] == [p.name for p in NOTEBOOKS]
    for path in sorted(copies.glob("*.ipynb")):
        first, code = _opening(path)
        assert course.colab_badge(path.stem) in first and "kdlib-course" not in first
        assert code == course.install_cell()
    assert course.sync(copies) == []


def test_sync_refuses_a_notebook_without_a_badge_before_writing_any(copies):
    bad = copies / NOTEBOOKS[-1].name
    nb = nbformat.read(bad, as_version=4)
    nb.cells[0].source = "# no badge"
    nbformat.write(nb, bad)
    before = {p: p.read_bytes() for p in copies.glob("*.ipynb")}
    with pytest.raises(ValueError, match=f"{bad.name}: its first cell has no 'Open In Colab'"):
        course.sync(copies)
    assert {p: p.read_bytes() for p in copies.glob("*.ipynb")} == before


def test_the_readmes_colab_row_names_the_setting_and_says_when_the_badge_works():
    text = " ".join((ROOT / "README.md").read_text().split())
    assert f"`{PUBLISHED}`" in text and "`kdlib.course.REPOSITORY`" in text
    assert "work once the course is published at that URL" in text
