"""Layers as small objects: forward caches what backward needs; backward returns the input's gradient.

Arrays are batch-major: (batch, features) for dense layers, (batch, channels, height, width)
for image layers. Parameters live in `params` with matching `grads`; non-trainable state that
must be saved with the model (batch-norm running statistics) lives in `buffers`.

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

    def __init__(self, n_in: int, n_out: int, rng: np.random.Generator, input_grad: bool = True,
                 dtype=np.float32) -> None:
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
        np.sum(grad, axis=0, out=self.grads["b"])
        if not self.input_grad:
            return None
        grad_in = self._buffer("grad_in", self._x.shape, grad.dtype)
        np.matmul(grad, self.params["w"].T, out=grad_in)
        return grad_in


# --------------------------------------------------------------------------- activations


class ReLU(Layer):
    """max(x, 0), computed in place on the previous layer's output (it is not needed again)."""

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        mask = self._buffer("mask", x.shape, np.bool_)
        np.greater(x, 0, out=mask)
        np.multiply(x, mask, out=x)
        return x

    def backward(self, grad: np.ndarray) -> np.ndarray:
        np.multiply(grad, self._scratch["mask"], out=grad)
        return grad


class LeakyReLU(Layer):
    """x if x > 0 else slope * x."""

    def __init__(self, slope: float = 0.01) -> None:
        super().__init__()
        self.slope = slope

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        scale = self._buffer("scale", x.shape, x.dtype)
        np.greater(x, 0, out=scale)  # 1.0 / 0.0
        scale *= 1 - self.slope
        scale += self.slope
        np.multiply(x, scale, out=x)
        return x

    def backward(self, grad: np.ndarray) -> np.ndarray:
        np.multiply(grad, self._scratch["scale"], out=grad)
        return grad


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
        np.multiply(x, keep, out=x)
        return x

    def backward(self, grad: np.ndarray) -> np.ndarray:
        if self._active:
            np.multiply(grad, self._scratch["keep"], out=grad)
        return grad


class BatchNorm(Layer):
    """Batch normalisation over the batch (and, for images, the spatial) axes.

    x: (batch, features) or (batch, channels, h, w). Training normalises with the batch's
    statistics and updates running averages; evaluation uses the running averages, which are
    saved with the model in `buffers`.
    """

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

    def _axes_and_shape(self, x: np.ndarray) -> tuple[tuple[int, ...], tuple[int, ...]]:
        if x.ndim == 2:
            return (0,), (1, -1)
        return (0, 2, 3), (1, -1, 1, 1)

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        axes, shape = self._axes_and_shape(x)
        gamma = self.params["gamma"].reshape(shape)
        beta = self.params["beta"].reshape(shape)
        if training:
            mean = x.mean(axis=axes)
            var = x.var(axis=axes)
            m = self.momentum
            count = x.size // x.shape[1]
            self.buffers["running_mean"] *= 1 - m
            self.buffers["running_mean"] += m * mean.astype(self.buffers["running_mean"].dtype)
            unbiased = var * (count / max(count - 1, 1))
            self.buffers["running_var"] *= 1 - m
            self.buffers["running_var"] += m * unbiased.astype(self.buffers["running_var"].dtype)
        else:
            mean = self.buffers["running_mean"]
            var = self.buffers["running_var"]
        inv_std = (1.0 / np.sqrt(var + self.eps)).astype(x.dtype)
        x_hat = self._buffer("x_hat", x.shape, x.dtype)
        np.subtract(x, mean.reshape(shape).astype(x.dtype), out=x_hat)
        x_hat *= inv_std.reshape(shape)
        self._inv_std = inv_std
        out = self._buffer("out", x.shape, x.dtype)
        np.multiply(x_hat, gamma, out=out)
        out += beta
        return out

    def backward(self, grad: np.ndarray) -> np.ndarray:
        axes, shape = self._axes_and_shape(grad)
        x_hat = self._scratch["x_hat"]
        count = grad.size // grad.shape[1]
        self.grads["beta"][...] = grad.sum(axis=axes)
        self.grads["gamma"][...] = (grad * x_hat).sum(axis=axes)
        # dx = gamma * inv_std / N * (N * g - sum(g) - x_hat * sum(g * x_hat))
        scale = (self.params["gamma"] * self._inv_std / count).reshape(shape)
        grad_in = self._buffer("grad_in", grad.shape, grad.dtype)
        np.multiply(grad, count, out=grad_in)
        grad_in -= self.grads["beta"].reshape(shape)
        grad_in -= x_hat * self.grads["gamma"].reshape(shape)
        grad_in *= scale
        return grad_in


# --------------------------------------------------------------------------- shape


class Flatten(Layer):
    """(batch, ...) -> (batch, prod(...))."""

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        self._shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, grad: np.ndarray) -> np.ndarray:
        return grad.reshape(self._shape)


class Reshape(Layer):
    """(batch, features) -> (batch, *shape); the pixels of an image row into (1, 28, 28)."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        self._in_shape = x.shape
        return x.reshape((x.shape[0],) + self.shape)

    def backward(self, grad: np.ndarray) -> np.ndarray:
        return grad.reshape(self._in_shape)
