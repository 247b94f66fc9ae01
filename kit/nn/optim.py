"""Optimisers, in a registry so a new one drops in without touching the training loop, and the
flat parameter store they update.

An optimiser updates a FlatParameters in place: step(lr) walks its two groups, the decayed
entries (weight matrices and kernels) and the rest (biases, batch-norm scales and shifts), which
are not weight-decayed. The learning rate comes from a schedule (kit.nn.schedules).
"""

from __future__ import annotations

import math

import numpy as np


class FlatParameters:
    """Every trainable array of a network as a view into one flat vector of values and one of
    gradients, the weight-decayed arrays first, with an index table (scikit-learn's MLP packs its
    coefficients the same way). An optimiser step is then two long array operations (decayed,
    not decayed) whatever the number of layers.

        values, grads: (n,) one dtype;  values[:n_decayed] are the decayed entries
        index: key -> (start, stop, shape)
    """

    def __init__(self, arrays: list[tuple[str, np.ndarray, bool]]) -> None:
        """arrays: (key, initial value, decayed?) for each parameter; values are copied in."""
        ordered = sorted(arrays, key=lambda entry: not entry[2])  # stable: decayed first, in the given order
        dtypes = {value.dtype for _, value, _ in ordered}
        if len(dtypes) > 1:
            raise ValueError(f"parameters of one network share one dtype, not {sorted(map(str, dtypes))}")
        dtype = dtypes.pop() if dtypes else np.float32
        total = sum(value.size for _, value, _ in ordered)
        self.values = np.empty(total, dtype=dtype)
        self.grads = np.zeros(total, dtype=dtype)
        self.n_decayed = sum(value.size for _, value, decay in ordered if decay)
        self.index: dict[str, tuple[int, int, tuple[int, ...]]] = {}
        start = 0
        for key, value, _ in ordered:
            self.index[key] = (start, start + value.size, value.shape)
            self.value(key)[...] = value
            start += value.size

    def value(self, key: str) -> np.ndarray:
        start, stop, shape = self.index[key]
        return self.values[start:stop].reshape(shape)

    def grad(self, key: str) -> np.ndarray:
        start, stop, shape = self.index[key]
        return self.grads[start:stop].reshape(shape)

    def groups(self) -> list[tuple[np.ndarray, np.ndarray, bool]]:
        """(values, grads, decayed) for the decayed and the other entries, the empty ones left out."""
        n = self.n_decayed
        parts = [(self.values[:n], self.grads[:n], True), (self.values[n:], self.grads[n:], False)]
        return [part for part in parts if part[0].size]


class Optimizer:
    """Updates a FlatParameters' values in place from its gradients; step(lr) once per batch."""

    moments: tuple[str, ...] = ()  # attributes holding one array per group (saved for a resumed run)

    def __init__(
        self,
        parameters: FlatParameters,
        weight_decay: float = 0.0,
        momentum: float = 0.9,
        grad_clip: float = 0.0,
    ) -> None:
        self.parameters = parameters
        self.groups = parameters.groups()
        self.weight_decay = weight_decay
        self.momentum = momentum
        self.grad_clip = grad_clip
        self.t = 0
        self.scratch = [np.empty_like(p) for p, _, _ in self.groups]

    def step(self, lr: float) -> None:
        """Update every parameter from its gradient, once per batch."""
        self.start_step(lr)
        self.update_share(lr, 0, 1)

    def start_step(self, lr: float) -> None:
        """What a step does once, before its updates: count it, clip the gradients."""
        self.t += 1
        if self.grad_clip:
            self._clip()

    def update_share(self, lr: float, k: int, n: int) -> None:
        """Update share k of n of the parameters: a slice of each group. Every update is
        elementwise, so the shares are independent: kit.nn.replicas runs one per thread."""
        for i, (param, grad, decay) in enumerate(self.groups):
            sl = slice(len(param) * k // n, len(param) * (k + 1) // n)
            self.update(i, sl, param[sl], grad[sl], decay, lr)

    def update(self, i: int, sl: slice, param: np.ndarray, grad: np.ndarray, decay: bool, lr: float) -> None:
        """Update param = group i's values[sl] from grad = its grads[sl] (moments: [i][sl])."""
        raise NotImplementedError

    def state(self) -> dict[str, np.ndarray]:
        """The step count and every moment array: what a resumed run needs to go on exactly."""
        out = {"t": np.array(self.t)}
        for name in self.moments:
            for i, array in enumerate(getattr(self, name)):
                out[f"{name}.{i}"] = array
        return out

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        self.t = int(state["t"])
        for name in self.moments:
            for i, array in enumerate(getattr(self, name)):
                array[...] = state[f"{name}.{i}"]

    def _clip(self) -> None:
        grads = self.parameters.grads
        norm = math.sqrt(float(np.vdot(grads, grads)))
        if norm > self.grad_clip:
            grads *= self.grad_clip / norm

    def _l2(self, i: int, sl: slice, param: np.ndarray, grad: np.ndarray, decay: bool) -> None:
        """Coupled L2: add weight_decay * param to the gradient."""
        if decay and self.weight_decay:
            tmp = self.scratch[i][sl]
            np.multiply(param, self.weight_decay, out=tmp)
            grad += tmp


class SGD(Optimizer):
    """Plain mini-batch gradient descent (the reference): param -= lr * grad."""

    def update(self, i, sl, param, grad, decay, lr):
        self._l2(i, sl, param, grad, decay)
        grad *= lr
        param -= grad


class Momentum(Optimizer):
    """Heavy-ball momentum: v = mu v + grad; param -= lr v."""

    nesterov = False
    moments = ("velocity",)

    def __init__(self, parameters, **kwargs):
        super().__init__(parameters, **kwargs)
        self.velocity = [np.zeros_like(p) for p, _, _ in self.groups]

    def update(self, i, sl, param, grad, decay, lr):
        self._l2(i, sl, param, grad, decay)
        v, tmp = self.velocity[i][sl], self.scratch[i][sl]
        v *= self.momentum
        v += grad
        if self.nesterov:
            # look-ahead form: param -= lr (grad + mu v)
            np.multiply(v, self.momentum, out=tmp)
            grad += tmp
            grad *= lr
            param -= grad
        else:
            np.multiply(v, lr, out=tmp)
            param -= tmp


class Nesterov(Momentum):
    nesterov = True


class Adam(Optimizer):
    """Adam (Kingma & Ba) with coupled L2; `momentum` is beta1."""

    decoupled = False
    moments = ("m", "v")
    beta2 = 0.999
    eps = 1e-8

    def __init__(self, parameters, **kwargs):
        super().__init__(parameters, **kwargs)
        self.m = [np.zeros_like(p) for p, _, _ in self.groups]
        self.v = [np.zeros_like(p) for p, _, _ in self.groups]

    def start_step(self, lr):
        super().start_step(lr)
        b1, b2, t = self.momentum, self.beta2, self.t
        # fold both bias corrections into one step size (Kingma & Ba, section 2)
        self._step_size = lr * math.sqrt(1 - b2**t) / (1 - b1**t)
        self._eps_hat = self.eps * math.sqrt(1 - b2**t)

    def update(self, i, sl, param, grad, decay, lr):
        b1, b2 = self.momentum, self.beta2
        if self.decoupled:
            if decay and self.weight_decay:
                param *= 1 - lr * self.weight_decay
        else:
            self._l2(i, sl, param, grad, decay)
        m, v, tmp = self.m[i][sl], self.v[i][sl], self.scratch[i][sl]
        np.multiply(grad, 1 - b1, out=tmp)
        m *= b1
        m += tmp
        np.multiply(grad, grad, out=tmp)
        tmp *= 1 - b2
        v *= b2
        v += tmp
        np.sqrt(v, out=tmp)
        tmp += self._eps_hat
        np.divide(m, tmp, out=tmp)
        tmp *= self._step_size
        param -= tmp


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter): param *= 1 - lr * wd."""

    decoupled = True


OPTIMIZERS: dict[str, type[Optimizer]] = {
    "sgd": SGD,
    "momentum": Momentum,
    "nesterov": Nesterov,
    "adam": Adam,
    "adamw": AdamW,
}
