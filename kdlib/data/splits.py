"""The course's splits of a loaded dataset: a stratified validation set for model selection, a
stratified training subset of the profile's size, and the untouched test set (NumPy only)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from kdlib.data.files import Dataset


def _count(n, what: str, low: int, high: int) -> int:
    """``n`` as an int in ``low..high``, or a ValueError that names ``what`` and the range."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise ValueError(f"{what} must be a whole number of samples, got {n!r}")
    if not low <= n <= high:
        raise ValueError(f"{what} must be in {low}..{high}, got {n}")
    return int(n)


def _stratified_indices(y: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` indices of ``y`` with every class in proportion to its frequency (largest
    remainder rounding), in random order."""
    y = np.asarray(y).reshape(-1)
    n = _count(n, "n", 1, len(y))
    classes, counts = np.unique(y, return_counts=True)
    exact = counts * n / len(y)
    quota = np.floor(exact).astype(int)
    quota[np.argsort(quota - exact)[: n - quota.sum()]] += 1
    chosen = [rng.choice(np.flatnonzero(y == c), q, replace=False) for c, q in zip(classes, quota)]
    return rng.permutation(np.concatenate(chosen))


def subset(x: np.ndarray, y: np.ndarray, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A stratified random subset of ``n`` samples (the profiles' smaller training sets)."""
    idx = _stratified_indices(y, n, np.random.default_rng(seed))
    return x[idx], y[idx]


def split_validation(x: np.ndarray, y: np.ndarray, n: int, seed: int = 0):
    """Split off a stratified validation set of ``n`` samples for model selection, so that the
    test set is never used to choose anything. At least one training sample must remain.
    Returns ``(x_train, y_train), (x_val, y_val)``."""
    n = _count(n, "the validation size", 1, len(y) - 1)
    rng = np.random.default_rng(seed)
    val = _stratified_indices(y, n, rng)
    keep = np.ones(len(y), dtype=bool)
    keep[val] = False
    train = rng.permutation(np.flatnonzero(keep))
    return (x[train], y[train]), (x[val], y[val])


class Splits(NamedTuple):
    """``train``, ``val`` and ``test`` as ``(x, y)`` pairs, and the dataset they came from."""

    train: tuple[np.ndarray, np.ndarray]
    val: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray]
    dataset: Dataset

    def describe(self) -> str:
        return (
            f"train {len(self.train[1]):,} · validation {len(self.val[1]):,} · "
            f"test {len(self.test[1]):,}"
        )


def splits(dataset: Dataset, n_val: int, n_train: int | None = None, seed: int = 0) -> Splits:
    """The course's standard splits of a loaded dataset: a stratified validation set of
    ``n_val`` images taken out of the training set (for model selection), then a stratified
    subset of ``n_train`` of the remaining training images (all of them if None); the test set
    untouched. The same arguments always give the same splits. Asking for more training images
    than remain is an error, not a silently smaller set."""
    (x, y), test = dataset
    n_val = _count(n_val, "n_val", 1, len(y) - 1)
    train, val = split_validation(x, y, n_val, seed=seed)
    if n_train is not None:
        left = len(train[1])
        if n_train != left:
            what = (
                f"n_train (only {left:,} of {dataset.name}'s {len(y):,} training images remain "
                f"after n_val={n_val:,})"
            )
            train = subset(*train, _count(n_train, what, 1, left), seed=seed)
    return Splits(train, val, test, dataset)
