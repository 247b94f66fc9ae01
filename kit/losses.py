"""Softmax fused with cross-entropy.

Fusing the two keeps the output gradient simple and exact, (p - target) / batch, and the loss
numerically stable: log-softmax is computed from log-sum-exp after subtracting the row maximum,
so logits of +-1e4 give a finite loss and gradient.
"""

from __future__ import annotations

import numpy as np


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of (batch, classes) logits, stable for large magnitudes."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    np.exp(shifted, out=shifted)
    shifted /= shifted.sum(axis=1, keepdims=True)
    return shifted


class SoftmaxCrossEntropy:
    """Mean cross-entropy of softmax(logits) against integer labels, optionally label-smoothed.

    forward(logits (batch, classes), labels (batch,) ints) -> scalar loss
    backward() -> d loss / d logits, (batch, classes)
    """

    def __init__(self, label_smoothing: float = 0.0) -> None:
        self.label_smoothing = label_smoothing

    def forward(self, logits: np.ndarray, labels: np.ndarray) -> float:
        n, k = logits.shape
        rows = np.arange(n)
        shifted = logits - logits.max(axis=1, keepdims=True)
        exp = np.exp(shifted)
        sum_exp = exp.sum(axis=1, keepdims=True)
        log_sum_exp = np.log(sum_exp)
        # log p = shifted - log_sum_exp; only the pieces the loss needs are formed
        nll = log_sum_exp[:, 0] - shifted[rows, labels]
        if self.label_smoothing:
            mean_log_p = shifted.mean(axis=1) - log_sum_exp[:, 0]
            eps = self.label_smoothing
            loss = (1 - eps) * nll - eps * mean_log_p
        else:
            loss = nll
        exp /= sum_exp  # exp now holds the probabilities
        self._probs, self._labels = exp, labels
        return float(loss.mean())

    @property
    def probabilities(self) -> np.ndarray:
        """Softmax of the last forward's logits, (batch, classes)."""
        return self._probs

    def backward(self) -> np.ndarray:
        """(p - target) / batch, computed in place over the cached probabilities."""
        grad, labels = self._probs, self._labels
        n, k = grad.shape
        eps = self.label_smoothing
        if eps:
            grad -= eps / k
        grad[np.arange(n), labels] -= 1 - eps
        grad /= n
        return grad
