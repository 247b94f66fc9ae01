"""Layers: every gradient (input and parameters) against central finite differences in float64,
plus the behaviours a gradient check cannot see (dropout scaling, batch-norm running statistics,
initialisation, max-pool ties, convolution against a naive loop)."""

from __future__ import annotations

import numpy as np
import pytest

from gradcheck import F64, away_from_zero, check_gradients
from kit.nn import layers as L

# --------------------------------------------------------------------------- dense and activations


def test_dense_gradients():
    rng = np.random.default_rng(1)
    layer = L.Dense(5, 4, rng, input_grad=True, dtype=F64)
    layer.params["b"][...] = rng.standard_normal(4)
    check_gradients([layer], rng.standard_normal((3, 5)))


def test_dense_without_input_gradient_returns_none_but_fills_params():
    rng = np.random.default_rng(2)
    layer = L.Dense(5, 4, rng, input_grad=False, dtype=F64)
    x = rng.standard_normal((3, 5))
    layer.forward(x, True)
    assert layer.backward(np.ones((3, 4))) is None
    np.testing.assert_allclose(layer.grads["b"], np.full(4, 3.0))
    np.testing.assert_allclose(layer.grads["w"], x.T @ np.ones((3, 4)))
    check_gradients([layer], x, input_grad=False)


@pytest.mark.parametrize(
    "make", [L.ReLU, lambda: L.LeakyReLU(0.1), L.Tanh, L.Sigmoid], ids=["relu", "leaky", "tanh", "sigmoid"]
)
def test_activation_gradients(make):
    rng = np.random.default_rng(3)
    check_gradients([make()], away_from_zero(rng, (4, 6)))


def test_activation_values():
    x = np.array([[-2.0, -0.5, 0.0, 0.5, 3.0]])
    np.testing.assert_allclose(L.ReLU().forward(x.copy(), True), [[0, 0, 0, 0.5, 3]])
    np.testing.assert_allclose(L.LeakyReLU(0.1).forward(x.copy(), True), [[-0.2, -0.05, 0, 0.5, 3]])
    np.testing.assert_allclose(L.Tanh().forward(x.copy(), True), np.tanh(x))
    np.testing.assert_allclose(L.Sigmoid().forward(x.copy(), True), 1 / (1 + np.exp(-x)))


def test_the_config_offers_every_registered_activation():
    """A new activation is one class and one registry line: ACTIVATION= then offers it."""
    from kit.config import choices

    assert choices("activation") == tuple(L.ACTIVATIONS)
    assert all(issubclass(kind, L.Layer) for kind in L.ACTIVATIONS.values())


# --------------------------------------------------------------------------- dropout


def test_dropout_gradient_uses_the_forward_mask():
    rng = np.random.default_rng(4)
    layer = L.Dropout(0.4, np.random.default_rng(0))

    def reseed():
        layer.rng = np.random.default_rng(99)

    x = rng.standard_normal((5, 8))
    grad = check_gradients([layer], x, before=reseed)
    # and the mask is really there: some inputs get no gradient, the rest 1 / (1 - rate)
    reseed()
    out = layer.forward(x.copy(), True).copy()
    g = layer.backward(np.ones_like(x)).copy()
    assert np.any(g == 0) and np.any(g != 0)
    np.testing.assert_allclose(g[g != 0], 1 / 0.6)
    np.testing.assert_allclose(out, x * g)
    assert grad is not None


def test_dropout_after_tanh_keeps_tanh_gradient_right():
    """Dropout must not overwrite the output a Tanh / Sigmoid before it keeps for backward."""
    rng = np.random.default_rng(5)
    for act in (L.Tanh, L.Sigmoid):
        chain = [L.Dense(4, 6, rng, dtype=F64), act(), L.Dropout(0.5, rng), L.Dense(6, 3, rng, dtype=F64)]

        def reseed(chain=chain):
            chain[2].rng = np.random.default_rng(7)

        check_gradients(chain, rng.standard_normal((3, 4)), before=reseed)


def test_dropout_is_identity_in_evaluation():
    layer = L.Dropout(0.5, np.random.default_rng(0))
    x = np.random.default_rng(1).standard_normal((10, 10))
    np.testing.assert_array_equal(layer.forward(x.copy(), False), x)
    g = np.ones_like(x)
    np.testing.assert_array_equal(layer.backward(g.copy()), g)


def test_dropout_keeps_the_expected_mean():
    rate = 0.3
    layer = L.Dropout(rate, np.random.default_rng(0))
    x = np.ones((400, 500), dtype=np.float32)
    out = layer.forward(x, True)
    assert abs(float(np.mean(out == 0)) - rate) < 0.01
    assert abs(float(out.mean()) - 1.0) < 0.01
    np.testing.assert_allclose(out[out != 0], 1 / (1 - rate), rtol=1e-6)


# --------------------------------------------------------------------------- batch norm


def test_batchnorm_2d_gradients():
    rng = np.random.default_rng(6)
    layer = L.BatchNorm(4, dtype=F64)
    layer.params["gamma"][...] = rng.uniform(0.5, 1.5, 4)
    layer.params["beta"][...] = rng.standard_normal(4)
    check_gradients([layer], rng.standard_normal((6, 4)) * 2 + 1)


def test_batchnorm_4d_gradients():
    rng = np.random.default_rng(7)
    layer = L.BatchNorm(3, dtype=F64)
    layer.params["gamma"][...] = rng.uniform(0.5, 1.5, 3)
    layer.params["beta"][...] = rng.standard_normal(3)
    check_gradients([layer], rng.standard_normal((3, 4, 2, 3)) * 2 - 1)  # images: (h, w, batch, channels)


@pytest.mark.parametrize("shape", [(64, 5), (4, 3, 8, 5)])
def test_batchnorm_training_normalises_per_channel(shape):
    rng = np.random.default_rng(8)
    x = rng.standard_normal(shape) * 3 + 2
    layer = L.BatchNorm(5, dtype=F64)
    out = layer.forward(x, True)
    axes = tuple(range(len(shape) - 1))
    np.testing.assert_allclose(out.mean(axis=axes), 0, atol=1e-12)
    np.testing.assert_allclose(out.var(axis=axes), x.var(axis=axes) / (x.var(axis=axes) + 1e-5), rtol=1e-10)
    # running statistics: momentum 0.1 from (0, 1), unbiased variance
    count = x.size // 5
    np.testing.assert_allclose(layer.buffers["running_mean"], 0.1 * x.mean(axis=axes))
    np.testing.assert_allclose(
        layer.buffers["running_var"], 0.9 + 0.1 * x.var(axis=axes) * count / (count - 1)
    )


@pytest.mark.parametrize("shape", [(7, 3), (4, 4, 2, 3)])
def test_batchnorm_evaluation_uses_running_statistics(shape):
    rng = np.random.default_rng(9)
    layer = L.BatchNorm(3, dtype=F64)
    mean, var = np.array([0.5, -1.0, 2.0]), np.array([4.0, 0.25, 1.0])
    gamma, beta = np.array([1.5, 0.5, -1.0]), np.array([0.1, 0.2, 0.3])
    layer.buffers["running_mean"][...] = mean
    layer.buffers["running_var"][...] = var
    layer.params["gamma"][...] = gamma
    layer.params["beta"][...] = beta
    x = rng.standard_normal(shape)
    bshape = (1,) * (len(shape) - 1) + (3,)
    expected = (x - mean.reshape(bshape)) / np.sqrt(var.reshape(bshape) + 1e-5) * gamma.reshape(
        bshape
    ) + beta.reshape(bshape)
    np.testing.assert_allclose(layer.forward(x, False), expected, rtol=1e-12)
    # evaluation does not touch the running statistics
    np.testing.assert_array_equal(layer.buffers["running_mean"], mean)
    np.testing.assert_array_equal(layer.buffers["running_var"], var)


def test_batchnorm_float32_on_conv_sized_input_is_accurate():
    rng = np.random.default_rng(10)
    x = (rng.standard_normal((14, 14, 32, 8)) * 3 + 5).astype(np.float32)
    layer = L.BatchNorm(8)
    out = layer.forward(x, True)
    assert out.dtype == np.float32
    x64 = x.astype(F64)
    ref = (x64 - x64.mean(axis=(0, 1, 2), keepdims=True)) / np.sqrt(
        x64.var(axis=(0, 1, 2), keepdims=True) + 1e-5
    )
    np.testing.assert_allclose(out, ref, atol=2e-5)


# --------------------------------------------------------------------------- initialisation


def test_he_initialisation_dense():
    layer = L.Dense(1000, 400, np.random.default_rng(0))
    w = layer.params["w"]
    assert w.dtype == np.float32 and w.shape == (1000, 400)
    expected = np.sqrt(2 / 1000)
    assert abs(float(w.std()) / expected - 1) < 0.02
    assert abs(float(w.mean())) < 0.01 * expected
    assert np.all(layer.params["b"] == 0)


# --------------------------------------------------------------------------- issue 12: fast paths


def test_batchnorm_large_mean_falls_back_to_centred_variance():
    """|mean| >> std: the one-pass variance would cancel; the layer recomputes it from x - mean."""
    rng = np.random.default_rng(30)
    x = (rng.standard_normal((6, 6, 16, 4)) * 0.5 + 1000).astype(np.float32)
    layer = L.BatchNorm(4)
    out = layer.forward(x, True)
    x64 = x.astype(F64)
    ref = (x64 - x64.mean(axis=(0, 1, 2), keepdims=True)) / np.sqrt(
        x64.var(axis=(0, 1, 2), keepdims=True) + 1e-5
    )
    np.testing.assert_allclose(out, ref, atol=1e-3)
    layer64 = L.BatchNorm(3, dtype=F64)
    layer64.params["gamma"][...] = rng.uniform(0.5, 1.5, 3)
    check_gradients([layer64], rng.standard_normal((3, 4, 2, 3)) + 500)
