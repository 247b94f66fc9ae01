"""Optimisers and learning-rate schedules, each in a registry so a new one drops in
without touching the training loop.

An optimiser updates a FlatParameters in place: step(lr) walks its two groups, the decayed
entries (weight matrices and kernels) and the rest (biases, batch-norm scales and shifts), which
are not weight-decayed.
"""

from __future__ import annotations

import math
from collections.abc import Callable

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

    def step(
        self, lr: float, parts: int = 1, run: Callable[[list[Callable[[], None]]], None] | None = None
    ) -> None:
        """Update every parameter from its gradient. With `parts` > 1 each group is cut into
        that many slices, and `run` receives one task per slice index, to run them at once (the
        trainer's threads: every update is elementwise, so slices are independent)."""
        self.t += 1
        if self.grad_clip:
            self._clip()

        def task(k: int) -> Callable[[], None]:
            def update_slices() -> None:
                for i, (param, grad, decay) in enumerate(self.groups):
                    sl = slice(len(param) * k // parts, len(param) * (k + 1) // parts)
                    self.update(i, sl, param[sl], grad[sl], decay, lr)

            return update_slices

        tasks = [task(k) for k in range(parts)]
        if run is None:
            for update_slices in tasks:
                update_slices()
        else:
            run(tasks)

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

    def step(self, lr, parts=1, run=None):
        b1, b2 = self.momentum, self.beta2
        t = self.t + 1
        # fold both bias corrections into one step size (Kingma & Ba, section 2)
        self._step_size = lr * math.sqrt(1 - b2**t) / (1 - b1**t)
        self._eps_hat = self.eps * math.sqrt(1 - b2**t)
        super().step(lr, parts, run)

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


# --------------------------------------------------------------------------- schedules


class Schedule:
    """Learning rate as a function of training progress (epochs as a float, e.g. 2.5).

    lr(progress) is called before every step; end_epoch(val_loss) after every epoch, for
    schedules that react to validation (plateau).
    """

    def __init__(self, base_lr: float, n_epochs: int, warmup_epochs: float = 0.0) -> None:
        self.base_lr = base_lr
        self.n_epochs = n_epochs
        self.warmup_epochs = warmup_epochs

    def lr(self, progress: float) -> float:
        return self.base_lr

    def end_epoch(self, val_loss: float) -> None:
        pass

    def state(self) -> dict:
        """Numbers only (JSON): what a resumed run needs to continue the schedule."""
        return dict(vars(self))

    def load_state(self, state: dict) -> None:
        vars(self).update(state)


class Constant(Schedule):
    pass


class Step(Schedule):
    """Divide by 10 at 50% and 75% of training."""

    def lr(self, progress):
        fraction = progress / self.n_epochs
        return self.base_lr * (0.1 ** ((fraction >= 0.5) + (fraction >= 0.75)))


class Cosine(Schedule):
    """Half a cosine from base_lr down to 0 over all epochs."""

    def lr(self, progress):
        return self.base_lr * 0.5 * (1 + math.cos(math.pi * min(progress / self.n_epochs, 1.0)))


class WarmupCosine(Schedule):
    """Linear warm-up over warmup_epochs, then cosine decay to 0."""

    def lr(self, progress):
        warm = self.warmup_epochs
        if warm > 0 and progress < warm:
            return self.base_lr * progress / warm
        span = max(self.n_epochs - warm, 1e-9)
        fraction = min((progress - warm) / span, 1.0)
        return self.base_lr * 0.5 * (1 + math.cos(math.pi * fraction))


class OneCycle(Schedule):
    """Smith's one-cycle: cosine up from base/25 to base over the first 30%, then cosine down to base/1e4."""

    def lr(self, progress):
        fraction = min(progress / self.n_epochs, 1.0)
        start, peak, end = self.base_lr / 25, self.base_lr, self.base_lr / 1e4
        if fraction < 0.3:
            t = fraction / 0.3
            return start + (peak - start) * 0.5 * (1 - math.cos(math.pi * t))
        t = (fraction - 0.3) / 0.7
        return end + (peak - end) * 0.5 * (1 + math.cos(math.pi * t))


class Plateau(Schedule):
    """Reduce on plateau: halve the rate after 2 epochs without a lower validation loss."""

    factor = 0.5
    patience = 2

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.current = self.base_lr
        self.best = math.inf
        self.bad_epochs = 0

    def lr(self, progress):
        return self.current

    def end_epoch(self, val_loss):
        if val_loss < self.best - 1e-4:
            self.best, self.bad_epochs = val_loss, 0
            return
        self.bad_epochs += 1
        if self.bad_epochs > self.patience:
            self.current *= self.factor
            self.bad_epochs = 0


SCHEDULES: dict[str, type[Schedule]] = {
    "constant": Constant,
    "step": Step,
    "cosine": Cosine,
    "warmup_cosine": WarmupCosine,
    "onecycle": OneCycle,
    "plateau": Plateau,
}
