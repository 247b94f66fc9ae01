"""Softmax cross-entropy: value against a naive formula, gradient against finite differences,
label smoothing, and stability for huge logits."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kit.nn.losses import SoftmaxCrossEntropy, softmax

EPS = 1e-6


def naive_loss(logits: np.ndarray, labels: np.ndarray, smoothing: float = 0.0) -> float:
    """Mean over rows of -sum(target * log p), straight from the definitions (modest logits only)."""
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    k = logits.shape[1]
    target = np.full(logits.shape, smoothing / k)
    target[np.arange(len(labels)), labels] += 1 - smoothing
    return float(np.mean(-(target * np.log(p)).sum(axis=1)))


def numeric_grad(loss_fn: SoftmaxCrossEntropy, logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    grad = np.zeros_like(logits)
    for idx in np.ndindex(logits.shape):
        z = logits.copy()
        z[idx] += EPS
        up = loss_fn.forward(z, labels)
        z[idx] -= 2 * EPS
        down = loss_fn.forward(z, labels)
        grad[idx] = (up - down) / (2 * EPS)
    return grad


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.3])
def test_value_matches_naive_formula(smoothing):
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((6, 10)) * 3
    labels = rng.integers(0, 10, 6)
    loss = SoftmaxCrossEntropy(smoothing).forward(logits, labels)
    assert loss == pytest.approx(naive_loss(logits, labels, smoothing), rel=1e-12)


def test_no_smoothing_is_minus_log_p_of_the_label():
    rng = np.random.default_rng(1)
    logits = rng.uniform(-5, 5, (4, 10))
    labels = np.array([0, 9, 3, 3])
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    expected = -np.mean(np.log(p[np.arange(4), labels]))
    assert SoftmaxCrossEntropy().forward(logits, labels) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_gradient_matches_finite_differences(smoothing):
    rng = np.random.default_rng(2)
    logits = rng.standard_normal((5, 10)) * 2
    labels = rng.integers(0, 10, 5)
    loss_fn = SoftmaxCrossEntropy(smoothing)
    loss_fn.forward(logits, labels)
    analytic = loss_fn.backward().copy()
    numeric = numeric_grad(loss_fn, logits, labels)
    np.testing.assert_allclose(analytic, numeric, atol=1e-8)
    # every row of (p - target) / n sums to zero
    np.testing.assert_allclose(analytic.sum(axis=1), 0, atol=1e-12)


def test_all_zero_logits_give_ln_10():
    labels = np.arange(10) % 10
    for smoothing in (0.0, 0.2):
        loss = SoftmaxCrossEntropy(smoothing).forward(np.zeros((10, 10), dtype=np.float32), labels)
        assert loss == pytest.approx(math.log(10), rel=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_huge_logits_stay_finite(dtype, smoothing):
    logits = np.array(
        [[1e4, -1e4, 0, 0, 0, 0, 0, 0, 0, 0], [-1e4, 1e4, 5e3, 0, 0, 0, 0, 0, 0, -1e4]], dtype=dtype
    )
    labels = np.array([1, 1])
    loss_fn = SoftmaxCrossEntropy(smoothing)
    with np.errstate(
        over="raise", invalid="raise", divide="raise", under="ignore"
    ):  # exp(-2e4) may underflow to 0
        loss = loss_fn.forward(logits, labels)
        grad = loss_fn.backward()
    assert np.isfinite(loss)
    assert np.all(np.isfinite(grad))
    if not smoothing:
        # row 0 is wrong by 2e4, row 1 right with certainty: mean loss 1e4
        assert loss == pytest.approx(1e4, rel=1e-6)
        np.testing.assert_allclose(grad[0, [0, 1]], [0.5, -0.5], atol=1e-6)
        np.testing.assert_allclose(grad[1], 0, atol=1e-6)


def test_softmax_and_the_gradient_it_gives():
    """softmax is exp / sum(exp); backward is (softmax - one_hot) / batch from the same numbers."""
    rng = np.random.default_rng(3)
    logits = rng.standard_normal((4, 10))
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(softmax(logits), expected, rtol=1e-12)
    loss_fn = SoftmaxCrossEntropy()
    loss_fn.forward(logits, np.zeros(4, dtype=int))
    np.testing.assert_allclose(loss_fn.backward(), (expected - np.eye(10)[[0, 0, 0, 0]]) / 4, rtol=1e-12)
    np.testing.assert_allclose(softmax(np.array([[1e4, 0.0]])), [[1.0, 0.0]])


def test_loss_hands_out_the_predictions_it_computes():
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((7, 10)).astype(np.float32)
    labels = rng.integers(0, 10, 7)
    predicted = np.full(7, -1, dtype=np.intp)
    loss_fn = SoftmaxCrossEntropy()
    with_out = loss_fn.forward(logits, labels, predicted)
    np.testing.assert_array_equal(predicted, logits.argmax(axis=1))
    assert with_out == SoftmaxCrossEntropy().forward(logits, labels)
    # a NaN logit still gives a NaN loss (the divergence check relies on it)
    logits[2, 4] = np.nan
    with np.errstate(invalid="ignore"):
        assert np.isnan(loss_fn.forward(logits, labels))
