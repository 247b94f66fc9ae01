"""Data parallelism over the cores: Network.train_step with the batch cut into parts.

Why: NumPy runs every elementwise pass (a convolution's gathers, pooling, batch norm) on one
core, whatever the BLAS threads. So a convolutional network on two cores trains faster as two
networks, each with one BLAS thread on half the batch, than as one network with two BLAS
threads (docs/performance.md has the numbers). An MLP's passes are few and its products small,
so it keeps one network and its step is exactly Network.train_step.

    replicas = Replicas.for_cores(network)        # one network per BLAS thread for a CNN
    loss = replicas.train_step(x, y, optimizer, lr)

The step, with n parts:
1. cut the batch into n parts; replica i (the same weight arrays, gradients and caches of its
   own) runs Network.gradients on part i in thread i, each part's gradient divided by the
   whole batch's rows;
2. sum the replicas' gradients into the network's (a slice of the vector per thread);
3. one optimiser update (a share of the parameters per thread).
The result is the whole batch's gradient step, except that batch norm normalises each part with
its own statistics (as data-parallel GPUs do); the running averages come from the first part.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from kit.core.blas import blas_threads_now, limit_blas
from kit.nn import layers as L
from kit.nn.conv import Conv2D
from kit.nn.network import Network
from kit.nn.optim import Optimizer

# prepare(x_part, part) -> the rows the network trains on (e.g. augmented), run in the part's thread
Prepare = Callable[[np.ndarray, slice], np.ndarray]


class Replicas:
    """A network and n - 1 replicas of it (Network.replica), one per thread."""

    # a part smaller than this is not worth a thread (and batch norm needs rows)
    min_part_rows = 8

    def __init__(self, network: Network, n: int) -> None:
        self.network = network
        self.networks = [network] + [network.replica() for _ in range(n - 1)]
        self.pool = ThreadPoolExecutor(n - 1, thread_name_prefix="kit-replica") if n > 1 else None

    @classmethod
    def for_cores(cls, network: Network) -> Replicas:
        """One network per BLAS thread for a convolutional network, else the network alone."""
        conv = any(isinstance(layer, Conv2D) for layer in network.layers)
        return cls(network, blas_threads_now() if conv else 1)

    def parts(self, n_rows: int) -> list[slice]:
        """n_rows cut into one part per network (fewer when parts would be tiny)."""
        return shares(n_rows, min(len(self.networks), n_rows // self.min_part_rows) or 1)

    def at_once(self, function: Callable[[int, Any], Any], items: list) -> list:
        """function(i, items[i]) for every item at once: item 0 in this thread, the others on the
        pool's threads; the results in order (an exception is raised here)."""
        futures = [self.pool.submit(function, i, item) for i, item in enumerate(items) if i]
        return [function(0, items[0])] + [future.result() for future in futures]

    def one_blas_thread_each(self) -> contextlib.AbstractContextManager:
        """With several networks, BLAS on one thread while they run (each is one core's work)."""
        return limit_blas(1) if len(self.networks) > 1 else contextlib.nullcontext()

    def reseed_dropout(self, rng: np.random.Generator) -> None:
        """New dropout generators for the replicas, drawn from the run's rng (a resumed epoch
        then draws the same masks); the network keeps its own."""
        for replica in self.networks[1:]:
            for layer in replica.layers:
                if isinstance(layer, L.Dropout):
                    layer.rng = np.random.default_rng(rng.integers(1 << 63))

    # ------------------------------------------------------------------ the step

    def train_step(
        self,
        x: np.ndarray,
        y: np.ndarray,
        optimizer: Optimizer,
        lr: float,
        predicted: np.ndarray | None = None,
        prepare: Prepare | None = None,
    ) -> float:
        """Network.train_step on the batch (x (b, 784), y (b,)), one part per network; returns
        the batch's mean loss. `prepare` turns each part's rows into what it trains on (the
        trainer augments there, in the part's own thread)."""
        parts = self.parts(len(x))
        if len(parts) == 1:  # one network: exactly the plain step
            inputs = x if prepare is None else prepare(x, parts[0])
            return self.network.train_step(inputs, y, optimizer, lr, predicted)

        def part_gradients(i: int, part: slice) -> float:
            inputs = x[part] if prepare is None else prepare(x[part], part)
            out = None if predicted is None else predicted[part]
            return self.networks[i].gradients(inputs, y[part], rows=len(x), predicted=out)

        # 1. every network's forward, loss and backward on its part, at once
        losses = self.at_once(part_gradients, parts)
        # 2. the parts' gradients summed into the network's, a share of the vector per thread
        running = self.networks[1 : len(parts)]
        vector_shares = shares(len(self.network.parameters.grads), len(parts))
        self.at_once(lambda _, share: self._add_gradients(running, share), vector_shares)
        # 3. one update, a share of the parameters per thread
        optimizer.start_step(lr)
        self.at_once(lambda k, _: optimizer.update_share(lr, k, len(parts)), parts)
        return sum(loss * (part.stop - part.start) for loss, part in zip(losses, parts)) / len(x)

    def _add_gradients(self, replicas: list[Network], share: slice) -> None:
        """The replicas' gradients added into the network's, over one share of the vector."""
        grads = self.network.parameters.grads
        for replica in replicas:
            grads[share] += replica.parameters.grads[share]

    # ------------------------------------------------------------------ predicting

    def predict_proba(self, x: np.ndarray, batch_size: int) -> np.ndarray:
        """The network's probabilities (n, 10) for x (n, 784), a part of the rows per network."""
        parts = self.parts(len(x))
        if len(parts) == 1:
            return self.network.predict_proba(x, batch_size)
        with limit_blas(1):
            probabilities = self.at_once(
                lambda i, part: self.networks[i].predict_proba(x[part], batch_size), parts
            )
        return np.concatenate(probabilities)

    def close(self) -> None:
        """Stop the pool's threads (they also end with the process)."""
        if self.pool is not None:
            self.pool.shutdown()


def shares(n: int, k: int) -> list[slice]:
    """0..n cut into k consecutive slices of nearly equal size."""
    return [slice(n * i // k, n * (i + 1) // k) for i in range(k)]
