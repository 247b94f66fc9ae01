"""Softmax fused with cross-entropy.

Fusing the two keeps the output gradient simple and exact, (p - target) / batch, and the loss
numerically stable: log-softmax is computed from log-sum-exp after subtracting the row maximum,
so logits of +-1e4 give a finite loss and gradient.

The training step calls forward and backward once per batch, so both work in buffers kept
between calls of the same shape: the probabilities (which backward turns into the gradient in
place) and their row sums. The row maximum is read at the argmax, which the training loop
wants anyway as the prediction. The arrays returned (probabilities, gradient) are valid until
the next forward.
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
        self._shape: tuple[int, ...] | None = None
        self._dtype = None

    def _buffers(self, logits: np.ndarray) -> None:
        """(Re)allocate the per-batch buffers when the batch shape or dtype changes."""
        if logits.shape == self._shape and logits.dtype == self._dtype:
            return
        n, k = logits.shape
        self._shape, self._dtype = logits.shape, logits.dtype
        self._rows = np.arange(n)
        self._probs = np.empty((n, k), dtype=logits.dtype)
        self._sum_exp = np.empty((n, 1), dtype=logits.dtype)

    def forward(self, logits: np.ndarray, labels: np.ndarray, predicted: np.ndarray | None = None) -> float:
        """Mean loss; `predicted` (batch,) intp, when given, receives each row's argmax (the
        prediction), which the loss needs anyway: the row maximum is read at that position."""
        self._buffers(logits)
        n = logits.shape[0]
        shifted, sum_exp = self._probs, self._sum_exp
        arg = logits.argmax(axis=1)
        if predicted is not None:
            predicted[...] = arg
        # the value at the first maximum is the maximum (and NaN if the row has one, as max gives)
        row_max = logits[self._rows, arg]
        np.subtract(logits, row_max[:, None], out=shifted)
        # log p = shifted - log_sum_exp; only the pieces the loss needs are formed
        picked = shifted[self._rows, labels]
        if self.label_smoothing:
            mean_shifted = shifted.mean(axis=1)
        np.exp(shifted, out=shifted)
        np.add.reduce(shifted, axis=1, keepdims=True, out=sum_exp)
        log_sum_exp = np.log(sum_exp[:, 0])
        if self.label_smoothing:
            eps = self.label_smoothing
            nll = log_sum_exp - picked
            loss = (1 - eps) * nll - eps * (mean_shifted - log_sum_exp)
        else:
            loss = np.subtract(log_sum_exp, picked, out=log_sum_exp)
        shifted /= sum_exp  # the buffer now holds the probabilities
        self._labels = labels
        total = np.add.reduce(loss)
        return float(total.dtype.type(total / np.intp(n)))  # exactly as loss.mean() rounds

    def backward(self, rows: int | None = None) -> np.ndarray:
        """(p - target) / batch, computed in place over the cached probabilities. `rows`
        divides instead of the batch's own rows: the gradient of the mean over a larger batch
        this one is a part of (kit.nn.replicas)."""
        grad, labels = self._probs, self._labels
        n, k = grad.shape
        eps = self.label_smoothing
        if eps:
            grad -= eps / k
        grad[self._rows, labels] -= 1 - eps
        grad /= rows or n
        return grad
