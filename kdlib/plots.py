"""Matplotlib figures the notebooks and slides share. Each function returns a ``Figure``:
Jupyter shows it once (as a cell's value), ``fig.savefig`` writes it. Spreads over seeds are
the sample standard deviation, as in the tables (``kdlib.results.mean_std``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import LogLocator, MaxNLocator, NullFormatter, ScalarFormatter


def _figure(width: float, height: float) -> Figure:
    """A new figure that pyplot does not keep open: Jupyter displays it only when a cell returns
    it (creating it through pyplot is what lets Jupyter's inline backend display figures)."""
    fig = plt.figure(figsize=(width, height), layout="constrained")
    plt.close(fig)
    return fig


def _spread(values) -> float:
    values = np.asarray(values, dtype=float)
    return float(values.std(ddof=1)) if values.size > 1 else 0.0


def soft_targets(
    logits: Sequence[float], temperatures: Sequence[float], class_names=None
) -> Figure:
    """Bars of ``softmax(logits / T)`` for each temperature: how T softens the targets."""
    z = np.asarray(logits, dtype=np.float64)
    names = list(class_names) if class_names is not None else [str(i) for i in range(len(z))]
    fig = _figure(8, 3.2)
    ax = fig.subplots()
    width = 0.8 / len(temperatures)
    for i, t in enumerate(temperatures):
        p = np.exp((z - z.max()) / t)
        ax.bar(
            np.arange(len(z)) + (i - (len(temperatures) - 1) / 2) * width,
            p / p.sum(),
            width,
            label=f"T = {t:g}",
        )
    ax.set_xticks(np.arange(len(z)), names)
    ax.set_xlabel("class")
    ax.set_ylabel("probability")
    ax.set_title("softmax(z / T) for the same logits z")
    ax.legend(ncols=min(len(temperatures), 6), fontsize="small")
    return fig


def curves(
    histories: Mapping[str, Mapping | Sequence[Mapping]],
    metric: str = "val_accuracy",
    ylabel: str | None = None,
) -> Figure:
    """``metric`` per epoch for several runs, one line each: ``histories`` maps a label to a
    Keras-style history dict, or to a list of them (one per seed), drawn as the mean with a
    band from the lowest to the highest seed. Runs that stopped early (``patience``) count at
    the epochs they ran."""
    fig = _figure(6, 3.5)
    ax = fig.subplots()
    for label, runs in histories.items():
        runs = [runs] if isinstance(runs, Mapping) else list(runs)
        longest = max(len(run[metric]) for run in runs)
        values = np.full((len(runs), longest), np.nan)
        for row, run in zip(values, runs):
            row[: len(run[metric])] = run[metric]
        epochs = np.arange(1, longest + 1)
        line = ax.plot(
            epochs,
            np.nanmean(values, axis=0),
            marker="o",
            markersize=3,
            label=label + (f" ({len(runs)} seeds)" if len(runs) > 1 else ""),
        )
        if len(runs) > 1:
            ax.fill_between(
                epochs,
                np.nanmin(values, axis=0),
                np.nanmax(values, axis=0),
                color=line[0].get_color(),
                alpha=0.15,
            )
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel or metric.replace("_", " "))
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return fig


def _log_axis(axis) -> None:
    """A log axis labelled with plain numbers and few enough ticks not to overlap."""
    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(ScalarFormatter())
    axis.set_minor_formatter(NullFormatter())


def sweep(
    results: Mapping[str, Mapping[float, Sequence[float]]],
    xlabel: str,
    ylabel: str = "test accuracy",
    logx: bool = False,
    baselines: Mapping[str, Sequence[float]] | None = None,
) -> Figure:
    """Mean +- std (error bars over seeds) of ``ylabel`` against a swept parameter.

    ``results`` maps a line's label to ``{x: [value per seed, ...]}``; ``baselines`` maps a
    label to per-seed values drawn as a horizontal band (mean +- std), e.g. the student alone.
    """
    fig = _figure(6.5, 3.8)
    ax = fig.subplots()
    for label, points in results.items():
        xs = sorted(points)
        ax.errorbar(
            xs,
            [np.mean(points[x]) for x in xs],
            yerr=[_spread(points[x]) for x in xs],
            marker="o",
            capsize=3,
            label=label,
        )
    for label, values in (baselines or {}).items():
        m, s = np.mean(values), _spread(values)
        line = ax.axhline(m, linestyle="--", linewidth=1, color="gray", label=label)
        ax.axhspan(m - s, m + s, color=line.get_color(), alpha=0.15)
    if logx:
        ax.set_xscale("log")
        _log_axis(ax.xaxis)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return fig


def accuracy_vs_size(
    points: Mapping[str, tuple[float, Sequence[float]]],
    xlabel: str = "model size (MB)",
    ylabel: str = "test accuracy",
    baselines: Mapping[str, Sequence[float]] | None = None,
) -> Figure:
    """Each model as a point (size, mean accuracy) with a std error bar and its label;
    ``baselines`` as in :func:`sweep` (horizontal mean +- std bands)."""
    fig = _figure(6.5, 3.8)
    ax = fig.subplots()
    for label, (size, values) in points.items():
        ax.errorbar([size], [np.mean(values)], yerr=[_spread(values)], marker="o", capsize=3)
        ax.annotate(
            label,
            (size, np.mean(values)),
            textcoords="offset points",
            xytext=(5, 5),
            fontsize="small",
        )
    for label, values in (baselines or {}).items():
        m, s = np.mean(values), _spread(values)
        ax.axhline(m, linestyle="--", linewidth=1, color="gray", label=label)
        ax.axhspan(m - s, m + s, color="gray", alpha=0.15)
    if baselines:
        ax.legend(fontsize="small")
    ax.set_xscale("log")
    _log_axis(ax.xaxis)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    return fig
