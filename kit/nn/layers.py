"""Layers as small objects: forward caches what backward needs; backward returns the input's gradient.

Arrays are (batch, features) for dense layers and (height, width, batch, channels) for images
(kit.nn.image_layers holds the image layers and says why). Parameters live in `params` with
matching `grads`; non-trainable state that must be saved with the model (batch-norm running
statistics) lives in `buffers`.

Layers reuse their output arrays between calls of the same shape, so the training step does
not allocate: a layer's output is valid until that layer's next forward.
"""

from __future__ import annotations

import numpy as np


class Layer:
    """Base class: no parameters, identity forward."""

    def __init__(self) -> None:
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self.buffers: dict[str, np.ndarray] = {}
        self._scratch: dict[str, np.ndarray] = {}

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        raise NotImplementedError

    def backward(self, grad: np.ndarray) -> np.ndarray | None:
        raise NotImplementedError

    def _buffer(self, name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
        """A reusable array of this shape and dtype (allocated again only when they change)."""
        buf = self._scratch.get(name)
        if buf is None or buf.shape != shape or buf.dtype != dtype:
            buf = np.empty(shape, dtype=dtype)
            self._scratch[name] = buf
        return buf

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k}={v.shape}" for k, v in self.params.items())
        return f"{type(self).__name__}({shapes})"


# --------------------------------------------------------------------------- dense


class Dense(Layer):
    """y = x @ w + b.  x: (batch, n_in) -> y: (batch, n_out).

    He initialisation (normal, std sqrt(2 / n_in)) suits the ReLU family that follows.
    `input_grad=False` on the first layer skips the one product nobody needs (the pixels' gradient).
    """

    def __init__(
        self, n_in: int, n_out: int, rng: np.random.Generator, input_grad: bool = True, dtype=np.float32
    ) -> None:
        super().__init__()
        std = np.sqrt(2.0 / n_in)
        self.params["w"] = (rng.standard_normal((n_in, n_out)) * std).astype(dtype)
        self.params["b"] = np.zeros(n_out, dtype=dtype)
        self.grads["w"] = np.zeros_like(self.params["w"])
        self.grads["b"] = np.zeros_like(self.params["b"])
        self.input_grad = input_grad
        self._x: np.ndarray | None = None

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        w, b = self.params["w"], self.params["b"]
        out = self._buffer("out", (x.shape[0], w.shape[1]), np.result_type(x, w))
        np.matmul(x, w, out=out)
        out += b
        self._x = x
        return out

    def backward(self, grad: np.ndarray) -> np.ndarray | None:
        np.matmul(self._x.T, grad, out=self.grads["w"])
        np.add.reduce(grad, axis=0, out=self.grads["b"])  # np.sum without its Python wrapper
        if not self.input_grad:
            return None
        grad_in = self._buffer("grad_in", self._x.shape, grad.dtype)
        np.matmul(grad, self.params["w"].T, out=grad_in)
        return grad_in


# --------------------------------------------------------------------------- activations


class ReLU(Layer):
    """max(x, 0), computed in place on the previous layer's output (it is not needed again).
    LeakyReLU is the same layer with a slope left of zero."""

    slope = 0.0

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        # the factor is kept in x's own dtype (1.0 / 0.0): multiplying by it is one same-type
        # loop, where a boolean mask would need a casting loop in both directions
        scale = self._buffer("scale", x.shape, x.dtype)
        np.greater(x, 0, out=scale)
        if self.slope:
            scale *= 1 - self.slope
            scale += self.slope
        np.multiply(x, scale, out=x)
        return x

    def backward(self, grad: np.ndarray) -> np.ndarray:
        np.multiply(grad, self._scratch["scale"], out=grad)
        return grad


class LeakyReLU(ReLU):
    """x if x > 0 else slope * x."""

    def __init__(self, slope: float = 0.01) -> None:
        super().__init__()
        self.slope = slope


class Tanh(Layer):
    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        np.tanh(x, out=x)
        self._y = x
        return x

    def backward(self, grad: np.ndarray) -> np.ndarray:
        return grad * (1 - self._y * self._y)


class Sigmoid(Layer):
    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        y = self._buffer("y", x.shape, x.dtype)
        np.negative(x, out=y)
        np.exp(y, out=y)
        y += 1
        np.reciprocal(y, out=y)
        return y

    def backward(self, grad: np.ndarray) -> np.ndarray:
        y = self._scratch["y"]
        return grad * y * (1 - y)


# Registry: a new activation is one class and one line here.
ACTIVATIONS: dict[str, type[Layer]] = {
    "relu": ReLU,
    "leaky_relu": LeakyReLU,
    "tanh": Tanh,
    "sigmoid": Sigmoid,
}


# --------------------------------------------------------------------------- regularisation


class Dropout(Layer):
    """Inverted dropout: zero a share `rate` of activations while training and scale the rest by
    1 / (1 - rate), so evaluation (no dropout) needs no rescaling."""

    def __init__(self, rate: float, rng: np.random.Generator) -> None:
        super().__init__()
        self.rate = rate
        self.rng = rng
        self._active = False

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        self._active = training and self.rate > 0
        if not self._active:
            return x
        keep = self._buffer("keep", x.shape, x.dtype)
        self.rng.random(out=keep, dtype=keep.dtype)
        np.greater_equal(keep, self.rate, out=keep)  # 1.0 where kept
        keep *= 1.0 / (1.0 - self.rate)
        # into its own buffer, not in place: the layer before (Tanh, Sigmoid) may keep its
        # output for its backward
        out = self._buffer("out", x.shape, x.dtype)
        np.multiply(x, keep, out=out)
        return out

    def backward(self, grad: np.ndarray) -> np.ndarray:
        if self._active:
            np.multiply(grad, self._scratch["keep"], out=grad)
        return grad


class BatchNorm(Layer):
    """Batch normalisation over the batch (and, for images, the spatial) axes.

    x: (batch, features) or images (h, w, batch, channels). Training normalises with the
    batch's statistics (biased variance) and updates running averages (unbiased variance);
    evaluation uses the running averages, which are saved with the model in `buffers`.

    Speed: the output is x * scale + shift with per-channel scale = gamma / std and
    shift = beta - mean * scale, two elementwise passes; the statistics are two reading passes
    over x (sums and sums of squares down the rows, then over the repeats in float64),
    var = E[x^2] - mean^2. Where that difference would lose more than three digits (|mean| >
    ~30 std) the variance is computed again from x - mean, which is then kept for
    backward. Backward: dx = k1 g - k2 x + k3 per channel, from sum(g) and sum(g x) (or
    sum(g (x - mean)) when centred was kept). Per-channel vectors are repeated into one
    (batch * channels) row, so the elementwise passes broadcast over long contiguous rows.
    """

    # var / E[x^2] below this: the one-pass variance has lost too many digits, recompute
    cancellation_limit = 1e-3

    def __init__(self, n_features: int, momentum: float = 0.1, eps: float = 1e-5, dtype=np.float32) -> None:
        super().__init__()
        self.params["gamma"] = np.ones(n_features, dtype=dtype)
        self.params["beta"] = np.zeros(n_features, dtype=dtype)
        self.grads["gamma"] = np.zeros_like(self.params["gamma"])
        self.grads["beta"] = np.zeros_like(self.params["beta"])
        self.buffers["running_mean"] = np.zeros(n_features, dtype=dtype)
        self.buffers["running_var"] = np.ones(n_features, dtype=dtype)
        self.momentum = momentum
        self.eps = eps
        self.track_running = True  # False: training leaves the running averages alone (a replica's)

    @staticmethod
    def _views(a: np.ndarray) -> tuple[np.ndarray, int]:
        """(a as (rows, width) with each channel's values spread over the rows and repeated along
        the width, how many times a channel repeats along the width): (batch, features) as it
        is; images (h, w, batch, channels) as (h*w, batch*channels)."""
        if a.ndim == 2:
            return a, 1
        if a.ndim == 4:
            h, w, n, c = a.shape
            return a.reshape(h * w, n * c), n
        raise ValueError(f"BatchNorm takes (batch, features) or (h, w, batch, channels), got shape {a.shape}")

    @staticmethod
    def _sum(a2: np.ndarray, repeats: int, b2: np.ndarray | None = None) -> np.ndarray:
        """Per-channel sum of a (or of a * b) as float64 (channels,): down the rows in float32
        (short sums: a batch, or an image's pixels), then over the repeats in float64."""
        part = np.add.reduce(a2, axis=0) if b2 is None else np.einsum("rk,rk->k", a2, b2)
        return part.reshape(repeats, -1).sum(axis=0, dtype=np.float64)

    @staticmethod
    def _row(v: np.ndarray, repeats: int, dtype) -> np.ndarray:
        """A per-channel vector repeated along one elementwise row (batch * channels for images),
        which broadcasts over the rows much faster than the bare (channels,) vector."""
        v = v.astype(dtype, copy=False)
        return v if repeats == 1 else np.tile(v, repeats)

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        x2, repeats = self._views(x)
        count = x2.size // len(self.params["gamma"])
        dtype = x.dtype
        self._centred = None
        if training:
            mean = self._sum(x2, repeats) / count
            mean_sq = self._sum(x2, repeats, x2) / count
            var = np.maximum(mean_sq - mean * mean, 0.0)
            if np.any(var < self.cancellation_limit * mean_sq):
                centred = self._buffer("centred", x2.shape, dtype)
                np.subtract(x2, self._row(mean, repeats, dtype), out=centred)
                var = self._sum(centred, repeats, centred) / count
                self._centred = centred
        if training and self.track_running:
            m = self.momentum
            self.buffers["running_mean"] *= 1 - m
            self.buffers["running_mean"] += (m * mean).astype(self.buffers["running_mean"].dtype)
            unbiased = var * (count / max(count - 1, 1))
            self.buffers["running_var"] *= 1 - m
            self.buffers["running_var"] += (m * unbiased).astype(self.buffers["running_var"].dtype)
        if not training:
            mean = self.buffers["running_mean"].astype(np.float64)
            var = self.buffers["running_var"].astype(np.float64)
        inv_std = 1.0 / np.sqrt(var + self.eps)
        scale = self.params["gamma"] * inv_std
        shift = self.params["beta"] - mean * scale
        self._x, self._mean, self._inv_std, self._count = x, mean, inv_std, count
        out = self._buffer("out", x.shape, dtype)
        out2 = out.reshape(x2.shape)
        np.multiply(x2, self._row(scale, repeats, dtype), out=out2)
        out2 += self._row(shift, repeats, dtype)
        return out

    def backward(self, grad: np.ndarray) -> np.ndarray:
        # with x_hat = (x - mean) * inv_std and N values per channel:
        # dx = gamma * inv_std * (g - sum(g) / N - x_hat * sum(g * x_hat) / N)
        #    = k1 g - k2 x + (k2 mean - k1 sum(g) / N),  k1 = gamma inv_std,
        #      k2 = k1 inv_std^2 sum(g (x - mean)) / N
        g2, repeats = self._views(grad)
        x, mean, inv_std, count = self._x, self._mean, self._inv_std, self._count
        dtype = grad.dtype
        sum_g = self._sum(g2, repeats)
        if self._centred is None:
            sum_gc = self._sum(g2, repeats, x.reshape(g2.shape)) - mean * sum_g
            other, other_mean = x.reshape(g2.shape), mean
        else:
            sum_gc = self._sum(g2, repeats, self._centred)
            other, other_mean = self._centred, 0.0
        self.grads["beta"][...] = sum_g
        self.grads["gamma"][...] = sum_gc * inv_std
        k1 = self.params["gamma"] * inv_std
        k2 = k1 * inv_std * inv_std * sum_gc / count
        k3 = k2 * other_mean - k1 * sum_g / count
        grad_in = self._buffer("grad_in", grad.shape, dtype)
        gi2 = grad_in.reshape(g2.shape)
        tmp = self._buffer("tmp", g2.shape, dtype)
        np.multiply(g2, self._row(k1, repeats, dtype), out=gi2)
        np.multiply(other, self._row(k2, repeats, dtype), out=tmp)
        gi2 -= tmp
        gi2 += self._row(k3, repeats, dtype)
        return grad_in
