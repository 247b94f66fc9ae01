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

    x: (batch, features) or (batch, channels, h, w). Training normalises with the batch's
    statistics (biased variance) and updates running averages (unbiased variance); evaluation
    uses the running averages, which are saved with the model in `buffers`.

    Speed: the output is x * scale + shift with per-channel scale = gamma / std and
    shift = beta - mean * scale, two elementwise passes; the statistics are two reading passes
    over x (per image and channel sums and sums of squares by einsum, added over the batch in
    float64), var = E[x^2] - mean^2. Where that difference would lose more than three digits
    (|mean| > ~30 std) the variance is computed again from x - mean, which is then kept for
    backward. Backward: dx = k1 g - k2 x + k3 per channel, from sum(g) and sum(g x) (or
    sum(g (x - mean)) when centred was kept). Per-channel vectors are repeated into one
    (channels * pixels) row so the elementwise passes broadcast over the batch only.
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
    def _views(a: np.ndarray) -> tuple[np.ndarray, np.ndarray, str, int]:
        """(a as (batch, channels, pixels) for the per-channel sums and the einsum subscripts of
        its per-image partial sums, a as (batch, channels * pixels) for the elementwise passes,
        pixels per channel)."""
        if a.ndim == 2:
            return a, a, "nc->c", 1
        if a.ndim == 4:
            n, c = a.shape[:2]
            a3 = a.reshape(n, c, -1)
            return a3, a3.reshape(n, -1), "ncl->nc", a3.shape[2]
        raise ValueError(f"BatchNorm takes (batch, features) or (batch, channels, h, w), got shape {a.shape}")

    @staticmethod
    def _sum(a3: np.ndarray, sub: str, b3: np.ndarray | None = None) -> np.ndarray:
        """Per-channel sum of a (or of a * b) as float64 (channels,): einsum per image and
        channel (short sums, accurate in float32), then over the batch in float64."""
        inputs, lhs = (a3,), sub.split("->")[0]
        if b3 is not None:
            inputs, lhs = (a3, b3), f"{lhs},{lhs}"
        part = np.einsum(f"{lhs}->{sub.split('->')[1]}", *inputs)
        if part.ndim == 2:
            return part.sum(axis=0, dtype=np.float64)
        return part.astype(np.float64)

    @staticmethod
    def _row(v: np.ndarray, pixels: int, dtype) -> np.ndarray:
        """A per-channel vector repeated over the pixels: one (channels * pixels) row, which
        broadcasts over the batch much faster than a (1, channels, 1) vector."""
        v = v.astype(dtype, copy=False)
        return v if pixels == 1 else np.repeat(v, pixels)

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        x3, x2, sub, pixels = self._views(x)
        count = x3.shape[0] * pixels
        dtype = x.dtype
        self._centred = None
        if training:
            mean = self._sum(x3, sub) / count
            mean_sq = self._sum(x3, sub, x3) / count
            var = np.maximum(mean_sq - mean * mean, 0.0)
            if np.any(var < self.cancellation_limit * mean_sq):
                centred = self._buffer("centred", x2.shape, dtype)
                np.subtract(x2, self._row(mean, pixels, dtype), out=centred)
                c3 = centred.reshape(x3.shape)
                var = self._sum(c3, sub, c3) / count
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
        np.multiply(x2, self._row(scale, pixels, dtype), out=out2)
        out2 += self._row(shift, pixels, dtype)
        return out

    def backward(self, grad: np.ndarray) -> np.ndarray:
        # with x_hat = (x - mean) * inv_std and N values per channel:
        # dx = gamma * inv_std * (g - sum(g) / N - x_hat * sum(g * x_hat) / N)
        #    = k1 g - k2 x + (k2 mean - k1 sum(g) / N),  k1 = gamma inv_std,
        #      k2 = k1 inv_std^2 sum(g (x - mean)) / N
        g3, g2, sub, pixels = self._views(grad)
        x, mean, inv_std, count = self._x, self._mean, self._inv_std, self._count
        dtype = grad.dtype
        sum_g = self._sum(g3, sub)
        if self._centred is None:
            sum_gc = self._sum(g3, sub, x.reshape(g3.shape)) - mean * sum_g
            other, other_mean = x.reshape(g2.shape), mean
        else:
            sum_gc = self._sum(g3, sub, self._centred.reshape(g3.shape))
            other, other_mean = self._centred, 0.0
        self.grads["beta"][...] = sum_g
        self.grads["gamma"][...] = sum_gc * inv_std
        k1 = self.params["gamma"] * inv_std
        k2 = k1 * inv_std * inv_std * sum_gc / count
        k3 = k2 * other_mean - k1 * sum_g / count
        grad_in = self._buffer("grad_in", grad.shape, dtype)
        gi2 = grad_in.reshape(g2.shape)
        tmp = self._buffer("tmp", g2.shape, dtype)
        np.multiply(g2, self._row(k1, pixels, dtype), out=gi2)
        np.multiply(other, self._row(k2, pixels, dtype), out=tmp)
        gi2 -= tmp
        gi2 += self._row(k3, pixels, dtype)
        return grad_in


def max_with_arg(parts: list[np.ndarray], out: np.ndarray, arg: np.ndarray | None, hit: np.ndarray) -> None:
    """out = elementwise max of parts; arg (uint8, when given) = index of the first part reaching
    it, so ties go to the first part; hit is a bool scratch array of out's shape."""
    if len(parts) == 1:
        np.copyto(out, parts[0])
        if arg is not None:
            arg.fill(0)
        return
    if arg is not None:
        np.greater(parts[1], parts[0], out=arg)  # 1 where the second wins, else 0
    np.maximum(parts[0], parts[1], out=out)
    for index in range(2, len(parts)):
        if arg is not None:
            np.greater(parts[index], out, out=hit)
            np.copyto(arg, index, where=hit)
        np.maximum(out, parts[index], out=out)


def spread_by_arg(grad: np.ndarray, arg: np.ndarray, hit: np.ndarray, targets: list[np.ndarray]) -> None:
    """The backward of max_with_arg: targets[i] = grad where arg == i, else 0."""
    for index, target in enumerate(targets):
        np.equal(arg, index, out=hit)
        np.multiply(grad, hit, out=target)


# --------------------------------------------------------------------------- image layers


class Conv2D(Layer):
    """2-D convolution (cross-correlation), stride 1, zero padding on every side.

    x: (batch, c_in, h, w) -> (batch, c_out, h + 2 padding - k + 1, w + 2 padding - k + 1), or
    with pool = s > 1 that max-pooled over s x s windows: (batch, c_out, h' // s, w' // s), the
    same values and gradients as this layer with pool 1 followed by MaxPool2D(s), but pooled
    from the matmul's own layout, so only a quarter as much is transposed either way.
    Parameters: "w" (c_out, c_in, k, k), He-initialised (std sqrt(2 / (c_in k k))), and
    "b" (c_out,).

    im2col on "wide rows": the input goes into a zero-bordered buffer (padded width wp), and the
    output is computed on an (h', wp) grid whose last k-1 columns are discarded. Then the patch
    entry (c, i, j) of every output position of an image is ONE contiguous run of that buffer,
    starting at i*wp + j, so the columns (c_in*k*k, batch*h'*wp) are a strided view
    (as_strided) copied in long runs. A last row of ones carries the bias, and the convolution
    is ONE matmul [w | b] (c_out, c_in*k*k + 1) @ columns. Its (c_out, batch, h', wp) result is
    cropped and copied out as (batch, c_out, h', w'). Backward: [grad_w | grad_b] is one matmul
    over the cached columns (the discarded columns get zero gradient), and the input's gradient
    w.T @ grad is folded back by col2im: k*k additions of contiguous runs. `input_grad=False`
    (the first layer, whose input is the pixels) skips that part.

    Measured alternatives (2 cores): NHWC columns need element-wise transposes of the output
    and gradient; per-image (batched) matmuls are slower than one matmul; plain (non-wide)
    windows copy and fold back in 14-value runs, 2-3x slower than the wide runs.
    """

    # evaluation (no backward to come) convolves big batches in chunks of at most this many
    # column entries, so predicting 4096 rows at once does not build a gigabyte of columns
    eval_chunk_elements = 1 << 23

    def __init__(self, c_in: int, c_out: int, kernel: int, rng: np.random.Generator, padding: int = 0,
                 input_grad: bool = True, pool: int = 1, dtype=np.float32) -> None:
        super().__init__()
        std = np.sqrt(2.0 / (c_in * kernel * kernel))
        self.params["w"] = (rng.standard_normal((c_out, c_in, kernel, kernel)) * std).astype(dtype)
        self.params["b"] = np.zeros(c_out, dtype=dtype)
        self.grads["w"] = np.zeros_like(self.params["w"])
        self.grads["b"] = np.zeros_like(self.params["b"])
        if pool < 1 or pool > 255:
            raise ValueError(f"Conv2D pool {pool}: must be in 1..255")
        self.c_in, self.c_out, self.kernel, self.padding, self.pool = c_in, c_out, kernel, padding, pool
        self.input_grad = input_grad

    def _zeroed(self, name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
        """A reusable buffer that is zero-filled when (re)allocated; parts never written stay zero."""
        old = self._scratch.get(name)
        buf = self._buffer(name, shape, dtype)
        if buf is not old:
            buf.fill(0)
        return buf

    def _geometry(self, h: int, w: int) -> tuple[int, int, int, int]:
        """(padded height, padded width, output height, output width)."""
        p, k = self.padding, self.kernel
        hp, wp = h + 2 * p, w + 2 * p
        if hp < k or wp < k:
            raise ValueError(f"Conv2D: a {k}x{k} kernel does not fit a {h}x{w} input with padding {p}")
        return hp, wp, hp - k + 1, wp - k + 1

    def _columns(self, x: np.ndarray) -> np.ndarray:
        """(c_in*k*k + 1, n*h'*wp): row (c, i, j) is, image after image, the run of h'*wp values of
        the padded image's channel c (read row-major) starting at row i, column j; the last row
        is ones, so the bias rides in the same matmul."""
        n, c, h, w = x.shape
        p, k = self.padding, self.kernel
        hp, wp, h_out, _ = self._geometry(h, w)
        # one extra zero row keeps the runs of the last offsets inside the buffer
        xp = self._zeroed("padded", (n, c, hp + 1, wp), x.dtype)
        xp[:, :, p:p + h, p:p + w] = x
        run = h_out * wp
        n_rows = c * k * k
        old = self._scratch.get("cols")
        cols = self._buffer("cols", (n_rows + 1, n * run), x.dtype)
        if cols is not old:
            cols[n_rows] = 1
        sn, sc, sh, sw = xp.strides
        windows = np.lib.stride_tricks.as_strided(xp, shape=(c, k, k, n, run), strides=(sc, sh, sw, sn, sw),
                                                  writeable=False)
        np.copyto(cols[:n_rows].reshape(c, k, k, n, run), windows)
        return cols

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        n, c, h, w = x.shape
        if c != self.c_in:
            raise ValueError(f"Conv2D expects {self.c_in} input channels, got {c}")
        c_out, s = self.c_out, self.pool
        _, wp, h_out, w_out = self._geometry(h, w)
        dtype = np.result_type(x, self.params["w"])
        # [w | b] as one (c_out, c_in*k*k + 1) matrix, against the columns' trailing row of ones
        w_ext = self._buffer("w_ext", (c_out, self.params["w"][0].size + 1), dtype)
        w_ext[:, :-1] = self.params["w"].reshape(c_out, -1)
        w_ext[:, -1] = self.params["b"]
        out = self._buffer("out", (n, c_out, h_out // s, w_out // s), dtype)
        self._x_shape = x.shape
        self._trained = training
        chunk = n if training else max(1, self.eval_chunk_elements // (w_ext.shape[1] * h_out * wp))
        for start in range(0, n, chunk):
            xs = x[start:start + chunk]
            m = len(xs)
            cols = self._columns(xs.astype(dtype, copy=False))
            prod = self._buffer("prod", (c_out, m * h_out * wp), dtype)
            np.matmul(w_ext, cols, out=prod)
            wide = prod.reshape(c_out, m, h_out, wp)
            if s > 1:
                wide = self._pool_forward(wide, w_out, training)
            # (c_out, m, h', wp or w') -> drop the extra columns -> (m, c_out, h', w')
            np.copyto(out[start:start + m], wide[:, :, :, :out.shape[3]].transpose(1, 0, 2, 3))
        return out

    def _pool_forward(self, wide: np.ndarray, w_out: int, training: bool) -> np.ndarray:
        """Max over s x s windows of the product in its own (c_out, n, h', wp) layout, before it is
        transposed (a quarter of the values to move for s = 2): first down the rows (whole
        contiguous rows), then along them, keeping the winners' indices for backward."""
        s = self.pool
        c_out, m, h_out, _ = wide.shape
        hq, wq = h_out // s, w_out // s
        rows = self._buffer("pool_rows", (c_out, m, hq, wq * s), wide.dtype)
        row_arg = self._buffer("row_arg", rows.shape, np.uint8) if training else None
        max_with_arg([wide[:, :, a:hq * s:s, :wq * s] for a in range(s)], rows, row_arg,
                     self._buffer("row_hit", rows.shape, np.bool_))
        pooled = self._buffer("pooled", (c_out, m, hq, wq), wide.dtype)
        col_arg = self._buffer("col_arg", pooled.shape, np.uint8) if training else None
        max_with_arg([rows[:, :, :, b::s] for b in range(s)], pooled, col_arg,
                     self._buffer("col_hit", pooled.shape, np.bool_))
        return pooled

    def backward(self, grad: np.ndarray) -> np.ndarray | None:
        if not getattr(self, "_trained", False):
            raise RuntimeError("Conv2D.backward needs a forward with training=True first")
        n, c_out = grad.shape[:2]
        c, h, w = self._x_shape[1:]
        k, p, s = self.kernel, self.padding, self.pool
        hp, wp, h_out, w_out = self._geometry(h, w)
        cols = self._scratch["cols"]
        # the gradient in the columns' layout, (c_out, n, h', wp); the k-1 extra columns (and the
        # rows and columns a pooling window left out) stay zero
        grad_t = self._zeroed("grad_t", (c_out, n, h_out, wp), grad.dtype)
        grad_cn = grad.transpose(1, 0, 2, 3)  # (n, c_out, ...) -> (c_out, n, ...)
        if s == 1:
            np.copyto(grad_t[:, :, :, :w_out], grad_cn)
        else:  # each window's gradient to its winner, as max_with_arg picked it
            hq, wq = grad.shape[2:]
            rows = self._buffer("grad_rows", (c_out, n, hq, wq * s), grad.dtype)
            spread_by_arg(grad_cn, self._scratch["col_arg"], self._scratch["col_hit"],
                          [rows[:, :, :, b::s] for b in range(s)])
            spread_by_arg(rows, self._scratch["row_arg"], self._scratch["row_hit"],
                          [grad_t[:, :, a:hq * s:s, :wq * s] for a in range(s)])
        grad_t = grad_t.reshape(c_out, -1)
        # [grad_w | grad_b] transposed, (c_in*k*k + 1, c_out): the ones row sums the bias gradient
        grad_ext = self._buffer("grad_ext", (cols.shape[0], c_out), grad.dtype)
        np.matmul(cols, grad_t.T, out=grad_ext)
        self.grads["w"].reshape(c_out, -1)[...] = grad_ext[:-1].T
        self.grads["b"][...] = grad_ext[-1]
        if not self.input_grad:
            return None
        run = h_out * wp
        grad_cols = self._buffer("grad_cols", (c * k * k, n * run), grad.dtype)
        np.matmul(self.params["w"].reshape(c_out, -1).T, grad_t, out=grad_cols)
        gc = grad_cols.reshape(c, k, k, n, run)
        # col2im into a channel-major padded layout (c, n, (hp+1) wp): offset (i, j) adds its runs
        # at i*wp + j. Runs never overlap within one offset; the extra columns carry zeros, so
        # where they wrap into the next row they add nothing.
        # Done a few channels at a time, so the block being summed into stays in cache.
        gp = self._buffer("grad_padded", (c, n, (hp + 1) * wp), grad.dtype)
        block = max(1, (1 << 18) // gp[0].size)
        for c0 in range(0, c, block):
            dst, src = gp[c0:c0 + block], gc[c0:c0 + block]
            np.copyto(dst[:, :, :run], src[:, 0, 0])
            dst[:, :, run:] = 0
            for i in range(k):
                for j in range(k):
                    if i or j:
                        o = i * wp + j
                        dst[:, :, o:o + run] += src[:, i, j]
        grad_in = self._buffer("grad_in", (n, c, h, w), grad.dtype)
        np.copyto(grad_in, gp.reshape(c, n, hp + 1, wp)[:, :, p:p + h, p:p + w].transpose(1, 0, 2, 3))
        return grad_in


class MaxPool2D(Layer):
    """Non-overlapping max pooling: (batch, c, h, w) -> (batch, c, h // size, w // size).

    Rows and columns beyond the last whole window are dropped (and get zero gradient). Backward
    sends each window's gradient to one position holding its maximum. Pooling runs in two
    passes, down the rows (contiguous, fast) then along them, each keeping the index of the
    winner (uint8); ties go to the first row / column.
    """

    def __init__(self, size: int) -> None:
        super().__init__()
        if size < 1 or size > 255:
            raise ValueError(f"MaxPool2D size {size}: must be in 1..255")
        self.size = size

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        s = self.size
        n, c, h, w = x.shape
        h_out, w_out = h // s, w // s
        self._x_shape = x.shape
        self._trained = training
        # pass 1: max over the s rows of each window -> (n, c, h', w' s)
        rows = self._buffer("rows", (n, c, h_out, w_out * s), x.dtype)
        row_arg = self._buffer("row_arg", rows.shape, np.uint8) if training else None
        row_hit = self._buffer("row_hit", rows.shape, np.bool_)
        max_with_arg([x[:, :, a:h_out * s:s, :w_out * s] for a in range(s)], rows, row_arg, row_hit)
        # pass 2: max over the s columns -> (n, c, h', w')
        out = self._buffer("out", (n, c, h_out, w_out), x.dtype)
        col_arg = self._buffer("col_arg", out.shape, np.uint8) if training else None
        col_hit = self._buffer("col_hit", out.shape, np.bool_)
        max_with_arg([rows[:, :, :, b::s] for b in range(s)], out, col_arg, col_hit)
        return out

    def backward(self, grad: np.ndarray) -> np.ndarray:
        if not getattr(self, "_trained", False):
            raise RuntimeError("MaxPool2D.backward needs a forward with training=True first")
        s = self.size
        n, c, h_out, w_out = grad.shape
        h, w = self._x_shape[2:]
        col_arg, col_hit = self._scratch["col_arg"], self._scratch["col_hit"]
        row_arg, row_hit = self._scratch["row_arg"], self._scratch["row_hit"]
        rows = self._buffer("grad_rows", row_arg.shape, grad.dtype)
        spread_by_arg(grad, col_arg, col_hit, [rows[:, :, :, b::s] for b in range(s)])
        grad_in = self._buffer("grad_in", self._x_shape, grad.dtype)
        if h != h_out * s:
            grad_in[:, :, h_out * s:, :] = 0
        if w != w_out * s:
            grad_in[:, :, :, w_out * s:] = 0
        spread_by_arg(rows, row_arg, row_hit, [grad_in[:, :, a:h_out * s:s, :w_out * s] for a in range(s)])
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
