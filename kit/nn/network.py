"""A network is a stack of layers plus the fused softmax cross-entropy; a Model is one or more
networks (an ensemble) with the config that built them, saved to and loaded from one .npz.

    Network.forward(x (batch, 784) float32, training) -> logits (batch, 10)
    Network.backward() after loss(...) -> fills every layer's grads
    Model.predict_proba(x) -> mean of the members' softmax, (n, 10)
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from kit.core.blas import blas_threads_now, limit_blas
from kit.core.errors import KitError
from kit.core.mnist import N_CLASSES
from kit.nn import image_layers
from kit.nn import layers as L
from kit.nn.losses import SoftmaxCrossEntropy, softmax
from kit.nn.optim import FlatParameters


class Network:
    def __init__(self, layers: list[L.Layer], label_smoothing: float = 0.0) -> None:
        self.layers = layers
        self.loss_fn = SoftmaxCrossEntropy(label_smoothing)
        self.parameters = self.flatten_parameters()

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        for layer in self.layers:
            x = layer.forward(x, training)
        return x

    def loss(self, logits: np.ndarray, labels: np.ndarray, predicted: np.ndarray | None = None) -> float:
        """Mean loss of logits against labels; `predicted`, when given, receives the argmax of every row."""
        return self.loss_fn.forward(logits, labels, predicted)

    def backward(self, rows: int | None = None) -> None:
        """Gradients of the mean loss over the last forward's rows (or over `rows` rows, of
        which these are a part)."""
        grad = self.loss_fn.backward(rows)
        for layer in reversed(self.layers):
            grad = layer.backward(grad)
            if grad is None:
                break

    def flatten_parameters(self) -> FlatParameters:
        """Move every parameter and gradient into one flat vector each (kit.optim.FlatParameters,
        weights and kernels first) and give the layers views into them; values are unchanged.
        Layers always write their gradients in place into grads[...], so the views stay live."""
        parameters = FlatParameters(
            [
                (f"{i}.{name}", value, name == "w")
                for i, layer in enumerate(self.layers)
                for name, value in layer.params.items()
            ]
        )
        for i, layer in enumerate(self.layers):
            for name in layer.params:
                layer.params[name] = parameters.value(f"{i}.{name}")
                layer.grads[name] = parameters.grad(f"{i}.{name}")
        return parameters

    def replica(self) -> Network:
        """A network that computes with this one's weights and buffers (the same arrays, not
        copies) into gradients and caches of its own: kit.train.Trainer runs it in a second
        thread on another part of each batch (or of the validation rows). Its batch norm uses
        this network's running averages and does not update them. Its gradients are one flat
        vector, replica.parameters.grads, laid out as this one's."""
        twin = copy.deepcopy(self)
        for i, (layer, own) in enumerate(zip(twin.layers, self.layers)):
            for name in layer.params:
                layer.params[name] = self.parameters.value(f"{i}.{name}")
                layer.grads[name] = twin.parameters.grad(f"{i}.{name}")
            layer.buffers = own.buffers
            if isinstance(layer, L.BatchNorm):
                layer.track_running = False
        twin.parameters.values = self.parameters.values
        return twin

    def state(self) -> dict[str, np.ndarray]:
        """Every array needed to predict: parameters and buffers, keyed 'layer index.name'."""
        out = {}
        for i, layer in enumerate(self.layers):
            for name, value in {**layer.params, **layer.buffers}.items():
                out[f"{i}.{name}"] = value
        return out

    def copy_state(self) -> dict[str, np.ndarray]:
        return {k: v.copy() for k, v in self.state().items()}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        for key, target in self.state().items():
            if key not in state or state[key].shape != target.shape:
                raise KitError(f"model file does not match its config (array {key}); train the model again")
            target[...] = state[key]

    def predict_proba(self, x: np.ndarray, batch_size: int = 4096) -> np.ndarray:
        """Softmax probabilities (n, 10) of float32 inputs (n, 784), evaluated in large batches."""
        out = np.empty((len(x), N_CLASSES), dtype=np.float32)
        for start in range(0, len(x), batch_size):
            logits = self.forward(x[start : start + batch_size], training=False)
            out[start : start + batch_size] = softmax(logits)
        return out


class Replicas:
    """A network and n - 1 replicas of it (Network.replica: the same weights and running averages,
    caches and gradients of their own), each to run a part of the rows in a thread of its own
    with one BLAS thread: the data-parallel engine of a CNN's training step (kit.train.Trainer)
    and of its predictions (Model). NumPy runs every elementwise pass on one core, so for a CNN
    this beats one network with n BLAS threads; an MLP's products are small and its elementwise
    share low, so it keeps one network (n = 1)."""

    # a part smaller than this is not worth a thread (and batch norm needs rows)
    min_part_rows = 8

    def __init__(self, network: Network, n: int) -> None:
        self.networks = [network] + [network.replica() for _ in range(n - 1)]
        self.pool = ThreadPoolExecutor(n - 1, thread_name_prefix="kit-replica") if n > 1 else None

    @classmethod
    def for_cores(cls, network: Network) -> Replicas:
        """One network per BLAS thread for a convolutional network, else the network alone."""
        conv = any(isinstance(layer, image_layers.Conv2D) for layer in network.layers)
        return cls(network, blas_threads_now() if conv else 1)

    def run(self, tasks: list[Callable[[], Any]]) -> list[Any]:
        """Run the tasks at once, the first in this thread and the others on the pool's threads;
        their results in order (a task's exception is raised here)."""
        futures = [self.pool.submit(task) for task in tasks[1:]]
        return [tasks[0]()] + [future.result() for future in futures]

    def bounds(self, n_rows: int) -> list[int]:
        """Where n_rows rows are cut into one part per network (fewer when parts would be tiny):
        part i is rows bounds[i]:bounds[i + 1], run by networks[i]."""
        n_parts = min(len(self.networks), n_rows // self.min_part_rows) or 1
        return [n_rows * i // n_parts for i in range(n_parts + 1)]

    def predict_proba(self, x: np.ndarray, batch_size: int) -> np.ndarray:
        """The network's probabilities (n, 10) for x (n, 784), a part of the rows per network."""
        bounds = self.bounds(len(x))
        if len(bounds) == 2:
            return self.networks[0].predict_proba(x, batch_size)
        with limit_blas(1):
            parts = self.run(
                [
                    lambda i=i: self.networks[i].predict_proba(x[bounds[i] : bounds[i + 1]], batch_size)
                    for i in range(len(bounds) - 1)
                ]
            )
        return np.concatenate(parts)

    def close(self) -> None:
        """Stop the pool's threads (they also end with the process)."""
        if self.pool is not None:
            self.pool.shutdown()
