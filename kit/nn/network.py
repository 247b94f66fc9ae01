"""A network: a stack of layers ending in softmax cross-entropy, its parameters in one flat
store, and the one training step everything else repeats.

    forward(x (b, 784) float32, training) -> logits (b, 10)
    train_step(x, y, optimizer, lr) -> loss     one step of mini-batch gradient descent
    predict_proba(x (n, 784)) -> (n, 10)         softmax, evaluated in large batches

train_step is the loop body of the notebook the kit grew from: forward, loss, backward,
update. The trainer (kit.run.trainer) calls it batch after batch; for a convolutional network
on several cores kit.nn.replicas runs the same gradients() on parts of the batch in threads
and makes the same one update.
"""

from __future__ import annotations

import copy

import numpy as np

from kit.core.errors import KitError
from kit.core.mnist import N_CLASSES
from kit.nn import layers as L
from kit.nn.losses import SoftmaxCrossEntropy, softmax
from kit.nn.optim import FlatParameters, Optimizer


class Network:
    """Layers applied in order, then the fused softmax cross-entropy (kit.nn.losses)."""

    def __init__(self, layers: list[L.Layer], label_smoothing: float = 0.0) -> None:
        self.layers = layers
        self.loss_fn = SoftmaxCrossEntropy(label_smoothing)
        self.parameters = self.flatten_parameters()

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        """x (b, 784) float32 in [0, 1] -> logits (b, 10). Training mode: dropout drops, batch
        norm uses the batch's statistics, and every layer keeps what its backward needs."""
        for layer in self.layers:
            x = layer.forward(x, training)
        return x

    # ------------------------------------------------------------------ the training step

    def train_step(
        self,
        x: np.ndarray,
        y: np.ndarray,
        optimizer: Optimizer,
        lr: float,
        predicted: np.ndarray | None = None,
    ) -> float:
        """One step of mini-batch gradient descent on x (b, 784), labels y (b,): the gradients
        of the batch's mean loss, then one update of every parameter. Returns that loss;
        `predicted` (b,), when given, receives each row's predicted class."""
        loss = self.gradients(x, y, predicted=predicted)  # forward, loss, backward
        optimizer.step(lr)  # w -= lr * dL/dw, or what the optimiser makes of it (Adam, momentum)
        return loss

    def gradients(
        self, x: np.ndarray, y: np.ndarray, rows: int | None = None, predicted: np.ndarray | None = None
    ) -> float:
        """Forward, loss, backward: afterwards every layer's grads hold d loss / d parameter
        (in self.parameters.grads). Returns the batch's mean loss. `rows` (default: this
        batch's b) divides the gradient: a replica's part of a larger batch gives its share of
        that batch's mean (kit.nn.replicas)."""
        logits = self.forward(x, training=True)  # (b, 10)
        loss = self.loss_fn.forward(logits, y, predicted)  # mean of -log softmax(logits)[y]
        grad = self.loss_fn.backward(rows)  # d loss / d logits = (softmax - one_hot(y)) / rows
        for layer in reversed(self.layers):  # the chain rule, last layer first
            grad = layer.backward(grad)
            if grad is None:  # the first layer does not compute the pixels' gradient
                break
        return loss

    # ------------------------------------------------------------------ predicting

    def predict_proba(self, x: np.ndarray, batch_size: int = 4096) -> np.ndarray:
        """Softmax probabilities (n, 10) of float32 inputs (n, 784), evaluated in large batches."""
        out = np.empty((len(x), N_CLASSES), dtype=np.float32)
        for start in range(0, len(x), batch_size):
            logits = self.forward(x[start : start + batch_size], training=False)
            out[start : start + batch_size] = softmax(logits)
        return out

    # ------------------------------------------------------------------ parameters and state

    def flatten_parameters(self) -> FlatParameters:
        """Move every parameter and gradient into one flat vector each (kit.nn.optim.FlatParameters,
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
        copies) into gradients and caches of its own, to run another part of each batch in
        another thread (kit.nn.replicas). Its batch norm uses this network's running averages
        and does not update them. Its gradients are one flat vector, laid out as this one's."""
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
