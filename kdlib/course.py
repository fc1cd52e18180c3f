"""What every notebook does first, and the cells every notebook shares.

:func:`start` reads the parameters cell, prints the profile and settings, sets up the device,
loads the dataset (an announced stand-in only where the notebook asks for one) and opens the
run's record. :func:`install_cell` and :func:`colab_badge` are the Colab cell and badge at the
top of every notebook; the repository and the version they install are defined here, once
(``tests/test_notebooks.py`` checks that every notebook carries exactly these).
``python -m kdlib.course --sync`` (:func:`sync`) rewrites the notebooks' badges and install
cells after :data:`REPOSITORY` or :data:`REF` changes.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import NamedTuple

from kdlib import data, device, profiles, results

REPOSITORY = "github.com/kdlib-course/kdlib"  # where the badges and install cells point
REF = "v0.2.0"  # the release tag the notebooks install on Colab: kdlib.__version__ (a test checks)


class Start(NamedTuple):
    """A notebook's settings, dataset, run record and device (what :func:`start` returns)."""

    cfg: profiles.Config
    data: data.Dataset
    run: results.Run
    device: dict


def start(notebook: str, namespace: dict, *, standin: str | None = None) -> Start:
    """Begin ``notebook``: its settings from the parameters cell (``namespace``: pass
    ``globals()``), checked before anything else runs; the device (seeded, with the dtype
    policy of a ``mixed_precision`` setting if the notebook has one); its dataset (the
    ``dataset`` setting, else MNIST; ``standin`` names the dataset to use, announced, if that
    one is not available); and its run record."""
    cfg = profiles.from_cell(notebook, namespace)
    profiles.banner(cfg)
    info = device.setup(cfg.seed, mixed_precision=cfg.get("mixed_precision", "auto"))
    dataset = data.load(cfg.get("dataset", "mnist"), standin=standin)
    print(dataset.describe())
    run = results.Run(notebook, cfg, dataset=dataset.name, requested=dataset.requested)
    return Start(cfg, dataset, run, info)


def colab_url(notebook: str) -> str:
    """Where Colab opens ``notebook`` (its file name without suffix) from :data:`REPOSITORY`."""
    path = REPOSITORY.replace("github.com", "github")
    return f"https://colab.research.google.com/{path}/blob/main/notebooks/{notebook}.ipynb"


def colab_badge(notebook: str) -> str:
    """Markdown for the "Open in Colab" badge of ``notebook`` (its file name without suffix)."""
    badge = "https://colab.research.google.com/assets/colab-badge.svg"
    return f"[![Open In Colab]({badge})]({colab_url(notebook)})"


def install_cell() -> str:
    """The source of every notebook's first code cell: on Colab, install kdlib at :data:`REF`
    (``$KDLIB_GIT`` overrides the source, e.g. a fork, a branch or a local clone), and say when
    the install changed TensorFlow, since a running kernel keeps the old one until restarted."""
    return f"""# NBVAL_SKIP
# On Colab: install kdlib, the course's library, at the release this notebook belongs to.
# (Elsewhere `make install` or `pip install -e .` has installed it.)
import os
import subprocess
import sys

if "google.colab" in sys.modules:
    from importlib.metadata import PackageNotFoundError, version

    def installed(package):
        try:
            return version(package)
        except PackageNotFoundError:
            return None

    source = os.environ.get("KDLIB_GIT", "git+https://{REPOSITORY}@{REF}")
    tensorflow_before = installed("tensorflow")
    pip = [sys.executable, "-m", "pip", "install", "-q"]
    subprocess.run([*pip, f"kdlib[tensorflow] @ {{source}}"], check=True)
    print(f"installed kdlib {{installed('kdlib')}} from {{source}}")
    tensorflow_now = installed("tensorflow")
    if tensorflow_now != tensorflow_before:
        print(
            f"pip changed TensorFlow from {{tensorflow_before}} to {{tensorflow_now}}: restart the "
            "runtime (Runtime > Restart session), then run the notebook from the top."
        )"""


BADGE = re.compile(r"\[!\[Open In Colab\]\([^)]*\)\]\([^)]*\)")


def sync(folder: str | Path | None = None) -> list[Path]:
    """Rewrite the Colab badge (first cell) and install cell (first code cell) of every
    ``NN_*.ipynb`` in ``folder`` (default: the course's ``notebooks/``) to :func:`colab_badge`
    and :func:`install_cell`; return the notebooks that changed. Every notebook is checked for
    a badge and a code cell before any is written."""
    import nbformat

    folder = Path(folder) if folder else results.REPO / "notebooks"
    paths = sorted(folder.glob("[0-9][0-9]_*.ipynb"))
    if not paths:
        raise ValueError(f"sync: no notebooks NN_*.ipynb in {folder}")
    books = {path: nbformat.read(path, as_version=4) for path in paths}
    for path, nb in books.items():
        if not (nb.cells and BADGE.search(nb.cells[0].source)):
            raise ValueError(f"{path}: its first cell has no 'Open In Colab' badge to rewrite")
        if not any(c.cell_type == "code" for c in nb.cells):
            raise ValueError(f"{path}: it has no code cell to hold the install cell")
    changed = []
    for path, nb in books.items():
        first = nb.cells[0]
        code = next(c for c in nb.cells if c.cell_type == "code")
        found = BADGE.search(first.source)
        badge = first.source[: found.start()] + colab_badge(path.stem) + first.source[found.end() :]
        if (badge, code.source) == (first.source, install_cell()):
            continue
        first.source, code.source = badge, install_cell()
        path.write_text(nbformat.writes(nb))
        changed.append(path)
    return changed


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m kdlib.course")
    parser.add_argument(
        "--sync", action="store_true", help="rewrite the notebooks' Colab badges and install cells"
    )
    if parser.parse_args().sync:
        for path in sync():
            print(f"rewrote {path.relative_to(results.REPO)}")
    else:
        parser.print_help()
