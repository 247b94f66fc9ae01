"""Which rows a run trains on and which it is scored on, and pixels as the network takes them.

A run's train/validation split is the first thing its random generator draws, so the run's
seed alone gives it again: training (kit.run.train), `make validate`, the report, the export's
int8 calibration and the bench all take it from run_split, and no copy of it exists elsewhere.
"""

from __future__ import annotations

import os

import numpy as np

from kit.core.errors import KitError
from kit.core.mnist import N_CLASSES


def to_float(x: np.ndarray) -> np.ndarray:
    """uint8 pixels (n, 784) -> float32 in [0, 1], converted once for the whole set."""
    out = np.empty(x.shape, dtype=np.float32)
    np.multiply(x, np.float32(1.0 / 255.0), out=out)
    return out


def stratified_split(
    y: np.ndarray, val_fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train_idx, val_idx), each sorted, of a stratified split of labels y (n,).

    Each class gives round-down of its exact share of the validation rows, and the rows left
    over go to the classes with the largest remainders (ties broken by `rng`), as scikit-learn's
    StratifiedShuffleSplit allocates them: every class's validation count is within one row of
    its exact share. Written with NumPy rather than imported from scikit-learn because
    importing sklearn.model_selection alone takes over a second, longer than a cached start
    of `make train` is allowed to take; tests/test_data.py checks it against scikit-learn."""
    indices = np.arange(len(y))
    if val_fraction <= 0:
        return indices, indices[:0]
    n_val = int(round(len(y) * val_fraction))
    counts = np.bincount(y, minlength=N_CLASSES)
    present = counts[counts > 0]
    if n_val < len(present) or len(y) - n_val < len(present) or present.min() < 2:
        raise KitError(
            f"validation fraction {val_fraction} leaves too few rows per class for a stratified split "
            f"({len(y)} rows, smallest class {present.min()}); use more data or VAL_FRACTION=0"
        )
    exact = counts * (n_val / len(y))
    quota = np.floor(exact).astype(np.int64)
    left_over = n_val - int(quota.sum())
    by_remainder = np.lexsort((rng.random(len(counts)), -(exact - quota)))
    quota[by_remainder[:left_over]] += 1
    quota = np.clip(
        quota, np.minimum(counts, 1), np.maximum(counts - 1, 0)
    )  # a row of each class on both sides
    val_parts = [rng.permutation(np.flatnonzero(y == label))[: quota[label]] for label in range(len(counts))]
    val_idx = np.sort(np.concatenate(val_parts))
    in_val = np.zeros(len(y), dtype=bool)
    in_val[val_idx] = True
    return indices[~in_val], val_idx


def run_split(
    y: np.ndarray, val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.random.Generator]:
    """(train_idx, val_idx, the run's generator after the split) for labels y (n,): the split a
    run with this seed and VAL_FRACTION draws. Training goes on drawing from the generator;
    everyone else only wants the indices."""
    rng = np.random.default_rng(seed)
    train_idx, val_idx = stratified_split(np.asarray(y, dtype=np.int64), val_fraction, rng)
    return train_idx, val_idx, rng


def split_rows(x: np.ndarray, y: np.ndarray, val_fraction: float, seed: int):
    """train.csv's rows (x uint8 (n, 784), y (n,)) split as run_split says -> (x_train, y_train,
    x_val, y_val, rng): x float32 in [0, 1], y int64. The same rows whether they come from the
    file or arrive scattered on a Dask worker (kit.sweep.dask_cluster)."""
    train_idx, val_idx, rng = run_split(y, val_fraction, seed)
    y = np.asarray(y, dtype=np.int64)
    # converted after the split, so the float32 rows exist once (a float copy of all rows
    # and then of each part would hold them twice)
    return to_float(x[train_idx]), y[train_idx], to_float(x[val_idx]), y[val_idx], rng


def class_counts(y: np.ndarray) -> np.ndarray:
    return np.bincount(y, minlength=N_CLASSES)


def require_two_classes(y: np.ndarray, path: str | os.PathLike) -> None:
    """Refuse labels y (n,) with fewer than two distinct classes, as scikit-learn's classifiers
    do: a model trained on them can only ever predict that one label."""
    present = np.flatnonzero(np.bincount(y, minlength=N_CLASSES))
    if len(present) < 2:
        raise KitError(
            f"{path}: every row has label {present[0]}; training needs at least two classes "
            "in the label column (use the full train.csv)"
        )
