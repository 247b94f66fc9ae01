"""Layers: every gradient (input and parameters) against central finite differences in float64,
plus the behaviours a gradient check cannot see (dropout scaling, batch-norm running statistics,
initialisation, max-pool ties, convolution against a naive loop)."""

from __future__ import annotations

import numpy as np
import pytest

from kit import layers as L

F64 = np.float64
EPS = 1e-5
TOL = 1e-7  # relative to the largest gradient entry (float64 central differences: ~1e-10 is typical)


# --------------------------------------------------------------------------- the checker


def run_chain(chain: list[L.Layer], x: np.ndarray, before=None) -> np.ndarray:
    """Forward a copy of x through the layers in training mode; return a copy of the output.

    `before` runs first on every call (e.g. to reseed dropout so every evaluation draws the
    same mask). Copies matter: layers work in place on their inputs and reuse output buffers.
    """
    if before:
        before()
    h = x.copy()
    for layer in chain:
        h = layer.forward(h, True)
    return np.array(h, copy=True)


def objective(chain, x, r, before=None) -> float:
    return float(np.sum(run_chain(chain, x, before) * r))


def numeric_grad(f, array: np.ndarray) -> np.ndarray:
    """Central differences of the scalar f() with respect to every entry of `array` (changed in place)."""
    grad = np.zeros_like(array)
    flat, gflat = array.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + EPS
        up = f()
        flat[i] = old - EPS
        down = f()
        flat[i] = old
        gflat[i] = (up - down) / (2 * EPS)
    return grad


def assert_close(analytic: np.ndarray, numeric: np.ndarray, what: str, zero_ok: bool = False) -> None:
    assert analytic.shape == numeric.shape, what
    scale = max(1.0, float(np.abs(numeric).max()))
    err = float(np.abs(analytic - numeric).max()) / scale
    assert err < TOL, f"{what}: relative error {err:.2e}"
    if not zero_ok:
        assert np.abs(numeric).max() > 1e-3, f"{what}: the check saw no gradient at all"


def check_gradients(chain: list[L.Layer], x: np.ndarray, seed: int = 0, before=None, input_grad: bool = True,
                    zero_ok: frozenset = frozenset()):
    """Compare backward's input gradient and every parameter gradient of every layer in the
    chain with finite differences of sum(forward(x) * R) for a fixed random R. `zero_ok` names
    (layer index, parameter) pairs whose gradient is legitimately zero."""
    rng = np.random.default_rng(seed)
    out = run_chain(chain, x, before)
    r = rng.standard_normal(out.shape)
    # analytic: one forward, then backward
    run_chain(chain, x, before)
    grad = r.copy()
    for layer in reversed(chain):
        grad = layer.backward(grad)
        if grad is None:
            break
    analytic_in = None if grad is None else np.array(grad, copy=True)
    analytic_params = {(i, k): g.copy() for i, layer in enumerate(chain) for k, g in layer.grads.items()}

    f = lambda: objective(chain, x, r, before)  # noqa: E731
    if input_grad:
        assert analytic_in is not None, "backward returned None where an input gradient was expected"
        x = x.copy()
        f = lambda: objective(chain, x, r, before)  # noqa: E731
        assert_close(analytic_in, numeric_grad(f, x), "input gradient")
    for (i, name), g in analytic_params.items():
        assert_close(g, numeric_grad(f, chain[i].params[name]), f"layer {i} ({type(chain[i]).__name__}) {name}",
                     zero_ok=(i, name) in zero_ok)
    return analytic_in


def away_from_zero(rng, shape, margin=0.05) -> np.ndarray:
    """Normal values with |v| >= margin, so no kink (ReLU) lies within a finite-difference step."""
    v = rng.standard_normal(shape)
    return np.where(np.abs(v) < margin, np.sign(v + 1e-12) * margin * 2, v)


def distinct(rng, shape, spacing=0.01) -> np.ndarray:
    """Values all at least `spacing` apart (no max-pool near-ties within a step)."""
    n = int(np.prod(shape))
    return (rng.permutation(n) * spacing - n * spacing / 2).reshape(shape).astype(F64)


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


@pytest.mark.parametrize("make", [L.ReLU, lambda: L.LeakyReLU(0.1), L.Tanh, L.Sigmoid], ids=["relu", "leaky", "tanh", "sigmoid"])
def test_activation_gradients(make):
    rng = np.random.default_rng(3)
    check_gradients([make()], away_from_zero(rng, (4, 6)))


def test_activation_values():
    x = np.array([[-2.0, -0.5, 0.0, 0.5, 3.0]])
    np.testing.assert_allclose(L.ReLU().forward(x.copy(), True), [[0, 0, 0, 0.5, 3]])
    np.testing.assert_allclose(L.LeakyReLU(0.1).forward(x.copy(), True), [[-0.2, -0.05, 0, 0.5, 3]])
    np.testing.assert_allclose(L.Tanh().forward(x.copy(), True), np.tanh(x))
    np.testing.assert_allclose(L.Sigmoid().forward(x.copy(), True), 1 / (1 + np.exp(-x)))


def test_activations_registry_complete():
    assert set(L.ACTIVATIONS) == {"relu", "leaky_relu", "tanh", "sigmoid"}


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
    check_gradients([layer], rng.standard_normal((2, 3, 3, 4)) * 2 - 1)


@pytest.mark.parametrize("shape", [(64, 5), (8, 5, 4, 3)])
def test_batchnorm_training_normalises_per_channel(shape):
    rng = np.random.default_rng(8)
    x = rng.standard_normal(shape) * 3 + 2
    layer = L.BatchNorm(5, dtype=F64)
    out = layer.forward(x, True)
    axes = (0,) if len(shape) == 2 else (0, 2, 3)
    np.testing.assert_allclose(out.mean(axis=axes), 0, atol=1e-12)
    np.testing.assert_allclose(out.var(axis=axes), x.var(axis=axes) / (x.var(axis=axes) + 1e-5), rtol=1e-10)
    # running statistics: momentum 0.1 from (0, 1), unbiased variance
    count = x.size // 5
    np.testing.assert_allclose(layer.buffers["running_mean"], 0.1 * x.mean(axis=axes))
    np.testing.assert_allclose(layer.buffers["running_var"], 0.9 + 0.1 * x.var(axis=axes) * count / (count - 1))


@pytest.mark.parametrize("shape", [(7, 3), (2, 3, 4, 4)])
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
    bshape = (1, 3) if len(shape) == 2 else (1, 3, 1, 1)
    expected = (x - mean.reshape(bshape)) / np.sqrt(var.reshape(bshape) + 1e-5) * gamma.reshape(bshape) + beta.reshape(bshape)
    np.testing.assert_allclose(layer.forward(x, False), expected, rtol=1e-12)
    # evaluation does not touch the running statistics
    np.testing.assert_array_equal(layer.buffers["running_mean"], mean)
    np.testing.assert_array_equal(layer.buffers["running_var"], var)


def test_batchnorm_float32_on_conv_sized_input_is_accurate():
    rng = np.random.default_rng(10)
    x = (rng.standard_normal((32, 8, 14, 14)) * 3 + 5).astype(np.float32)
    layer = L.BatchNorm(8)
    out = layer.forward(x, True)
    assert out.dtype == np.float32
    x64 = x.astype(F64)
    ref = (x64 - x64.mean(axis=(0, 2, 3), keepdims=True)) / np.sqrt(x64.var(axis=(0, 2, 3), keepdims=True) + 1e-5)
    np.testing.assert_allclose(out, ref, atol=2e-5)


# --------------------------------------------------------------------------- shape layers


def test_flatten_and_reshape_gradients():
    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 3, 2, 2))
    check_gradients([L.Flatten(), L.Dense(12, 3, rng, dtype=F64)], x)
    check_gradients([L.Reshape((2, 3)), L.Flatten()], rng.standard_normal((4, 6)))
    assert L.Reshape((1, 28, 28)).forward(np.zeros((5, 784)), True).shape == (5, 1, 28, 28)
    assert L.Flatten().forward(np.zeros((5, 2, 3, 4)), True).shape == (5, 24)


# --------------------------------------------------------------------------- convolution


def naive_conv(x, w, b, padding):
    n, c, h, wd = x.shape
    c_out, _, k, _ = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    h_out, w_out = h + 2 * padding - k + 1, wd + 2 * padding - k + 1
    out = np.zeros((n, c_out, h_out, w_out))
    for i in range(h_out):
        for j in range(w_out):
            patch = xp[:, :, i:i + k, j:j + k]
            out[:, :, i, j] = np.tensordot(patch, w, axes=([1, 2, 3], [1, 2, 3])) + b
    return out


@pytest.mark.parametrize("padding,kernel", [(0, 3), (1, 3), (2, 3), (1, 2), (0, 1)])
def test_conv_matches_naive_loop(padding, kernel):
    rng = np.random.default_rng(12)
    layer = L.Conv2D(3, 4, kernel, rng, padding=padding, dtype=F64)
    layer.params["b"][...] = rng.standard_normal(4)
    x = rng.standard_normal((2, 3, 6, 5))
    expected = naive_conv(x, layer.params["w"], layer.params["b"], padding)
    np.testing.assert_allclose(layer.forward(x, True), expected, atol=1e-12)
    # evaluation in small chunks gives the same
    layer.eval_chunk_elements = 1
    np.testing.assert_allclose(layer.forward(x, False), expected, atol=1e-12)


@pytest.mark.parametrize("padding", [0, 1, 2])
def test_conv_gradients(padding):
    rng = np.random.default_rng(13 + padding)
    layer = L.Conv2D(2, 3, 3, rng, padding=padding, dtype=F64)
    layer.params["b"][...] = rng.standard_normal(3)
    check_gradients([layer], rng.standard_normal((2, 2, 5, 6)))


def test_conv_even_kernel_gradients():
    rng = np.random.default_rng(16)
    layer = L.Conv2D(2, 2, 2, rng, padding=1, dtype=F64)
    check_gradients([layer], rng.standard_normal((2, 2, 4, 3)))


def test_conv_without_input_gradient():
    rng = np.random.default_rng(17)
    layer = L.Conv2D(1, 3, 3, rng, padding=1, input_grad=False, dtype=F64)
    x = rng.standard_normal((2, 1, 5, 5))
    layer.forward(x, True)
    assert layer.backward(np.ones((2, 3, 5, 5))) is None
    check_gradients([layer], x, input_grad=False)


def test_conv_float32_matches_float64():
    rng = np.random.default_rng(18)
    layer32 = L.Conv2D(4, 5, 3, np.random.default_rng(0), padding=1)
    layer64 = L.Conv2D(4, 5, 3, np.random.default_rng(0), padding=1, dtype=F64)
    x = rng.standard_normal((3, 4, 7, 7))
    out32 = layer32.forward(x.astype(np.float32), True)
    assert out32.dtype == np.float32
    np.testing.assert_allclose(out32, layer64.forward(x, True), atol=1e-4)
    g = rng.standard_normal(out32.shape)
    np.testing.assert_allclose(layer32.backward(g.astype(np.float32)), layer64.backward(g), atol=1e-4)
    np.testing.assert_allclose(layer32.grads["w"], layer64.grads["w"], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("pool, padding, shape, input_grad", [
    (2, 1, (3, 2, 6, 6), True), (2, 0, (2, 2, 7, 8), True), (3, 1, (2, 3, 7, 5), True), (2, 1, (2, 1, 6, 6), False)])
def test_conv_with_pool_is_conv_then_maxpool(pool, padding, shape, input_grad):
    """The fused pooling: the same outputs and gradients (weights, bias, input) as the two layers,
    in float64 to the last bit's neighbourhood, ties included (a blank image region gives every
    position of a window the same value, the bias)."""
    rng = np.random.default_rng(21)
    c_in = shape[1]
    fused = L.Conv2D(c_in, 4, 3, np.random.default_rng(0), padding=padding, input_grad=input_grad, pool=pool, dtype=F64)
    plain = L.Conv2D(c_in, 4, 3, np.random.default_rng(0), padding=padding, input_grad=input_grad, dtype=F64)
    fused.params["b"][...] = plain.params["b"][...] = rng.standard_normal(4)
    x = rng.standard_normal(shape)
    x[0] = 0.0  # a blank image: four-way ties in every window
    pooling = L.MaxPool2D(pool)
    expected = pooling.forward(plain.forward(x, True), True)
    out = fused.forward(x, True)
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-12)
    g = rng.standard_normal(out.shape)
    grad_fused = fused.backward(g)
    grad_plain = plain.backward(pooling.backward(g))
    for name in ("w", "b"):
        np.testing.assert_allclose(fused.grads[name], plain.grads[name], rtol=0, atol=1e-12)
    if input_grad:
        np.testing.assert_allclose(grad_fused, grad_plain, rtol=0, atol=1e-12)
    else:
        assert grad_fused is None
    fused.eval_chunk_elements = 1  # evaluation, one image per chunk
    np.testing.assert_allclose(fused.forward(x, False), expected, rtol=0, atol=1e-12)


def test_conv_with_pool_gradients():
    rng = np.random.default_rng(22)
    layer = L.Conv2D(2, 3, 3, rng, padding=1, pool=2, dtype=F64)
    layer.params["b"][...] = rng.standard_normal(3)
    check_gradients([layer], rng.standard_normal((2, 2, 6, 5)))


# --------------------------------------------------------------------------- max pooling


@pytest.mark.parametrize("size,shape", [(2, (2, 3, 4, 6)), (2, (1, 2, 5, 7)), (3, (2, 2, 6, 7))])
def test_maxpool_gradients(size, shape):
    rng = np.random.default_rng(19)
    x = distinct(rng, shape)
    check_gradients([L.MaxPool2D(size)], x)


def test_maxpool_values_and_cropping():
    rng = np.random.default_rng(20)
    x = rng.standard_normal((2, 3, 5, 7))
    layer = L.MaxPool2D(2)
    out = layer.forward(x, True)
    assert out.shape == (2, 3, 2, 3)
    np.testing.assert_array_equal(out, x[:, :, :4, :6].reshape(2, 3, 2, 2, 3, 2).max(axis=(3, 5)))
    g = layer.backward(np.ones(out.shape))
    assert g.shape == x.shape
    assert np.all(g[:, :, 4, :] == 0) and np.all(g[:, :, :, 6] == 0)
    # one position per window receives the gradient, the window's maximum
    assert g.sum() == out.size
    assert np.array_equal(g[:, :, :4, :6] == 1, x[:, :, :4, :6] == np.repeat(np.repeat(out, 2, 2), 2, 3))


def test_maxpool_ties_route_to_one_position():
    layer = L.MaxPool2D(2)
    x = np.zeros((1, 2, 2, 4))
    x[0, 1] = 5.0
    layer.forward(x, True)
    g = layer.backward(np.array([[[[1.0, 2.0]], [[3.0, 4.0]]]]))
    # every window is a four-way tie: exactly one position gets the whole gradient
    windows = g.reshape(1, 2, 1, 2, 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(2, 2, 4)
    assert np.all(np.count_nonzero(windows, axis=-1) == 1)
    np.testing.assert_array_equal(windows.sum(axis=-1), [[1, 2], [3, 4]])


# --------------------------------------------------------------------------- a whole small network


def test_cnn_chain_gradients():
    """The kit's CNN block order, end to end in float64: in-place layers and reused buffers
    must not corrupt what another layer keeps for backward."""
    rng = np.random.default_rng(21)
    chain = [
        L.Reshape((1, 6, 6)),
        L.Conv2D(1, 2, 3, rng, padding=1, dtype=F64),
        L.BatchNorm(2, dtype=F64),
        L.ReLU(),
        L.MaxPool2D(2),
        L.Conv2D(2, 3, 3, rng, padding=1, dtype=F64),
        L.LeakyReLU(0.1),
        L.Flatten(),
        L.Dense(27, 4, rng, dtype=F64),
        L.Tanh(),
        L.Dropout(0.25, rng),
        L.Dense(4, 3, rng, dtype=F64),
    ]

    def reseed():
        chain[10].rng = np.random.default_rng(3)

    # a bias right before batch norm is cancelled by the mean: its gradient is zero
    check_gradients(chain, rng.standard_normal((3, 36)), before=reseed, zero_ok=frozenset({(1, "b")}))


# --------------------------------------------------------------------------- initialisation


def test_he_initialisation_dense():
    layer = L.Dense(1000, 400, np.random.default_rng(0))
    w = layer.params["w"]
    assert w.dtype == np.float32 and w.shape == (1000, 400)
    expected = np.sqrt(2 / 1000)
    assert abs(float(w.std()) / expected - 1) < 0.02
    assert abs(float(w.mean())) < 0.01 * expected
    assert np.all(layer.params["b"] == 0)


def test_he_initialisation_conv():
    layer = L.Conv2D(32, 64, 3, np.random.default_rng(0), padding=1)
    w = layer.params["w"]
    assert w.dtype == np.float32 and w.shape == (64, 32, 3, 3)
    expected = np.sqrt(2 / (32 * 9))
    assert abs(float(w.std()) / expected - 1) < 0.02
    assert abs(float(w.mean())) < 0.02 * expected
    assert np.all(layer.params["b"] == 0)
    assert set(layer.params) == {"w", "b"}  # "w" is what gets weight decay


# --------------------------------------------------------------------------- issue 12: fast paths


def test_batchnorm_large_mean_falls_back_to_centred_variance():
    """|mean| >> std: the one-pass variance would cancel; the layer recomputes it from x - mean."""
    rng = np.random.default_rng(30)
    x = (rng.standard_normal((16, 4, 6, 6)) * 0.5 + 1000).astype(np.float32)
    layer = L.BatchNorm(4)
    out = layer.forward(x, True)
    x64 = x.astype(F64)
    ref = (x64 - x64.mean(axis=(0, 2, 3), keepdims=True)) / np.sqrt(x64.var(axis=(0, 2, 3), keepdims=True) + 1e-5)
    np.testing.assert_allclose(out, ref, atol=1e-3)
    layer64 = L.BatchNorm(3, dtype=F64)
    layer64.params["gamma"][...] = rng.uniform(0.5, 1.5, 3)
    check_gradients([layer64], rng.standard_normal((2, 3, 3, 4)) + 500)


def test_pooling_before_activation_matches_activation_before_pooling():
    """build_network pools before the activation: same outputs and input gradients."""
    rng = np.random.default_rng(31)
    x = distinct(rng, (2, 3, 6, 8))
    g = rng.standard_normal((2, 3, 3, 4))
    for act in (L.ReLU, lambda: L.LeakyReLU(0.1), L.Tanh, L.Sigmoid):
        results = []
        for chain in ([act(), L.MaxPool2D(2)], [L.MaxPool2D(2), act()]):
            h = x.copy()
            for layer in chain:
                h = layer.forward(h, True)
            out = h.copy()
            grad = g.copy()
            for layer in reversed(chain):
                grad = layer.backward(grad)
            results.append((out, grad.copy()))
        np.testing.assert_allclose(results[0][0], results[1][0], atol=1e-12)
        np.testing.assert_allclose(results[0][1], results[1][1], atol=1e-12)
