"""The ``smoke`` / ``cpu`` / ``full`` settings of every notebook (DESIGN.md section 4).

* ``smoke``: seconds per notebook on 2 CPU cores, for tests and CI; results are meaningless.
* ``cpu`` (default): at most ~15 minutes per notebook on 2 CPU cores; the KD effect is visible.
* ``full``: the papers' / original notebooks' scale, for a GPU.

The profile is, in order: the notebook's ``profile`` parameter, ``$KDLIB_PROFILE``, ``"cpu"``.
Each notebook's other parameters default to ``None``, meaning "the profile's value"; any value
you set (in the notebook, with papermill ``-p``, or on Colab's form) overrides that one knob.
"""

from __future__ import annotations

import os
from typing import NamedTuple

PROFILES = ("smoke", "cpu", "full")
DEFAULT = "cpu"


class P(NamedTuple):
    """A knob whose value differs between profiles."""

    smoke: object
    cpu: object
    full: object


ABOUT = {
    "smoke": "smoke profile: tiny subsets and a single epoch, to check that the notebook runs; "
    "its numbers mean nothing",
    "cpu": "cpu profile: reduced data, widths and epochs, sized for about 15 minutes on 2 CPU cores",
    "full": "full profile: the paper's / original notebook's scale, meant for a GPU",
}

# One entry per notebook. A plain value is shared by all profiles; P(...) differs by profile.
NOTEBOOKS: dict[str, dict] = {
    "00_soft_targets_temperature": {
        "seed": 0,
        "temperature": 4.0,
        "alpha": 0.9,
        "epochs": P(1, 15, 20),
        "batch_size": 64,
        "lr": 1e-3,
        "n_val": P(500, 5000, 5000),
        "n_teacher": P(2000, 55000, 55000),  # training images of the teacher
        "n_transfer": P(1000, 10000, 55000),  # training images of the student
        "teacher_width": P(0.25, 0.5, 1.0),
        "teacher_epochs": P(1, 3, 10),
        "student_hidden": P((32,), (128,), (128,)),
        "seeds": P(1, 3, 5),
    },
    "01_ensemble_distillation_mnist": {
        "seed": 0,
        "n_val": P(500, 5000, 5000),
        "batch_size": 128,
        "seeds": P(1, 3, 5),
        # part 1: seed 000's ensemble of CNNs, distilled into one CNN
        "cnn_n_train": P(2000, 30000, 55000),
        "cnn_width": P(0.25, 0.5, 1.0),
        "epochs": P(1, 4, 20),
        "student_dropout": P(0.0, 0.0, 0.3),
        "temperature": 3.0,
        "alpha": 0.5,
        # part 2: Hinton et al. section 3, 2x1200 teacher -> 2x800 student
        "n_train": P(2000, 55000, 55000),
        "hinton_temperature": 20.0,
        "hinton_alpha": 0.5,
        "hinton_lr": 1e-3,
        "hinton_teacher_epochs": P(1, 12, 60),
        "hinton_student_epochs": P(1, 6, 30),
    },
    "02_densenet_teacher_student_mnist": {
        "seed": 0,
        "temperature": P(4.0, 4.0, 10.0),
        "alpha": P(0.5, 0.5, 0.9),
        "epochs": P(1, 8, 10),
        "teacher_epochs": P(1, 2, 10),
        "batch_size": P(64, 64, 256),
        "lr": 1e-3,
        "n_val": P(500, 3000, 10000),
        "n_teacher": P(1000, 25000, 50000),  # the teacher's training images (cpu: 2 epochs in about 1.5 minutes)
        "n_train": P(1000, 4000, 50000),  # the students'
        "image_size": P(28, 28, 112),
        "stem": P("small", "small", "imagenet"),
        "blocks": P((1, 1), (3, 3, 3), (6, 12, 24, 16)),
        "teacher_growth": P(4, 12, 32),
        "student_growth": P(2, 6, 12),
        "bn_momentum": P(0.9, 0.9, 0.99),  # 0.99 lags far behind in a few hundred cpu steps
        "mixed_precision": "auto",
        "tensorboard": None,  # a folder for TensorBoard logs, or None
        "seeds": P(1, 3, 1),
    },
    "03_fitnet_hints_cifar10": {
        "seed": 0,
        "dataset": "cifar10",
        "temperature": None,  # None: the (T, alpha) of the sweep that is best on the validation split
        "alpha": None,
        "temperatures": P((2.0, 8.0), (2.0, 4.0, 8.0), (2.0, 4.0, 6.0, 8.0, 10.0, 12.0, 14.0)),
        "alphas": P((0.9,), (0.5, 0.9), (0.3, 0.5, 0.7, 0.9)),
        "augment": P("none", "none", "flip_crop"),  # cpu: a 4-epoch teacher with flip_crop reached only 85.8 %
        "epochs": P(1, 10, 30),
        "hint_epochs": P(1, 3, 10),
        "batch_size": P(64, 64, 128),
        "lr": 1e-3,
        "n_val": P(500, 5000, 5000),
        "n_teacher": P(1000, 55000, 45000),  # the teacher's training images
        "n_train": P(1000, 5000, 45000),  # the students'
        "teacher_width": P(0.125, 0.25, 1.0),
        "teacher_epochs": P(1, 5, 40),
        "teacher_optimizer": P("adam", "adam", "sgd"),
        "teacher_lr": P(1e-3, 1e-3, 1e-2),
        "teacher_schedule": "cosine",
        "student_width": 1.0,
        "seeds": P(1, 3, 3),
    },
    "04_teacher_assistant_cifar10": {
        "seed": 0,
        "dataset": "cifar10",
        "temperature": 4.0,
        "alpha": 0.5,
        "epochs": P(1, 8, 40),
        "batch_size": P(64, 64, 128),
        "lr": 1e-3,
        "n_train": P(1000, 5000, 45000),  # the students' training images
        "width": P(0.25, 0.5, 1.0),
        "assistants": (4, 6, 8),
        "seeds": P(1, 3, 3),
    },
    "05_quantized_student_svhn": {
        "seed": 0,
        "dataset": "svhn",
        "temperature": 4.0,
        "alpha": 0.9,
        "temperatures": P((5.0,), (5.0, 25.0, 100.0), (5.0, 15.0, 25.0, 50.0, 100.0)),
        "weight_bits": 4,
        "activation_bits": 4,
        "bit_widths": P((2,), (2, 4, 32), (2, 4, 8, 32)),  # cpu: 8-bit left out for time
        "epochs": P(1, 4, 20),
        "teacher_epochs": P(1, 3, 20),
        "batch_size": P(64, 128, 128),
        "lr": 1e-3,
        "n_val": P(500, 2500, 5000),
        "n_teacher": P(1000, 55000, 68257),  # the teacher's training images
        "n_train": P(1000, 3000, 68257),  # the students'
        "teacher_width": P(0.25, 0.5, 1.0),
        "student_width": P(0.25, 0.25, 0.5),
        "seeds": P(1, 3, 3),
    },
}


class Config(dict):
    """A notebook's resolved settings; keys are also attributes (``cfg.epochs``)."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __repr__(self) -> str:
        return " · ".join(f"{k}={v}" for k, v in self.items())


def resolve(profile: str | None = None) -> str:
    """The profile to use: ``profile`` if given, else ``$KDLIB_PROFILE``, else ``"cpu"``."""
    name = profile or os.environ.get("KDLIB_PROFILE") or DEFAULT
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; valid profiles: {', '.join(PROFILES)}")
    return name


def get(notebook: str, profile: str | None = None, **overrides) -> Config:
    """Settings of ``notebook`` at ``profile``, with every non-None override applied.

    Unknown notebooks and knobs are errors that list the valid names.
    """
    if notebook not in NOTEBOOKS:
        raise ValueError(f"unknown notebook {notebook!r}; valid: {', '.join(NOTEBOOKS)}")
    name = resolve(profile)
    knobs = NOTEBOOKS[notebook]
    unknown = sorted(set(overrides) - set(knobs))
    if unknown:
        raise ValueError(
            f"unknown knob(s) {', '.join(unknown)} for {notebook}; valid knobs: {', '.join(knobs)}"
        )
    cfg = Config(profile=name)
    for knob, value in knobs.items():
        cfg[knob] = getattr(value, name) if isinstance(value, P) else value
    cfg.update({k: v for k, v in overrides.items() if v is not None})
    return cfg


def banner(cfg: Config) -> None:
    """Print which profile runs and every setting, first thing in each notebook."""
    print(ABOUT[cfg.profile])
    print(f"settings: {cfg!r}")
