"""The FLOP floor: the time a training step's own matrix products take alone, at the batch's
shapes. The speed bench measures it right before every timed epoch, so both see the same load;
the ratio epoch / floor is what carries over between machines and hours, seconds do not.

    step, flops = step_products(config, batch, rng)   # one step's products, and their FLOPs
    seconds = floor_epoch(step, n_batches)
"""

from __future__ import annotations

import time

import numpy as np

from kit.bench.measure import repeat_timing
from kit.config import Config
from kit.core.mnist import IMAGE_SIDE, N_CLASSES, N_PIXELS


def gemm_gflops(m: int, k: int, n: int, repeats: int, rng: np.random.Generator) -> list[float]:
    """GFLOP/s of one float32 product (m, k) @ (k, n) into a preallocated output, per repetition."""
    a = rng.random((m, k), dtype=np.float32)
    b = rng.random((k, n), dtype=np.float32)
    out = np.empty((m, n), dtype=np.float32)
    flops = 2.0 * m * k * n
    return [flops / t / 1e9 for t in repeat_timing(lambda: np.matmul(a, b, out=out), repeats)]


class Products:
    """Matrix products into preallocated outputs, run in order by calling it; `flops` counts them."""

    def __init__(self) -> None:
        self.calls: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.flops = 0.0

    def add(self, left: np.ndarray, right: np.ndarray) -> None:
        self.calls.append((left, right, np.empty((left.shape[0], right.shape[1]), np.float32)))
        self.flops += 2.0 * left.shape[0] * left.shape[1] * right.shape[1]

    def __call__(self) -> None:
        matmul = np.matmul
        for left, right, out in self.calls:
            matmul(left, right, out=out)


def step_products(config: Config, batch: int, rng: np.random.Generator) -> tuple[Products, float]:
    """(exactly the matrix products of one training step of the config's network, their FLOPs).

    Dense layers as the kit's Dense computes them: forward x @ w, weight gradient x.T @ g, input
    gradient g @ w.T (not for the first layer of an MLP: nobody needs the pixels' gradient).
    Every 3x3 "same" convolution as the products of a direct (im2col) convolution on the true
    output size (n*h*w columns): forward w (c_out, c_in*9) @ columns, weight gradient columns @
    g.T, input gradient w.T @ g (not for the first, whose input is the pixels); 2x2 pooling after
    a block's last convolution halves the side. That is the work of the usual algorithm, not of
    the kit's: its Winograd convolutions multiply 2.25x less and skip the outputs the pooling
    drops, so a CNN epoch can take less than this floor."""
    products, f32 = Products(), np.float32
    side, c_in, n_in = IMAGE_SIDE, 1, N_PIXELS
    for c_out in config.conv_channels if config.arch == "cnn" else ():
        for _ in range(config.convs_per_block):
            k, cols = c_in * 9, batch * side * side
            w, x_cols = rng.random((c_out, k), dtype=f32), rng.random((k, cols), dtype=f32)
            g = rng.random((c_out, cols), dtype=f32)
            products.add(w, x_cols)
            products.add(x_cols, g.T)
            if c_in > 1:
                products.add(w.T, g)
            c_in = c_out
        side //= 2
        n_in = c_in * side * side
    sizes = [n_in, *config.hidden, N_CLASSES]
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        x, w, g = (
            rng.random((batch, a), dtype=f32),
            rng.random((a, b), dtype=f32),
            rng.random((batch, b), dtype=f32),
        )
        products.add(x, w)
        products.add(x.T, g)
        if i > 0 or config.arch == "cnn":
            products.add(g, w.T)
    return products, products.flops


def floor_epoch(step: Products, n_batches: int) -> float:
    """Seconds for one epoch's worth (n_batches steps) of the network's products alone."""
    started = time.perf_counter()
    for _ in range(n_batches):
        step()
    return time.perf_counter() - started
