"""kit/nn/metrics.py: the one confusion matrix and what each class makes of it, against
scikit-learn's own computations of the same numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import classification_report
from sklearn.metrics import confusion_matrix as sk_confusion_matrix

from kit.nn.metrics import confusion_matrix, per_class, score, validation_metrics


def test_confusion_matrix_and_per_class_scores_are_scikit_learns():
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 10, 500)
    y_pred = np.where(rng.random(500) < 0.7, y_true, rng.integers(0, 10, 500))
    y_pred[y_pred == 3] = 4  # a class never predicted: precision 0, as scikit-learn's zero_division=0
    matrix = confusion_matrix(y_true, y_pred)
    np.testing.assert_array_equal(matrix, sk_confusion_matrix(y_true, y_pred, labels=range(10)))
    ours = per_class(matrix)
    theirs = classification_report(y_true, y_pred, labels=range(10), output_dict=True, zero_division=0)
    for name in [str(c) for c in range(10)] + ["macro avg", "weighted avg"]:
        for key in ("precision", "recall", "f1-score", "support"):
            assert ours[name][key] == pytest.approx(theirs[name][key]), (name, key)
    assert ours["3"]["precision"] == 0 and ours["3"]["recall"] == 0


def test_score_and_validation_metrics_of_known_probabilities():
    probs = np.array([[0.9, 0.1] + [0.0] * 8, [0.2, 0.8] + [0.0] * 8, [0.6, 0.4] + [0.0] * 8])
    y = np.array([0, 1, 1])
    loss, accuracy = score(probs, y)
    assert accuracy == pytest.approx(2 / 3)
    assert loss == pytest.approx(-(math.log(0.9) + math.log(0.8) + math.log(0.4)) / 3)
    metrics = validation_metrics(probs, y)
    assert metrics["per_class_accuracy"][:2] == [1.0, 0.5] and metrics["confusion_matrix"][1][:2] == [1, 1]
