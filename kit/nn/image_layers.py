"""Image layers and their layout: max-pooling, the reshapes between pixel rows and images, and
the pooling helpers the convolution (kit.nn.conv) shares.

Layout: between image layers a batch of images is an array (height, width, batch, channels),
not the usual (batch, channels, height, width). With the batch and the channels innermost, every
shifted or strided view a convolution or a pooling window takes of the images is made of runs
of batch * channels contiguous values, the convolutions' matrix products come out in this
layout with no transpose, and batch norm's per-channel vectors broadcast along the contiguous
axis. Reshape turns pixel rows (batch, c*h*w) into it and Flatten turns it back into rows in
(c, h, w) order, so the weights, the saved models and the ONNX graph are those of the usual
(batch, channels, height, width) network.
"""

from __future__ import annotations

import numpy as np

from kit.nn.layers import Layer


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
    flag = hit.view(np.uint8)
    for index in range(2, len(parts)):
        if arg is not None:
            # a later part that wins has a higher index than any earlier winner, so the index is
            # a max too (copyto with where= is far slower than these two uint8 passes)
            np.greater(parts[index], out, out=hit)
            np.multiply(flag, index, out=flag)
            np.maximum(arg, flag, out=arg)
        np.maximum(out, parts[index], out=out)


def spread_by_arg(grad: np.ndarray, arg: np.ndarray, hit: np.ndarray, targets: list[np.ndarray]) -> None:
    """The backward of max_with_arg: targets[i] = grad where arg == i, else 0."""
    for index, target in enumerate(targets):
        np.equal(arg, index, out=hit)
        np.multiply(grad, hit, out=target)


class MaxPool2D(Layer):
    """Non-overlapping max pooling: (h, w, batch, c) -> (h // size, w // size, batch, c).

    Rows and columns beyond the last whole window are dropped (and get zero gradient). Backward
    sends each window's gradient to one position holding its maximum. Pooling runs in two
    passes, down the rows then along them, each over whole runs of batch * channels values and
    keeping the index of the winner (uint8); ties go to the first row / column.
    """

    def __init__(self, size: int) -> None:
        super().__init__()
        if size < 1 or size > 255:
            raise ValueError(f"MaxPool2D size {size}: must be in 1..255")
        self.size = size

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        s = self.size
        h, w = x.shape[:2]
        h_out, w_out = h // s, w // s
        self._x_shape = x.shape
        self._trained = training
        rows = self._buffer("rows", (h_out, w_out * s) + x.shape[2:], x.dtype)
        row_arg = self._buffer("row_arg", rows.shape, np.uint8) if training else None
        max_with_arg(
            [x[a : h_out * s : s, : w_out * s] for a in range(s)],
            rows,
            row_arg,
            self._buffer("row_hit", rows.shape, np.bool_),
        )
        out = self._buffer("out", (h_out, w_out) + x.shape[2:], x.dtype)
        col_arg = self._buffer("col_arg", out.shape, np.uint8) if training else None
        max_with_arg(
            [rows[:, b::s] for b in range(s)], out, col_arg, self._buffer("col_hit", out.shape, np.bool_)
        )
        return out

    def backward(self, grad: np.ndarray) -> np.ndarray:
        if not getattr(self, "_trained", False):
            raise RuntimeError("MaxPool2D.backward needs a forward with training=True first")
        s = self.size
        h_out, w_out = grad.shape[:2]
        h, w = self._x_shape[:2]
        rows = self._buffer("grad_rows", self._scratch["row_arg"].shape, grad.dtype)
        spread_by_arg(
            grad, self._scratch["col_arg"], self._scratch["col_hit"], [rows[:, b::s] for b in range(s)]
        )
        grad_in = self._buffer("grad_in", self._x_shape, grad.dtype)
        if h != h_out * s:
            grad_in[h_out * s :] = 0
        if w != w_out * s:
            grad_in[:, w_out * s :] = 0
        spread_by_arg(
            rows,
            self._scratch["row_arg"],
            self._scratch["row_hit"],
            [grad_in[a : h_out * s : s, : w_out * s] for a in range(s)],
        )
        return grad_in


class Reshape(Layer):
    """Pixel rows into images: (batch, c*h*w) -> (h, w, batch, c), for shape = (c, h, w); the
    rows hold each image's channels one after the other, each row-major (the ONNX graph's
    Reshape to (batch, c, h, w))."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        if len(shape) != 3:
            raise ValueError(f"Reshape takes an image shape (channels, height, width), got {shape}")
        self.shape = tuple(shape)

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        self._in_shape = x.shape
        c, h, w = self.shape
        out = self._buffer("out", (h, w, x.shape[0], c), x.dtype)
        np.copyto(out, x.reshape(x.shape[0], c, h, w).transpose(2, 3, 0, 1))
        return out

    def backward(self, grad: np.ndarray) -> np.ndarray:
        out = self._buffer("grad_in", self._in_shape, grad.dtype)
        np.copyto(out.reshape(grad.shape[2], grad.shape[3], *grad.shape[:2]), grad.transpose(2, 3, 0, 1))
        return out


class Flatten(Layer):
    """Images into rows: (h, w, batch, c) -> (batch, c*h*w) in (c, h, w) order."""

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        self._shape = x.shape
        h, w, n, c = x.shape
        out = self._buffer("out", (n, c * h * w), x.dtype)
        np.copyto(out.reshape(n, c, h, w), x.transpose(2, 3, 0, 1))
        return out

    def backward(self, grad: np.ndarray) -> np.ndarray:
        h, w, n, c = self._shape
        out = self._buffer("grad_in", self._shape, grad.dtype)
        np.copyto(out, grad.reshape(n, c, h, w).transpose(2, 3, 0, 1))
        return out
