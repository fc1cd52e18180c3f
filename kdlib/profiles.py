"""The ``smoke`` / ``cpu`` / ``full`` settings of every notebook, declared once (DESIGN.md,
"Profiles").

* ``smoke``: seconds per notebook on 2 CPU cores, for tests and CI; results are meaningless.
* ``cpu`` (default): at most 20 minutes per notebook on 2 CPU cores; each paper's effect and its
  contrast decided over at least five seeds.
* ``full``: the papers' / original notebooks' scale, for a GPU.

Each notebook's settings are one table here (:data:`NOTEBOOKS`). Its parameters cell is made
from that table (:func:`parameters_cell`; a test keeps the two equal): every setting is a
parameter, ``None`` meaning "the profile's value", and :func:`from_cell` reads them back, so a
setting is written in one place. Every setting has a :class:`Spec` in :data:`SPECS` (one
vocabulary for all notebooks), and :func:`get` checks each value's type and range, and the
training-set sizes against the dataset, before any data is loaded or any model trained.

The profile is, in order: the notebook's ``profile`` parameter, ``$KDLIB_PROFILE``, ``"full"``
on a Colab GPU runtime, ``"cpu"``.
"""

from __future__ import annotations

import ast
import math
import numbers
import os
import sys
from dataclasses import dataclass
from typing import NamedTuple

from kdlib.data.files import NAMES as DATASETS
from kdlib.data.files import SIZES

PROFILES = ("smoke", "cpu", "full")
DEFAULT = "cpu"


class P(NamedTuple):
    """A setting whose value differs between profiles."""

    smoke: object
    cpu: object
    full: object


ABOUT = {
    "smoke": "smoke profile: tiny subsets and a single epoch, to check that the notebook runs; "
    "its numbers mean nothing",
    "cpu": "cpu profile: reduced data, widths and epochs, sized for at most 20 minutes on 2 CPU "
    "cores",
    "full": "full profile: the paper's / original notebook's scale, meant for a GPU",
}


@dataclass(frozen=True)
class Spec:
    """What values a setting takes. ``kind``: ``"int"``, ``"float"``, ``"str"``, ``"ints"`` or
    ``"floats"`` (a non-empty list or tuple of them); ``low``/``high``: inclusive bounds (of
    each element); ``choices``: the allowed values; ``none``: None is a value of its own
    (not "the profile's value"); ``about``: what it means."""

    kind: str
    about: str
    low: float | None = None
    high: float | None = None
    choices: tuple | None = None
    none: bool = False

    def _scalar(self, name: str, value):
        number = self.kind in ("int", "float", "ints", "floats")
        if number and (isinstance(value, bool) or not isinstance(value, numbers.Real)):
            raise ValueError(f"{name} must be a number ({self.about}), got {value!r}")
        if self.kind in ("int", "ints"):
            if not float(value).is_integer():
                raise ValueError(f"{name} must be a whole number ({self.about}), got {value!r}")
            value = int(value)
        elif number:
            if not math.isfinite(value):
                raise ValueError(f"{name} must be finite ({self.about}), got {value!r}")
            value = float(value)
        if self.choices is not None and value not in self.choices:
            raise ValueError(
                f"{name} must be one of {', '.join(map(repr, self.choices))} ({self.about}), "
                f"got {value!r}"
            )
        if (self.low is not None and value < self.low) or (
            self.high is not None and value > self.high
        ):
            raise ValueError(f"{name} must be in {self._range()} ({self.about}), got {value!r}")
        return value

    def _range(self) -> str:
        lo = "-inf" if self.low is None else f"{self.low:g}"
        hi = "inf" if self.high is None else f"{self.high:g}"
        return f"[{lo}, {hi}]"

    def check(self, name: str, value):
        """``value`` in canonical form (ints, floats, tuples), or a ValueError naming ``name``."""
        if value is None:
            if self.none:
                return None
            raise ValueError(f"{name} needs a value ({self.about})")
        if self.kind in ("ints", "floats"):
            if isinstance(value, str) or not isinstance(value, (list, tuple)) or not value:
                raise ValueError(
                    f"{name} must be a non-empty list of numbers ({self.about}), got {value!r}"
                    " (with papermill, pass lists with -y, e.g. -y 'temperatures: [2, 4]')"
                )
            return tuple(self._scalar(f"each of {name}", v) for v in value)
        if self.kind == "str" and not isinstance(value, str):
            raise ValueError(f"{name} must be a string ({self.about}), got {value!r}")
        return self._scalar(name, value)


def _count(about, low=1):
    return Spec("int", about, low=low)


def _size(about):
    return Spec("int", about + "; a profile's None: all that remain", low=1, none=True)


SPECS: dict[str, Spec] = {
    "seed": Spec("int", "first random seed; the runs use seed, seed + 1, ...", low=0),
    "seeds": Spec("int", "how many seeds each student is trained with", low=1, high=100),
    "dataset": Spec(
        "str", "the dataset to load (a stand-in is announced if it is absent)", choices=DATASETS
    ),
    "epochs": _count("training epochs of each student"),
    "teacher_epochs": _count("training epochs of the teacher"),
    "control_epochs": _count("training epochs of the control teacher, on the students' images"),
    "hint_epochs": _count("epochs of the FitNets hint stage, out of the student's epochs"),
    "patience": _count("epochs without a better validation accuracy before a student stops"),
    "latency_repeats": _count("timed calls per latency figure of a shipped file"),
    "hinton_teacher_epochs": _count("training epochs of the 2x1200 teacher"),
    "hinton_student_epochs": _count("training epochs of each 2x800 student"),
    "batch_size": Spec("int", "images per training batch", low=1, high=65536),
    "lr": Spec("float", "Adam learning rate", low=1e-7, high=1.0),
    "teacher_lr": Spec("float", "the teacher's learning rate", low=1e-7, high=1.0),
    "hinton_lr": Spec("float", "learning rate of part 2's nets", low=1e-7, high=1.0),
    "temperature": Spec("float", "softmax temperature T of the soft term", low=1e-3, high=1e4),
    "hinton_temperature": Spec("float", "temperature of part 2's distillation", low=1e-3, high=1e4),
    "alpha": Spec("float", "weight of the soft term; the labels get 1 - alpha", low=0.0, high=1.0),
    "hinton_alpha": Spec("float", "weight of the soft term in part 2", low=0.0, high=1.0),
    "sweep_seeds": Spec(
        "int", "seeds per point of the sweep (on the validation split)", low=1, high=100
    ),
    "n_val": _count("validation images, split off the training set for model selection"),
    "n_teacher": _size("the teacher's training images"),
    "n_train": _size("the students' training images"),
    "n_transfer": _size("the student's training (transfer) images"),
    "cnn_n_train": _size("training images of part 1's CNNs"),
    "width": Spec("float", "channel multiplier of the networks", low=0.01, high=16.0),
    "cnn_width": Spec("float", "channel multiplier of part 1's CNNs", low=0.01, high=16.0),
    "teacher_width": Spec("float", "channel multiplier of the teacher", low=0.01, high=16.0),
    "student_width": Spec("float", "channel multiplier of the student", low=0.01, high=16.0),
    "member_dropout": Spec("float", "dropout rate of the ensemble's members", low=0.0, high=0.9),
    "hinton_dropout": Spec(
        "float", "dropout rate of the 2x1200 teacher's hidden units", low=0.0, high=0.9
    ),
    "hinton_input_dropout": Spec(
        "float", "dropout rate of the 2x1200 teacher's input pixels", low=0.0, high=0.9
    ),
    "members": Spec("int", "how many CNNs the ensemble averages", low=1, high=5),
    "member_fraction": Spec(
        "float",
        "share of part 1's images each member trains on, its own random subset",
        low=0.05,
        high=1.0,
    ),
    "student_dropout": Spec("float", "dropout rate of the single CNN", low=0.0, high=0.9),
    "student_hidden": Spec("ints", "hidden units of the student MLP, per layer", low=1),
    "teacher_growth": _count("growth rate k of the teacher DenseNet"),
    "student_growth": _count("growth rate k of the student DenseNet"),
    "blocks": Spec("ints", "dense layers per DenseNet block", low=1),
    "image_size": Spec(
        "int", "side of the images the DenseNets see (resized on the device)", low=8, high=1024
    ),
    "stem": Spec("str", "DenseNet stem", choices=("small", "imagenet")),
    "bn_momentum": Spec(
        "float", "the teacher's BatchNorm moving-average momentum", low=0.0, high=0.9999
    ),
    "student_bn_momentum": Spec(
        "float", "the students' BatchNorm moving-average momentum", low=0.0, high=0.9999
    ),
    "mixed_precision": Spec(
        "str",
        "dtype policy; auto: float16 on a GPU",
        choices=("auto", "off", "float16", "bfloat16"),
    ),
    "tensorboard": Spec("str", "a folder for TensorBoard logs, or None", none=True),
    "augment": Spec(
        "str", "the teacher's training augmentation", choices=("none", "jitter", "flip_crop")
    ),
    "teacher_optimizer": Spec("str", "the teacher's optimizer", choices=("adam", "adamw", "sgd")),
    "teacher_schedule": Spec(
        "str", "the teacher's learning-rate schedule", choices=("constant", "cosine")
    ),
    "schedule": Spec("str", "the students' learning-rate schedule", choices=("constant", "cosine")),
    "teacher_depths": Spec(
        "ints", "depths of the plain-CNN teachers (plane<depth>)", choices=(4, 6, 8, 10)
    ),
    "assistant_depth": Spec("int", "depth of the teacher assistant", choices=(4, 6, 8)),
    "weight_bits": Spec("int", "bits per weight of the quantized student", low=1, high=16),
    "activation_bits": Spec("int", "bits per activation of the quantized student", low=1, high=16),
}

# One entry per notebook. A plain value is shared by all profiles; P(...) differs by profile.
# The full profile is sized for about 30 minutes per notebook on one GPU; where a source
# notebook's scale does not fit, the comment says what was cut (docs/gpu.md has the timings).
NOTEBOOKS: dict[str, dict] = {
    "00_soft_targets_temperature": {
        "seed": 0,
        "seeds": P(1, 5, 5),
        "temperature": 4.0,
        "alpha": 0.9,
        "epochs": P(1, 15, 20),
        "batch_size": 64,
        "lr": 1e-3,
        "n_val": P(500, 5000, 5000),
        "n_teacher": P(2000, None, None),  # the teacher's training images
        "n_transfer": P(1000, 10000, None),  # the student's
        "teacher_width": P(0.25, 0.5, 1.0),
        "teacher_epochs": P(1, 3, 10),
        "control_epochs": P(1, 10, 20),  # the control teacher's, on the students' images
        "student_hidden": P((32,), (128,), (128,)),
    },
    "01_ensemble_distillation_mnist": {
        "seed": 0,
        "seeds": P(1, 5, 5),
        "n_val": P(500, 5000, 5000),
        "batch_size": 128,
        "schedule": "cosine",  # every network's learning rate, members and students alike
        # part 1: an ensemble of CNNs, distilled into one CNN
        "cnn_n_train": P(2000, 30000, None),
        "member_fraction": 0.5,  # each member's own random half: members that differ
        "cnn_width": P(0.25, 0.5, 1.0),
        "members": P(2, 5, 5),
        "epochs": P(1, 6, 20),
        "member_dropout": P(0.0, 0.0, 0.3),
        "student_dropout": P(0.0, 0.0, 0.3),
        "temperature": 3.0,
        "alpha": 0.5,
        # part 2: Hinton et al. section 3, 2x1200 teacher -> 2x800 student
        "n_train": P(2000, None, None),
        "hinton_temperature": 20.0,
        "hinton_alpha": P(0.5, 0.5, 0.9),  # full: chosen on the validation split against 0.5
        "hinton_lr": 1e-3,
        # the teacher's dropout: at smoke and cpu the recipe of the dropout paper Hinton et al.
        # cite (Hinton et al. 2012); full's chosen on the validation split against it
        "hinton_dropout": P(0.5, 0.5, 0.3),
        "hinton_input_dropout": P(0.2, 0.2, 0.0),
        # cpu: far from convergence, to fit the 20-minute box on 2 cores
        "hinton_teacher_epochs": P(1, 12, 200),
        "hinton_student_epochs": P(1, 3, 60),
    },
    "02_densenet_teacher_student_mnist": {
        # seeds 5, 6, ...: its effect and contrast were named before these seeds ran
        "seed": 5,
        "seeds": P(1, 5, 3),
        "temperature": 10.0,  # the DenseNet notebook's, where T² on or off matters most
        "alpha": P(0.5, 0.5, 0.9),
        "epochs": P(1, 8, 8),  # full: seed 001's 10, cut for time (see n_train)
        "schedule": "constant",  # the students' learning rate (exercise 5 decays it)
        "teacher_epochs": P(1, 2, 10),
        "batch_size": P(64, 64, 256),
        "lr": 1e-3,
        "n_val": P(500, 3000, 10000),
        "n_teacher": P(1000, 25000, None),  # the teacher's training images
        # the students' (full: 10,000 of seed 001's 50,000, so that its students fit one GPU
        # session)
        "n_train": P(1000, 4000, 10000),
        "image_size": P(28, 28, 112),
        "stem": P("small", "small", "imagenet"),
        "blocks": P((1, 1), (3, 3, 3), (6, 12, 24, 16)),
        "teacher_growth": P(4, 12, 32),
        "student_growth": P(2, 6, 12),
        # 0.99 (Keras's, seed 001's) averages about 100 steps, and lags the weights of a student
        # trained for a few hundred: at full the teacher gets 1,950 steps and keeps it
        "bn_momentum": P(0.9, 0.9, 0.99),
        "student_bn_momentum": 0.9,
        "mixed_precision": "auto",
        "tensorboard": None,
        "latency_repeats": P(2, 20, 20),
    },
    "03_fitnet_hints_cifar10": {
        "seed": 0,
        "seeds": P(1, 5, 3),
        "dataset": "cifar10",
        "temperature": 2.0,  # fixed before the runs, as alpha; exercise 1 sweeps them on validation
        "alpha": 0.5,
        "augment": P("none", "none", "flip_crop"),  # the teacher's
        "epochs": P(2, 13, 30),  # each student's budget, the hint stage's epochs included
        "hint_epochs": P(1, 3, 10),
        "patience": P(1, 4, 8),
        "batch_size": P(64, 64, 128),
        "lr": 1e-3,
        "n_val": P(500, 5000, 5000),
        "n_teacher": P(1000, None, None),  # the teacher's training images
        "n_train": P(1000, 3000, None),  # the students'
        "teacher_width": P(0.125, 0.25, 1.0),
        "teacher_epochs": P(1, 5, 40),
        "teacher_optimizer": P("adam", "adam", "sgd"),
        "teacher_lr": P(1e-3, 1e-3, 1e-2),
        "teacher_schedule": "cosine",
        "student_width": 1.0,
    },
    "04_teacher_assistant_cifar10": {
        "seed": 0,
        "seeds": P(1, 5, 3),
        "dataset": "cifar10",
        "temperature": 4.0,  # fixed before the runs, as alpha
        "alpha": 0.5,
        "teacher_depths": P((4, 6, 8), (4, 6, 8, 10), (4, 6, 8, 10)),
        "assistant_depth": 4,
        "teacher_epochs": P(1, 3, 20),
        "teacher_width": P(0.25, 0.5, 1.0),
        "n_teacher": P(1000, 20000, None),  # the teachers' and the assistants' training images
        "epochs": P(1, 8, 30),
        "batch_size": P(64, 64, 128),
        "lr": 1e-3,
        "n_val": P(500, 5000, 5000),
        "n_train": P(1000, 5000, None),  # the students' training images
        "width": P(0.25, 0.5, 1.0),  # the plane2 student's channel multiplier
    },
    "05_quantized_student_svhn": {
        # seeds 5, 6, ...: its effect and contrast were named before these seeds ran
        "seed": 5,
        "seeds": P(1, 5, 5),  # the bits family's
        "sweep_seeds": P(1, 3, 3),  # the losses family's, out of the same seeds
        "dataset": "svhn",
        "temperature": 4.0,
        "alpha": 0.9,
        "weight_bits": 2,  # Polino et al.'s lowest; the activations keep more
        "activation_bits": 4,
        "epochs": P(2, 45, 60),  # the most; each student stops when validation stops improving
        "patience": P(1, 4, 6),
        "teacher_epochs": P(1, 3, 20),
        "batch_size": P(64, 128, 128),
        "lr": 1e-3,
        "n_val": P(500, 2500, 5000),
        "n_teacher": P(1000, None, None),  # the teacher's training images
        "n_train": P(1000, 2000, None),  # the students'
        "teacher_width": P(0.25, 0.5, 1.0),
        "student_width": P(0.25, 0.25, 0.5),
        "latency_repeats": P(2, 20, 20),
    },
}

# The training-set sizes each notebook takes out of its dataset: (n_val, every n_* drawn from
# what remains). Checked against the dataset's size in get().
_SIZE_KNOBS = ("n_teacher", "n_train", "n_transfer", "cnn_n_train")


class Config(dict):
    """A notebook's resolved settings; keys are also attributes (``cfg.epochs``)."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __repr__(self) -> str:
        return " · ".join(f"{k}={v}" for k, v in self.items())


def _on_colab_gpu() -> bool:
    if "google.colab" not in sys.modules:
        return False
    from kdlib import device

    return bool(device.gpus())


def resolve(profile: str | None = None) -> str:
    """The profile to use: ``profile`` if given, else ``$KDLIB_PROFILE``, else ``"full"`` on a
    Colab GPU runtime, else ``"cpu"``."""
    name = profile or os.environ.get("KDLIB_PROFILE") or ("full" if _on_colab_gpu() else DEFAULT)
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; valid profiles: {', '.join(PROFILES)}")
    return name


def _check_sizes(notebook: str, cfg: dict) -> None:
    """Every training subset must fit in what the validation split leaves of the dataset (the
    MNIST notebooks have no ``dataset`` setting)."""
    dataset = cfg.get("dataset", "mnist")
    total = SIZES[dataset][0]
    n_val = cfg.get("n_val", 0)
    left = total - n_val
    if left < 1:
        raise ValueError(f"n_val={n_val} leaves no training image of {dataset}'s {total:,}")
    after = f" and n_val={n_val:,} leaves {left:,}" if n_val else ""
    for knob in _SIZE_KNOBS:
        n = cfg.get(knob)
        if n is not None and n > left:
            raise ValueError(
                f"{knob}={n:,} but {dataset} has {total:,} training images{after}: choose "
                f"{knob} <= {left:,} (or None for all of them)"
            )


def get(notebook: str, profile: str | None = None, **overrides) -> Config:
    """Settings of ``notebook`` at ``profile``, with every non-None override applied, each
    checked against its :class:`Spec` and the training sizes against the dataset.

    Unknown notebooks and settings are errors that list the valid names; a bad value is an error
    that names the setting and its valid range.
    """
    if notebook not in NOTEBOOKS:
        raise ValueError(f"unknown notebook {notebook!r}; valid: {', '.join(NOTEBOOKS)}")
    name = resolve(profile)
    knobs = NOTEBOOKS[notebook]
    unknown = sorted(set(overrides) - set(knobs))
    if unknown:
        raise ValueError(
            f"unknown setting(s) {', '.join(unknown)} for {notebook}; valid settings: "
            f"{', '.join(knobs)}"
        )
    cfg = Config(profile=name)
    for knob, value in knobs.items():
        value = overrides.get(knob) if overrides.get(knob) is not None else value
        value = getattr(value, name) if isinstance(value, P) else value
        cfg[knob] = SPECS[knob].check(knob, value)
    _check_sizes(notebook, cfg)
    if cfg.get("hint_epochs", 0) >= cfg.get("epochs", math.inf):
        raise ValueError(
            f"hint_epochs={cfg.hint_epochs} must be fewer than epochs={cfg.epochs}: the hint stage "
            "is part of the student's budget, and KD needs at least one epoch after it"
        )
    deeper = [d for d in cfg.get("teacher_depths", ()) if d > cfg.get("assistant_depth", 0)]
    if "assistant_depth" in cfg and len(deeper) < 2:
        raise ValueError(
            f"teacher_depths={cfg.teacher_depths} needs two depths above assistant_depth="
            f"{cfg.assistant_depth}: the assistant is tested under the largest teacher and the "
            "smallest one above it"
        )
    return cfg


def _papermill_names(namespace: dict) -> set[str]:
    """The names papermill's injected cell assigned in this kernel: IPython keeps every cell's
    source in ``In``, and papermill's starts with its ``# Parameters`` comment."""
    names = set()
    for source in namespace.get("In") or ():
        if isinstance(source, str) and source.startswith("# Parameters\n"):
            try:
                body = ast.parse(source).body
            except SyntaxError:
                continue
            for node in body:
                if isinstance(node, ast.Assign):
                    names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names


def from_cell(notebook: str, namespace: dict) -> Config:
    """:func:`get` with the ``profile`` and settings that the notebook's parameters cell (and
    papermill's injected cell, or Colab's form) left in ``namespace`` (pass ``globals()``).

    A papermill parameter that is not one of the notebook's settings (``-p epoch 3`` for
    ``epochs``) is refused like any unknown setting, before any work: papermill itself only
    logs a warning and runs the notebook at the profile's values."""
    missing = [k for k in ("profile", *NOTEBOOKS[notebook]) if k not in namespace]
    if missing:
        raise ValueError(f"the parameters cell of {notebook} does not define {', '.join(missing)}")
    names = (_papermill_names(namespace) | set(NOTEBOOKS[notebook])) - {"profile"}
    return get(notebook, namespace["profile"], **{k: namespace[k] for k in names})


def parameters_cell(notebook: str) -> str:
    """The source of ``notebook``'s parameters cell, made from its table: every setting, None
    by default, with Colab's ``# @param`` form annotations."""
    lines = [
        "# Parameters (papermill -p / -y, or Colab's form); None = the profile's value. Every",
        "# setting's value per profile and its meaning:",
        f'# kdlib.profiles.describe("{notebook}")',
        'profile = None  # @param [None, "smoke", "cpu", "full"] {type:"raw"}',
    ]
    for knob in NOTEBOOKS[notebook]:
        choices = SPECS[knob].choices
        if SPECS[knob].kind == "str" and choices:
            options = ", ".join(["None", *(f'"{c}"' for c in choices)])
            lines.append(f'{knob} = None  # @param [{options}] {{type:"raw"}}')
        else:
            lines.append(f'{knob} = None  # @param {{type:"raw"}}')
    return "\n".join(lines)


def describe(notebook: str):
    """A table of ``notebook``'s settings: value per profile and meaning."""
    from kdlib.results import Table

    rows = []
    for knob, value in NOTEBOOKS[notebook].items():
        values = value if isinstance(value, P) else P(value, value, value)
        rows.append(
            {"setting": knob, **dict(zip(PROFILES, map(str, values))), "meaning": SPECS[knob].about}
        )
    return Table(rows)


def banner(cfg: Config) -> None:
    """Print which profile runs and every setting, first thing in each notebook."""
    print(ABOUT[cfg.profile])
    print(f"settings: {cfg!r}")
