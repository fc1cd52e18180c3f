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


# One entry per notebook. A plain value is shared by all profiles; P(...) differs by profile.
NOTEBOOKS: dict[str, dict] = {}


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
