"""The two install routes (pip extras, conda environment.yml) list the same packages."""

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
    return [ROOT / "README.md", ROOT / "DESIGN.md"]


def test_readme_and_design_cite_only_files_in_the_repository_and_each_section_once():
    for doc in _markdown_files():
        text = doc.read_text()
        headings = re.findall(r"^#{1,3} .+$", text, re.M)
        assert len(headings) == len(set(headings)), f"{doc.name}: a section appears twice"
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
            if re.match(r"[a-z]+:", target):  # a web address
                continue
            assert (doc.parent / target).exists(), f"{doc.name} cites {target}, not in the repo"


def _number_lists(value):
    """Every list of two or more numbers in a record's metrics (per-seed results)."""
    if isinstance(value, dict):
        for v in value.values():
            yield from _number_lists(v)
    elif isinstance(value, list):
        if len(value) > 1 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
        ):
            yield value
        else:
            for v in value:
                yield from _number_lists(v)


def test_every_mean_and_spread_the_readme_reports_comes_from_a_committed_record():
    from kdlib import results

    text = (ROOT / "README.md").read_text()
    reported = text[text.index("## Results (`cpu` profile") : text.index("## Sources")]
    claimed = set(re.findall(r"\d+\.\d+ ± \d+\.\d+(?: %)?", reported))
    assert len(claimed) > 20  # the tables are there
    backed = set()
    for folder in ("results", "results/full"):
        for record in results.load(ROOT / folder):
            for values in _number_lists(record["metrics"]):
                percent = [100 * v for v in values]
                backed |= {results.mean_std(values, 1), results.mean_std(percent, 2) + " %"}
    assert not claimed - backed, f"README numbers no committed record gives: {claimed - backed}"
