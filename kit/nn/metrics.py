"""Scores of predicted probabilities against labels: loss, accuracy, the confusion matrix and
what each class makes of it (the one place the kit computes them).

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


def per_class(matrix: np.ndarray) -> dict[str, dict[str, float]]:
    """Precision, recall (the class's accuracy), F1 and support of each class of a (10, 10)
    confusion matrix (rows true, columns predicted), keyed "0".."9", plus their "macro avg"
    (plain mean) and "weighted avg" (by support), as scikit-learn's classification_report
    reports them (0 where a class has no rows or no predictions)."""
    matrix = np.asarray(matrix, dtype=np.float64)
    hits, support, predicted = np.diag(matrix), matrix.sum(axis=1), matrix.sum(axis=0)
    precision = np.divide(hits, predicted, out=np.zeros_like(hits), where=predicted > 0)
    recall = np.divide(hits, support, out=np.zeros_like(hits), where=support > 0)
    both = precision + recall
    f1 = np.divide(2 * precision * recall, both, out=np.zeros_like(hits), where=both > 0)
    scores = np.stack([precision, recall, f1])
    out = {
        str(c): {"precision": p, "recall": r, "f1-score": f, "support": s}
        for c, (p, r, f, s) in enumerate(zip(precision, recall, f1, support))
    }
    weights = support / max(support.sum(), 1)
    for name, average in (("macro avg", scores.mean(axis=1)), ("weighted avg", scores @ weights)):
        out[name] = {
            "precision": average[0],
            "recall": average[1],
            "f1-score": average[2],
            "support": support.sum(),
        }
    return out
