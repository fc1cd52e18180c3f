"""kdlib: the small shared library of the knowledge-distillation course.

One module per concept (see DESIGN.md): ``losses``, ``distill``, ``train``, ``teachers``,
``models``, ``quant``, ``export``, ``data``, ``profiles``, ``device``, ``cache``, ``results``,
``plots``, and ``course`` (what every notebook does first).
Notebooks import these; they never copy code between each other.

Importing kdlib quiets TensorFlow's start-up log lines (``TF_CPP_MIN_LOG_LEVEL=2``, and the
lines TensorFlow writes before that setting applies; see ``kdlib._quiet``) so notebook outputs
show results, not noise. Under ``KERAS_BACKEND=jax`` nothing here needs TensorFlow (``make test``
runs every notebook on JAX with it unimportable).
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from kdlib import _quiet  # noqa: E402

with _quiet.tensorflow_startup():
    import keras  # noqa: E402, F401  (imports TensorFlow on its backend: the noisy moment)

    _quiet.first_half_precision_value()

from kdlib import (  # noqa: E402
    cache,
    course,
    data,
    device,
    distill,
    export,
    losses,
    models,
    plots,
    profiles,
    quant,
    results,
    teachers,
    train,
)

__version__ = "0.2.0"

__all__ = [
    "cache",
    "course",
    "data",
    "device",
    "distill",
    "export",
    "losses",
    "models",
    "plots",
    "profiles",
    "quant",
    "results",
    "teachers",
    "train",
]
