"""The two install routes (pip extras, conda environment.yml) list the same packages, and the
Markdown pages (README, DESIGN, CHANGELOG, docs/) cite only files in the repository."""

import re
from pathlib import Path

import yaml

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent


def _split(requirement: str) -> tuple[str, str]:
    name, spec = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*)$", requirement).groups()
    return name.lower().replace("_", "-"), spec.replace(" ", "")


def test_environment_yml_and_pyproject_agree():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = dict(_split(r) for r in project["dependencies"])
    for extra in project["optional-dependencies"].values():
        wanted.update(_split(r) for r in extra)
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    listed = {}
    for dep in env["dependencies"]:
        entries = dep["pip"] if isinstance(dep, dict) else [dep]
        for entry in entries:
            if entry.startswith("-e") or entry.split(">")[0] in ("python", "pip"):
                continue
            listed.update([_split(entry)])
    assert listed == wanted


def test_requires_python_matches_the_conda_python():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert f"python{project['requires-python']}" in env["dependencies"]


def _markdown_files():
    return [ROOT / "README.md", ROOT / "DESIGN.md", ROOT / "CHANGELOG.md", *ROOT.glob("docs/*.md")]


def test_the_markdown_pages_cite_only_files_in_the_repository_and_each_section_once():
    for doc in _markdown_files():
        text = doc.read_text()
        headings = re.findall(r"^#{1,3} .+$", text, re.M)
        assert len(headings) == len(set(headings)), f"{doc.name}: a section appears twice"
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
            if re.match(r"[a-z]+:", target):  # a web address
                continue
            assert (doc.parent / target).exists(), f"{doc.name} cites {target}, not in the repo"
