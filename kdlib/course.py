"""What every notebook does first, and the cells every notebook shares.

:func:`start` reads the parameters cell, prints the profile and settings, sets up the device,
loads the dataset (an announced stand-in only where the notebook asks for one) and opens the
run's record. :func:`install_cell` and :func:`colab_badge` are the Colab cell and badge at the
top of every notebook; the repository and the version they install are defined here, once
(``tests/test_notebooks.py`` checks that every notebook carries exactly these).
"""

from __future__ import annotations

from typing import NamedTuple

from kdlib import data, device, profiles, results

REPOSITORY = "github.com/kdlib-course/kdlib"
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
