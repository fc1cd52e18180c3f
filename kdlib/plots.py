"""Matplotlib figures the notebooks and slides share. Each function returns a ``Figure``:
Jupyter shows it once (as a cell's value), ``fig.savefig`` writes it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure


def _figure(width: float, height: float) -> Figure:
    """A new figure that pyplot does not keep open: Jupyter displays it only when a cell returns
    it (creating it through pyplot is what lets Jupyter's inline backend display figures)."""
    fig = plt.figure(figsize=(width, height), layout="constrained")
    plt.close(fig)
    return fig


def soft_targets(logits: Sequence[float], temperatures: Sequence[float], class_names=None) -> Figure:
    """Bars of ``softmax(logits / T)`` for each temperature: how T softens the targets."""
    z = np.asarray(logits, dtype=np.float64)
    names = list(class_names) if class_names is not None else [str(i) for i in range(len(z))]
    fig = _figure(8, 3.2)
    ax = fig.subplots()
    width = 0.8 / len(temperatures)
    for i, t in enumerate(temperatures):
        p = np.exp((z - z.max()) / t)
        ax.bar(np.arange(len(z)) + (i - (len(temperatures) - 1) / 2) * width, p / p.sum(), width, label=f"T = {t:g}")
    ax.set_xticks(np.arange(len(z)), names)
    ax.set_ylabel("probability")
    ax.set_title("softmax(z / T) for the same logits z")
    ax.legend(ncols=min(len(temperatures), 6), fontsize="small")
    return fig


def curves(histories: Mapping[str, Mapping[str, Sequence[float]]], metric: str = "val_accuracy") -> Figure:
    """``metric`` per epoch for several runs (``histories`` maps a label to a Keras-style
    history dict), one line each."""
    fig = _figure(6, 3.5)
    ax = fig.subplots()
    for label, history in histories.items():
        values = history[metric]
        ax.plot(np.arange(1, len(values) + 1), values, marker="o", markersize=3, label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric.replace("_", " "))
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return fig


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
        means = [np.mean(points[x]) for x in xs]
        stds = [np.std(points[x]) for x in xs]
        ax.errorbar(xs, means, yerr=stds, marker="o", capsize=3, label=label)
    for label, values in (baselines or {}).items():
        m, s = np.mean(values), np.std(values)
        line = ax.axhline(m, linestyle="--", linewidth=1, color="gray", label=label)
        ax.axhspan(m - s, m + s, color=line.get_color(), alpha=0.15)
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return fig


def accuracy_vs_size(
    points: Mapping[str, tuple[float, Sequence[float]]],
    xlabel: str = "model size (MB)",
    baselines: Mapping[str, Sequence[float]] | None = None,
) -> Figure:
    """Each model as a point (size, mean accuracy) with a std error bar and its label;
    ``baselines`` as in :func:`sweep` (horizontal mean +- std bands)."""
    fig = _figure(6, 3.8)
    ax = fig.subplots()
    for label, (size, values) in points.items():
        ax.errorbar([size], [np.mean(values)], yerr=[np.std(values)], marker="o", capsize=3)
        ax.annotate(label, (size, np.mean(values)), textcoords="offset points", xytext=(5, 5), fontsize="small")
    for label, values in (baselines or {}).items():
        m, s = np.mean(values), np.std(values)
        ax.axhline(m, linestyle="--", linewidth=1, color="gray", label=label)
        ax.axhspan(m - s, m + s, color="gray", alpha=0.15)
    if baselines:
        ax.legend(fontsize="small")
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test accuracy")
    ax.grid(alpha=0.3)
    return fig
