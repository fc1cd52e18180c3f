"""kdlib: the small shared library of the knowledge-distillation course.

One module per concept (see DESIGN.md): ``losses``, ``distill``, ``train``, ``models``,
``quant``, ``data``, ``profiles``, ``device``, ``cache``, ``results``, ``plots``.
Notebooks import these; they never copy code between each other.

Importing kdlib quiets TensorFlow's C++ start-up log lines (``TF_CPP_MIN_LOG_LEVEL=2``)
unless you have set that variable yourself, so notebook outputs show results, not noise.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from kdlib import (  # noqa: E402
    cache,
    data,
    device,
    distill,
    losses,
    models,
    plots,
    profiles,
    quant,
    results,
    train,
)

__version__ = "0.1.0"

__all__ = [
    "cache",
    "data",
    "device",
    "distill",
    "losses",
    "models",
    "plots",
    "profiles",
    "quant",
    "results",
    "train",
]
