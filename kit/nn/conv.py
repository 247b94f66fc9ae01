"""The 3x3 convolution of the kit's CNN blocks, with its block's max-pooling fused in, computed
two ways (the same numbers up to rounding): Winograd F(2x2, 3x3) where it applies, im2col
everywhere else. Images are (height, width, batch, channels), as kit.nn.image_layers explains.
"""

from __future__ import annotations

import numpy as np

from kit.nn.image_layers import max_with_arg, spread_by_arg
from kit.nn.layers import Layer

# Winograd F(2x2, 3x3) (Lavin & Gray 2016): a 2x2 block of a 3x3 convolution's outputs from a
# 4x4 tile of its input in 16 products instead of 36. With V = B^T d B (the tile transformed) and
# U = G g G^T (the kernel transformed), the outputs are A^T (U * V) A. As matrices on row-major
# flattened tiles: V = kron(B^T, B^T) d, U = kron(G, G) g, y = kron(A^T, A^T) m.
# Winograd F(2x2, 3x3) (Lavin & Gray 2016): a 2x2 block of a 3x3 convolution's outputs from a
# 4x4 tile of its input in 16 products instead of 36. With V = B^T d B (the tile transformed) and
# U = G g G^T (the kernel transformed), the outputs are A^T (U * V) A. As matrices on row-major
# flattened tiles: V = kron(B^T, B^T) d, U = kron(G, G) g, y = kron(A^T, A^T) m.
_BT = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], dtype=np.float64)
_G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], dtype=np.float64)
_AT = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], dtype=np.float64)
WINOGRAD_INPUT = np.kron(_BT, _BT)  # (16, 16): tile -> transformed tile
WINOGRAD_KERNEL = np.kron(_G, _G)  # (16, 9): 3x3 kernel -> transformed kernel
WINOGRAD_OUTPUT = np.kron(_AT, _AT)  # (4, 16): products -> 2x2 outputs


def add_per_channel(images: np.ndarray, vector: np.ndarray) -> None:
    """images (..., batch, channels) += vector (channels,), in place, broadcast along rows of
    batch * channels values (a bare (channels,) vector makes numpy loop over short rows)."""
    n, c = images.shape[-2:]
    rows = images.reshape(-1, n * c)
    np.add(rows, np.tile(vector.astype(images.dtype, copy=False), n), out=rows)


def sum_per_channel(images: np.ndarray, out: np.ndarray) -> None:
    """out (channels,) = images (..., batch, channels) summed over all but the channels, first
    down long rows of batch * channels values, then over the batch."""
    n, c = images.shape[-2:]
    np.add.reduce(images.reshape(-1, n * c).sum(axis=0).reshape(n, c), axis=0, out=out)


class Conv2D(Layer):
    """2-D convolution (cross-correlation), stride 1, zero padding on every side, optionally with
    the s x s max-pooling that follows it fused in.

    x: (h, w, batch, c_in) -> (h', w', batch, c_out) with h' = h + 2 padding - k + 1, or with
    pool = s > 1 max-pooled over s x s windows: (h' // s, w' // s, batch, c_out), the same values
    and gradients as this layer with pool 1 followed by MaxPool2D(s). Only the outputs a pooling
    window keeps are computed; the bias is added after the pooling (a max commutes with adding
    the same number). Parameters: "w" (c_out, c_in, k, k), He-initialised (std
    sqrt(2 / (c_in k k))), and "b" (c_out,).

    Two ways to compute it, the same numbers up to rounding:
    - Winograd F(2x2, 3x3), for 3x3 kernels with padding 1, pool 1 or 2 and more than one input
      channel: each 2x2 block of outputs (with pool 2, exactly one pooling window) comes from a
      4x4 input tile. The 16 strided views of the tiles are gathered, transformed by one small
      matrix product, multiplied by the transformed kernel in 16 products
      (tiles, c_in) @ (c_in, c_out), and transformed back into the 4 outputs of each block by
      another. 2.25x fewer multiplications than im2col, and none for the outputs the pooling
      drops. Backward runs the same steps transposed.
    - im2col, for any other kernel, padding or pooling: the k*k shifted views of the padded input
      are copied into columns, one row per output position, grouped by position within the
      pooling window, and one matrix product makes all the outputs. With one input channel the
      columns are stored transposed, so every copy is a run of the batch.
    """

    # evaluation (no backward to come) convolves big batches in chunks of at most about this many
    # values per work array, so predicting thousands of rows at once does not take gigabytes
    eval_chunk_elements = 1 << 23
    use_winograd = True  # class-wide switch; tests compare the two ways

    def __init__(
        self,
        c_in: int,
        c_out: int,
        kernel: int,
        rng: np.random.Generator,
        padding: int = 0,
        input_grad: bool = True,
        pool: int = 1,
        dtype=np.float32,
    ) -> None:
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

    def _winograd(self) -> bool:
        return (
            self.use_winograd
            and self.kernel == 3
            and self.padding == 1
            and self.pool in (1, 2)
            and self.c_in > 1
        )

    def _output_side(self, side: int) -> int:
        """Pooled output size along one axis of an input of `side` pixels."""
        full = side + 2 * self.padding - self.kernel + 1
        if full < 1:
            raise ValueError(
                f"Conv2D: a {self.kernel}x{self.kernel} kernel does not fit a side of {side} "
                f"pixels with padding {self.padding}"
            )
        return full // self.pool

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        h, w, n, c = x.shape
        if c != self.c_in:
            raise ValueError(
                f"Conv2D expects {self.c_in} input channels, got {c} (images are (h, w, batch, c))"
            )
        dtype = np.result_type(x, self.params["w"])
        hq, wq = self._output_side(h), self._output_side(w)
        out = self._buffer("out", (hq, wq, n, self.c_out), dtype)
        self._x_shape = x.shape
        self._trained = training
        compute = self._winograd_forward if self._winograd() else self._im2col_forward
        width = 16 * max(c, self.c_out) if self._winograd() else self.kernel**2 * c * self.pool**2
        chunk = n if training else max(1, self.eval_chunk_elements // (width * hq * wq))
        for start in range(0, n, chunk):
            xs = x[:, :, start : start + chunk].astype(dtype, copy=False)
            target = (
                out if chunk >= n else self._buffer("chunk_out", (hq, wq, xs.shape[2], self.c_out), dtype)
            )
            compute(xs, target, training)
            add_per_channel(target, self.params["b"])
            if target is not out:
                out[:, :, start : start + chunk] = target
        return out

    def backward(self, grad: np.ndarray) -> np.ndarray | None:
        if not getattr(self, "_trained", False):
            raise RuntimeError("Conv2D.backward needs a forward with training=True first")
        sum_per_channel(grad, self.grads["b"])
        if self._winograd():
            return self._winograd_backward(grad)
        return self._im2col_backward(grad)

    # ------------------------------------------------------------------ pooling over the s*s groups

    def _pool(self, products: np.ndarray, out: np.ndarray, training: bool) -> None:
        """out (rows, c_out) = max over the s*s groups of products (s*s, rows, c_out), keeping the
        winners for backward."""
        arg = self._buffer("arg", out.shape, np.uint8) if training else None
        max_with_arg(list(products), out, arg, self._buffer("hit", out.shape, np.bool_))

    def _unpool(self, grad: np.ndarray, products_grad: np.ndarray) -> None:
        spread_by_arg(grad, self._scratch["arg"], self._scratch["hit"], list(products_grad))

    # ------------------------------------------------------------------ im2col

    def _im2col_forward(self, x: np.ndarray, out: np.ndarray, training: bool) -> None:
        h, w, n, c = x.shape
        k, p, s = self.kernel, self.padding, self.pool
        hq, wq = out.shape[:2]
        xp = self._zeroed("padded", (h + 2 * p, w + 2 * p, n, c), x.dtype)
        xp[p : p + h, p : p + w] = x
        rows = hq * wq * n
        if c == 1:  # (k, k, s, s, hq, wq, n): each copy is whole runs of the batch
            cols = self._buffer("cols", (k, k, s, s, hq, wq, n), x.dtype)
            for i in range(k):
                for j in range(k):
                    for a in range(s):
                        for b in range(s):
                            np.copyto(
                                cols[i, j, a, b],
                                xp[a + i : a + i + s * hq : s, b + j : b + j + s * wq : s, :, 0],
                            )
            matrix = cols.reshape(k * k, -1).T
        else:  # (s, s, hq, wq, n, k, k, c): each copy is runs of the channels
            cols = self._buffer("cols", (s, s, hq, wq, n, k, k, c), x.dtype)
            for a in range(s):
                for b in range(s):
                    for i in range(k):
                        for j in range(k):
                            np.copyto(
                                cols[a, b, :, :, :, i, j],
                                xp[a + i : a + i + s * hq : s, b + j : b + j + s * wq : s],
                            )
            matrix = cols.reshape(-1, k * k * c)
        self._matrix = matrix
        kernel = self._buffer("kernel", (k * k * c, self.c_out), x.dtype)
        kernel[...] = self.params["w"].transpose(2, 3, 1, 0).reshape(k * k * c, self.c_out)
        if s == 1:
            np.matmul(matrix, kernel, out=out.reshape(rows, self.c_out))
            return
        products = self._buffer("products", (s * s, rows, self.c_out), x.dtype)
        np.matmul(matrix, kernel, out=products.reshape(-1, self.c_out))
        self._pool(products, out.reshape(rows, self.c_out), training)

    def _im2col_backward(self, grad: np.ndarray) -> np.ndarray | None:
        h, w, n, c = self._x_shape
        k, p, s, c_out = self.kernel, self.padding, self.pool, self.c_out
        hq, wq = grad.shape[:2]
        rows = hq * wq * n
        g2 = grad.reshape(rows, c_out)
        if s == 1:
            products_grad = g2
        else:
            products_grad = self._buffer("products_grad", (s * s * rows, c_out), grad.dtype)
            self._unpool(g2, products_grad.reshape(s * s, rows, c_out))
        kernel_grad = self._buffer("kernel_grad", (k * k * c, c_out), grad.dtype)
        np.matmul(self._matrix.T, products_grad, out=kernel_grad)
        self.grads["w"][...] = kernel_grad.reshape(k, k, c, c_out).transpose(3, 2, 0, 1)
        if not self.input_grad:
            return None
        kernel = self._scratch["kernel"]
        gp = self._buffer("grad_padded", (h + 2 * p, w + 2 * p, n, c), grad.dtype)
        gp.fill(0)
        if c == 1:
            cols_grad = self._buffer("cols_grad", (k * k, s * s * rows), grad.dtype)
            np.matmul(kernel, products_grad.T, out=cols_grad)
            cols_grad = cols_grad.reshape(k, k, s, s, hq, wq, n, 1)
        else:
            cols_grad = self._buffer("cols_grad", (s * s * rows, k * k * c), grad.dtype)
            np.matmul(products_grad, kernel.T, out=cols_grad)
            cols_grad = cols_grad.reshape(s, s, hq, wq, n, k, k, c).transpose(5, 6, 0, 1, 2, 3, 4, 7)
        # cols_grad[i, j, a, b] (hq, wq, n, c) is what the windows' entry (i, j) gives the pixels
        # at (a + i + s*y, b + j + s*x)
        for i in range(k):
            for j in range(k):
                for a in range(s):
                    for b in range(s):
                        gp[a + i : a + i + s * hq : s, b + j : b + j + s * wq : s] += cols_grad[i, j, a, b]
        grad_in = self._buffer("grad_in", self._x_shape, grad.dtype)
        np.copyto(grad_in, gp[p : p + h, p : p + w])
        return grad_in

    # ------------------------------------------------------------------ Winograd F(2x2, 3x3)

    def _tiles(self, side: int) -> int:
        """Tiles along one axis: one per pooling window (pool 2), else enough to cover the side."""
        return side // 2 if self.pool == 2 else (side + 1) // 2

    def _winograd_forward(self, x: np.ndarray, out: np.ndarray, training: bool) -> None:
        h, w, n, c = x.shape
        c_out, dtype = self.c_out, x.dtype
        th, tw = self._tiles(h), self._tiles(w)
        tiles = th * tw * n
        # the padded input: tile (ty, tx) is rows 2ty..2ty+3, columns 2tx..2tx+3
        xp = self._zeroed("padded", (2 * th + 2, 2 * tw + 2, n, c), dtype)
        rh, rw = min(h, 2 * th + 1), min(w, 2 * tw + 1)  # input rows and columns the tiles reach
        xp[1 : 1 + rh, 1 : 1 + rw] = x[:rh, :rw]
        gathered = self._buffer("gathered", (4, 4, th, tw, n, c), dtype)
        for u in range(4):
            for v in range(4):
                np.copyto(gathered[u, v], xp[u : u + 2 * th : 2, v : v + 2 * tw : 2])
        transformed = self._buffer("transformed", (16, tiles, c), dtype)
        np.matmul(WINOGRAD_INPUT.astype(dtype), gathered.reshape(16, -1), out=transformed.reshape(16, -1))
        kernel = self._buffer("kernel", (16, c, c_out), dtype)
        np.matmul(
            WINOGRAD_KERNEL.astype(dtype),
            self.params["w"].transpose(2, 3, 1, 0).reshape(9, -1).astype(dtype),
            out=kernel.reshape(16, -1),
        )
        products = self._buffer("products", (16, tiles, c_out), dtype)
        np.matmul(transformed, kernel, out=products)
        blocks = self._buffer("blocks", (4, tiles, c_out), dtype)  # output (a, b) of each 2x2 block
        np.matmul(WINOGRAD_OUTPUT.astype(dtype), products.reshape(16, -1), out=blocks.reshape(4, -1))
        if self.pool == 2:
            self._pool(blocks, out.reshape(tiles, c_out), training)
            return
        blocks = blocks.reshape(2, 2, th, tw, n, c_out)
        for a in range(2):
            for b in range(2):
                view = out[a::2, b::2]
                np.copyto(view, blocks[a, b, : view.shape[0], : view.shape[1]])

    def _winograd_backward(self, grad: np.ndarray) -> np.ndarray | None:
        h, w, n, c = self._x_shape
        c_out, dtype = self.c_out, grad.dtype
        th, tw = self._tiles(h), self._tiles(w)
        tiles = th * tw * n
        blocks_grad = self._buffer("blocks", (4, tiles, c_out), dtype)  # the forward's blocks are done with
        if self.pool == 2:
            self._unpool(grad.reshape(tiles, c_out), blocks_grad)
        else:
            blocks_grad.fill(0)
            bg = blocks_grad.reshape(2, 2, th, tw, n, c_out)
            for a in range(2):
                for b in range(2):
                    view = grad[a::2, b::2]
                    np.copyto(bg[a, b, : view.shape[0], : view.shape[1]], view)
        products_grad = self._buffer("products", (16, tiles, c_out), dtype)
        np.matmul(
            WINOGRAD_OUTPUT.T.astype(dtype), blocks_grad.reshape(4, -1), out=products_grad.reshape(16, -1)
        )
        transformed = self._scratch["transformed"]
        kernel_grad = np.matmul(transformed.transpose(0, 2, 1), products_grad)  # (16, c, c_out)
        self.grads["w"][...] = (
            (WINOGRAD_KERNEL.T.astype(dtype) @ kernel_grad.reshape(16, -1))
            .reshape(3, 3, c, c_out)
            .transpose(3, 2, 0, 1)
        )
        if not self.input_grad:
            return None
        # the transformed tiles' gradient into the gathered buffer, the tiles' into the transformed
        transformed_grad = self._scratch["gathered"].reshape(16, tiles, c)
        np.matmul(products_grad, self._scratch["kernel"].transpose(0, 2, 1), out=transformed_grad)
        tiles_grad = transformed.reshape(16, -1)
        np.matmul(WINOGRAD_INPUT.T.astype(dtype), transformed_grad.reshape(16, -1), out=tiles_grad)
        tiles_grad = tiles_grad.reshape(4, 4, th, tw, n, c)
        gp = self._buffer("grad_padded", (2 * th + 2, 2 * tw + 2, n, c), dtype)
        # tiles overlap by two rows and columns: the offsets 0 and 1 cover the first 2*th rows
        # and 2*tw columns once, so they are copied; the others are added
        gp[2 * th :] = 0
        gp[: 2 * th, 2 * tw :] = 0
        for u in range(4):
            for v in range(4):
                target = gp[u : u + 2 * th : 2, v : v + 2 * tw : 2]
                if u < 2 and v < 2:
                    np.copyto(target, tiles_grad[u, v])
                else:
                    target += tiles_grad[u, v]
        grad_in = self._buffer("grad_in", self._x_shape, dtype)
        rh, rw = min(h, 2 * th + 1), min(w, 2 * tw + 1)
        if rh < h or rw < w:  # input rows or columns no tile reads
            grad_in.fill(0)
        np.copyto(grad_in[:rh, :rw], gp[1 : 1 + rh, 1 : 1 + rw])
        return grad_in
