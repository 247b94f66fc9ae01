"""Scores of predicted probabilities against labels: loss, accuracy, confusion matrix.

probs: (n, 10) float, each row a distribution; y: (n,) integer labels 0..9
"""

from __future__ import annotations

import numpy as np

from kit.core.mnist import N_CLASSES


def score(probs: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of probabilities (n, 10) against labels (n,)."""
    picked = probs[np.arange(len(y)), y]
    return float(-np.mean(np.log(np.maximum(picked, 1e-12)))), float(np.mean(probs.argmax(axis=1) == y))


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """(10, 10) counts: rows are true labels, columns predictions."""
    matrix = np.zeros((N_CLASSES, N_CLASSES), dtype=np.int64)
    np.add.at(matrix, (y_true.astype(np.int64), y_pred.astype(np.int64)), 1)
    return matrix


def validation_metrics(probs: np.ndarray, y: np.ndarray) -> dict:
    """Accuracy, loss, confusion matrix and per-class accuracy of probabilities (n, 10) against
    labels (n,)."""
    loss, accuracy = score(probs, y)
    matrix = confusion_matrix(y, probs.argmax(axis=1))
    return {
        "val_accuracy": accuracy,
        "val_loss": loss,
        "per_class_accuracy": (np.diag(matrix) / np.maximum(matrix.sum(axis=1), 1)).round(5).tolist(),
        "confusion_matrix": matrix.tolist(),
    }
