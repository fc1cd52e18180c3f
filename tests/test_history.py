"""No history outside the commit log and CHANGELOG.md: the README, DESIGN.md, docs/, the
Makefile, kdlib's code and the notebooks' markdown say what the code and experiments are and
why, not which commit ran when, on which date, or what earlier runs gave."""

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LEAD_OWNED = ("profiles.py", "models.py", "distill.py", "train.py")  # checked on their own

PATTERNS = {
    "a date": r"\b\d{4}-\d{2}-\d{2}\b",
    "a commit id": r"\bcommits?\b[^.;:]{0,30}?\b(?=[a-f]*\d)[0-9a-f]{7,12}\b",
    "a full commit id": r"\b[0-9a-f]{40}\b",
    "earlier runs": r"\bearlier\b(?:[\s`'’(),-]+[\w-]+){0,4}?[\s`'’(),-]+runs?\b",
    "a development run": r"\b(?:development|dev) runs?\b",
    "the run before": r"\bthe runs? before\b",
    "a previous run": r"\bprevious runs?\b",
    "was replaced": r"\bwas replaced\b",
}


def history(text: str) -> list[str]:
    """What in ``text`` reads as history, each as ``kind: 'snippet'`` (whitespace collapsed, so
    a phrase broken over lines is caught)."""
    flat = " ".join(text.split())
    found = []
    for kind, pattern in PATTERNS.items():
        for m in re.finditer(pattern, flat, re.I):
            found.append(f"{kind}: {flat[max(0, m.start() - 30) : m.end() + 30]!r}")
    return found


def _findings(paths) -> list[str]:
    return [f"{p.relative_to(ROOT)}: {h}" for p in paths for h in history(p.read_text())]


@pytest.mark.parametrize(
    "text",
    [
        "ran on 2026-12-02 from an empty cache",
        "the commit the run started from, commit a7490b3",
        "(at commit `34f5e74`)",
        "git 0123456789abcdef0123456789abcdef01234567",
        "The earlier `cpu`\nruns of this notebook",
        "in a development run, not committed",
        "The run before it gave 99.46 %",
        "the machine was replaced",
    ],
)
def test_history_is_caught(text):
    assert history(text), text


def test_what_the_code_is_passes():
    text = (
        "The record names the git commit the run started from. Later values replace earlier "
        "ones. A run that stopped goes on where it stopped; 1,660 s of training, 0.9103."
    )
    assert history(text) == []


def test_no_history_in_the_pages_the_makefile_or_kdlib():
    paths = [ROOT / "README.md", ROOT / "DESIGN.md", ROOT / "Makefile", *ROOT.glob("docs/*.md")]
    paths += [p for p in sorted((ROOT / "kdlib").rglob("*.py")) if p.name not in LEAD_OWNED]
    found = _findings(paths)
    assert not found, "history belongs in CHANGELOG.md:\n" + "\n".join(found)


def test_no_history_in_the_modules_the_notebooks_share_settings_and_training_with():
    found = _findings(ROOT / "kdlib" / name for name in LEAD_OWNED)
    assert not found, "history belongs in CHANGELOG.md:\n" + "\n".join(found)


def test_no_history_in_notebook_markdown():
    """The course's notebooks. (notebooks/full/ holds executed copies of full-profile runs: each
    is the notebook as it was at the commit its record names, kept as that run's record.)"""
    found = []
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        for i, cell in enumerate(cells):
            if cell["cell_type"] == "markdown":
                text = "".join(cell["source"])
                found += [f"{path.relative_to(ROOT)} cell {i}: {h}" for h in history(text)]
    assert not found, "history belongs in CHANGELOG.md:\n" + "\n".join(found)
