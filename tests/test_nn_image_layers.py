"""Image layers: every gradient against central differences in float64, both ways of computing
a convolution (Winograd and im2col) against a naive loop and against each other, the fused
pooling against convolution-then-MaxPool2D, max-pool ties, and the image layout's round trip.

The references are written in the usual (batch, channels, h, w) order; `images` and `nchw`
convert to and from the layers' (h, w, batch, channels)."""

from __future__ import annotations

import numpy as np
import pytest

from gradcheck import F64, check_gradients, distinct
from kit.nn import image_layers as I
from kit.nn import layers as L
from kit.nn.conv import Conv2D


def images(x_nchw: np.ndarray) -> np.ndarray:
    """(batch, c, h, w) -> the layers' (h, w, batch, c), contiguous."""
    return np.ascontiguousarray(x_nchw.transpose(2, 3, 0, 1))


def nchw(x: np.ndarray) -> np.ndarray:
    """The layers' (h, w, batch, c) -> (batch, c, h, w)."""
    return x.transpose(2, 3, 0, 1)


@pytest.fixture(params=[True, False], ids=["winograd", "im2col"])
def conv_way(request, monkeypatch):
    """Run a test with Conv2D's Winograd path allowed (it takes the 3x3, padding 1 layers with
    more than one input channel) and with im2col everywhere."""
    monkeypatch.setattr(Conv2D, "use_winograd", request.param)
    return request.param


# --------------------------------------------------------------------------- shape layers


def test_reshape_and_flatten_round_trip_in_channel_height_width_order():
    rng = np.random.default_rng(11)
    rows = rng.standard_normal((4, 2 * 3 * 5))
    x = I.Reshape((2, 3, 5)).forward(rows, True)
    assert x.shape == (3, 5, 4, 2)
    np.testing.assert_array_equal(nchw(x), rows.reshape(4, 2, 3, 5))
    np.testing.assert_array_equal(I.Flatten().forward(x, True), rows)
    check_gradients([I.Reshape((2, 3, 5)), I.Flatten(), L.Dense(30, 3, rng, dtype=F64)], rows)
    assert I.Reshape((1, 28, 28)).forward(np.zeros((5, 784)), True).shape == (28, 28, 5, 1)
    with pytest.raises(ValueError, match="channels, height, width"):
        I.Reshape((2, 3))


# --------------------------------------------------------------------------- convolution


def naive_conv(x, w, b, padding):
    n, c, h, wd = x.shape
    c_out, _, k, _ = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    h_out, w_out = h + 2 * padding - k + 1, wd + 2 * padding - k + 1
    out = np.zeros((n, c_out, h_out, w_out))
    for i in range(h_out):
        for j in range(w_out):
            patch = xp[:, :, i : i + k, j : j + k]
            out[:, :, i, j] = np.tensordot(patch, w, axes=([1, 2, 3], [1, 2, 3])) + b
    return out


def naive_pool(y, s):
    n, c, h, w = y.shape
    hq, wq = h // s, w // s
    return y[:, :, : hq * s, : wq * s].reshape(n, c, hq, s, wq, s).max(axis=(3, 5))


@pytest.mark.parametrize(
    "padding,kernel,pool,c_in,side",
    [
        (0, 3, 1, 3, (6, 5)),
        (1, 3, 1, 3, (6, 5)),
        (2, 3, 1, 3, (6, 5)),
        (1, 2, 1, 3, (6, 5)),
        (0, 1, 1, 3, (6, 5)),
        (1, 3, 2, 3, (6, 6)),
        (1, 3, 2, 3, (7, 5)),
        (1, 3, 1, 3, (7, 7)),
        (1, 3, 2, 1, (7, 6)),
        (1, 3, 3, 2, (8, 7)),
    ],
)
def test_conv_matches_naive_loop(conv_way, padding, kernel, pool, c_in, side):
    rng = np.random.default_rng(12)
    layer = Conv2D(c_in, 4, kernel, rng, padding=padding, pool=pool, dtype=F64)
    layer.params["b"][...] = rng.standard_normal(4)
    x = rng.standard_normal((2, c_in) + side)
    expected = naive_pool(naive_conv(x, layer.params["w"], layer.params["b"], padding), pool)
    np.testing.assert_allclose(nchw(layer.forward(images(x), True)), expected, atol=1e-12)
    # evaluation in small chunks gives the same
    layer.eval_chunk_elements = 1
    np.testing.assert_allclose(nchw(layer.forward(images(x), False)), expected, atol=1e-12)


def test_winograd_takes_the_3x3_padding_1_layers_with_several_input_channels():
    rng = np.random.default_rng(0)
    assert Conv2D(2, 4, 3, rng, padding=1, pool=2)._winograd()
    assert Conv2D(32, 64, 3, rng, padding=1)._winograd()
    assert not Conv2D(1, 32, 3, rng, padding=1, pool=2)._winograd()  # one input channel: a K = 1 product
    assert not Conv2D(2, 4, 3, rng, padding=0)._winograd()
    assert not Conv2D(2, 4, 5, rng, padding=1)._winograd()
    assert not Conv2D(2, 4, 3, rng, padding=1, pool=3)._winograd()


@pytest.mark.parametrize("padding", [0, 1, 2])
def test_conv_gradients(conv_way, padding):
    rng = np.random.default_rng(13 + padding)
    layer = Conv2D(2, 3, 3, rng, padding=padding, dtype=F64)
    layer.params["b"][...] = rng.standard_normal(3)
    check_gradients([layer], images(rng.standard_normal((2, 2, 5, 6))))


@pytest.mark.parametrize("shape", [(2, 2, 6, 5), (2, 3, 7, 7), (1, 2, 4, 8)])
def test_conv_with_pool_gradients(conv_way, shape):
    rng = np.random.default_rng(22)
    layer = Conv2D(shape[1], 3, 3, rng, padding=1, pool=2, dtype=F64)
    layer.params["b"][...] = rng.standard_normal(3)
    check_gradients([layer], images(rng.standard_normal(shape)))


def test_conv_even_kernel_gradients():
    rng = np.random.default_rng(16)
    layer = Conv2D(2, 2, 2, rng, padding=1, dtype=F64)
    check_gradients([layer], images(rng.standard_normal((2, 2, 4, 3))))


@pytest.mark.parametrize("pool", [1, 2])
def test_conv_without_input_gradient(pool):
    rng = np.random.default_rng(17)
    layer = Conv2D(1, 3, 3, rng, padding=1, input_grad=False, pool=pool, dtype=F64)
    x = images(rng.standard_normal((2, 1, 5, 5)))
    out = layer.forward(x, True)
    assert layer.backward(np.ones(out.shape)) is None
    check_gradients([layer], x, input_grad=False)


def test_conv_float32_matches_float64(conv_way):
    rng = np.random.default_rng(18)
    for pool in (1, 2):
        layer32 = Conv2D(4, 5, 3, np.random.default_rng(0), padding=1, pool=pool)
        layer64 = Conv2D(4, 5, 3, np.random.default_rng(0), padding=1, pool=pool, dtype=F64)
        x = images(rng.standard_normal((3, 4, 7, 7)))
        out32 = layer32.forward(x.astype(np.float32), True)
        assert out32.dtype == np.float32
        np.testing.assert_allclose(out32, layer64.forward(x, True), atol=1e-4)
        g = rng.standard_normal(out32.shape)
        np.testing.assert_allclose(layer32.backward(g.astype(np.float32)), layer64.backward(g), atol=1e-4)
        np.testing.assert_allclose(layer32.grads["w"], layer64.grads["w"], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "pool, padding, shape, input_grad",
    [
        (2, 1, (3, 2, 6, 6), True),
        (2, 0, (2, 2, 7, 8), True),
        (3, 1, (2, 3, 7, 5), True),
        (2, 1, (2, 1, 6, 6), False),
        (2, 1, (2, 4, 7, 7), True),
    ],
)
def test_conv_with_pool_is_conv_then_maxpool(conv_way, pool, padding, shape, input_grad):
    """The fused pooling: the same outputs and gradients (weights, bias, input) as the two layers,
    in float64 to the last bit's neighbourhood, ties included (a blank image region gives every
    position of a window the same value, the bias)."""
    rng = np.random.default_rng(21)
    c_in = shape[1]
    fused = Conv2D(
        c_in, 4, 3, np.random.default_rng(0), padding=padding, input_grad=input_grad, pool=pool, dtype=F64
    )
    plain = Conv2D(c_in, 4, 3, np.random.default_rng(0), padding=padding, input_grad=input_grad, dtype=F64)
    fused.params["b"][...] = plain.params["b"][...] = rng.standard_normal(4)
    x = rng.standard_normal(shape)
    x[0] = 0.0  # a blank image: four-way ties in every window
    x = images(x)
    pooling = I.MaxPool2D(pool)
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


def test_winograd_and_im2col_agree_in_float32_at_the_best_presets_shapes(monkeypatch):
    """The two ways at a real block's size (32 -> 64 channels, 14 x 14, pooled): outputs and
    every gradient within float32 rounding of each other."""
    rng = np.random.default_rng(5)
    x = images(rng.standard_normal((8, 32, 14, 14)).astype(np.float32))
    results = []
    for way in (True, False):
        monkeypatch.setattr(Conv2D, "use_winograd", way)
        layer = Conv2D(32, 64, 3, np.random.default_rng(1), padding=1, pool=2)
        out = layer.forward(x, True).copy()
        grad_in = layer.backward(
            np.random.default_rng(2).standard_normal(out.shape).astype(np.float32)
        ).copy()
        results.append((out, grad_in, layer.grads["w"].copy(), layer.grads["b"].copy()))
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-4 * float(np.abs(b).max()))


def test_he_initialisation_conv():
    layer = Conv2D(32, 64, 3, np.random.default_rng(0), padding=1)
    w = layer.params["w"]
    assert w.dtype == np.float32 and w.shape == (64, 32, 3, 3)
    expected = np.sqrt(2 / (32 * 9))
    assert abs(float(w.std()) / expected - 1) < 0.02
    assert abs(float(w.mean())) < 0.02 * expected
    assert np.all(layer.params["b"] == 0)
    assert set(layer.params) == {"w", "b"}  # "w" is what gets weight decay


# --------------------------------------------------------------------------- max pooling


@pytest.mark.parametrize("size,shape", [(2, (2, 3, 4, 6)), (2, (1, 2, 5, 7)), (3, (2, 2, 6, 7))])
def test_maxpool_gradients(size, shape):
    rng = np.random.default_rng(19)
    check_gradients([I.MaxPool2D(size)], images(distinct(rng, shape)))


def test_maxpool_values_and_cropping():
    rng = np.random.default_rng(20)
    x = rng.standard_normal((2, 3, 5, 7))
    layer = I.MaxPool2D(2)
    out = nchw(layer.forward(images(x), True))
    assert out.shape == (2, 3, 2, 3)
    np.testing.assert_array_equal(out, naive_pool(x, 2))
    g = nchw(layer.backward(np.ones((2, 3, 2, 3))))
    assert g.shape == x.shape
    assert np.all(g[:, :, 4, :] == 0) and np.all(g[:, :, :, 6] == 0)
    # one position per window receives the gradient, the window's maximum
    assert g.sum() == out.size
    assert np.array_equal(g[:, :, :4, :6] == 1, x[:, :, :4, :6] == np.repeat(np.repeat(out, 2, 2), 2, 3))


@pytest.mark.parametrize("size", [2, 3])
def test_maxpool_ties_route_to_one_position(size):
    layer = I.MaxPool2D(size)
    x = np.zeros((1, 2, size, 2 * size))
    x[0, 1] = 5.0
    layer.forward(images(x), True)
    g = nchw(layer.backward(images(np.array([[[[1.0, 2.0]], [[3.0, 4.0]]]]))))
    # every window is a tie: exactly one position gets the whole gradient
    windows = g.reshape(1, 2, 1, size, 2, size).transpose(0, 1, 2, 4, 3, 5).reshape(2, 2, size * size)
    assert np.all(np.count_nonzero(windows, axis=-1) == 1)
    np.testing.assert_array_equal(windows.sum(axis=-1), [[1, 2], [3, 4]])


def test_max_with_arg_picks_the_first_of_equal_maxima():
    parts = [np.array([1.0, 5.0, 2.0, 0.0]), np.array([3.0, 5.0, 2.0, 0.0]), np.array([3.0, 4.0, 7.0, 0.0])]
    out, arg, hit = np.empty(4), np.empty(4, np.uint8), np.empty(4, bool)
    I.max_with_arg(parts, out, arg, hit)
    np.testing.assert_array_equal(out, [3, 5, 7, 0])
    np.testing.assert_array_equal(arg, [1, 0, 2, 0])


def test_pooling_before_activation_matches_activation_before_pooling():
    """build_network pools before the activation: same outputs and input gradients."""
    rng = np.random.default_rng(31)
    x = images(distinct(rng, (2, 3, 6, 8)))
    g = images(rng.standard_normal((2, 3, 3, 4)))
    for act in (L.ReLU, lambda: L.LeakyReLU(0.1), L.Tanh, L.Sigmoid):
        results = []
        for chain in ([act(), I.MaxPool2D(2)], [I.MaxPool2D(2), act()]):
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


# --------------------------------------------------------------------------- a whole small network


def test_cnn_chain_gradients(conv_way):
    """The kit's CNN block order, end to end in float64: in-place layers and reused buffers
    must not corrupt what another layer keeps for backward."""
    rng = np.random.default_rng(21)
    chain = [
        I.Reshape((1, 6, 6)),
        Conv2D(1, 2, 3, rng, padding=1, dtype=F64),
        L.BatchNorm(2, dtype=F64),
        L.ReLU(),
        I.MaxPool2D(2),
        Conv2D(2, 3, 3, rng, padding=1, pool=2, dtype=F64),
        L.LeakyReLU(0.1),
        I.Flatten(),
        L.Dense(3, 4, rng, dtype=F64),
        L.Tanh(),
        L.Dropout(0.25, rng),
        L.Dense(4, 3, rng, dtype=F64),
    ]

    def reseed():
        chain[10].rng = np.random.default_rng(3)

    # a bias right before batch norm is cancelled by the mean: its gradient is zero
    check_gradients(chain, rng.standard_normal((3, 36)), before=reseed, zero_ok=frozenset({(1, "b")}))
