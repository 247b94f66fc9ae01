"""Optimisers and learning-rate schedules, each in a registry so a new one drops in
without touching the training loop.

An optimiser updates parameters in place: step(lr) walks the (param, grad, decay) triples
it was given at construction. `decay` is True for weight matrices and False for biases and
batch-norm parameters, which are not weight-decayed.
"""

from __future__ import annotations

import math

import numpy as np


def merge_slots(slots: list[tuple[np.ndarray, np.ndarray, bool]]) -> list[tuple[np.ndarray, np.ndarray, bool]]:
    """The same (param, grad, decay) triples with neighbours in memory joined into one flat pair.

    Network packs its parameters (and, in the same order, their gradients) into one contiguous
    buffer each, weight matrices first, so the six arrays of a 784-128-64-10 network become two
    flat slots (decayed, not decayed) and an optimiser step is a handful of long array
    operations instead of dozens of short ones. Elementwise updates give bit-identical results
    either way; slots that are not neighbours (any list of separate arrays) stay as they are."""
    merged: list[tuple[np.ndarray, np.ndarray, bool]] = []
    run: list[tuple[np.ndarray, np.ndarray, bool]] = []

    def address(slot) -> tuple[int, int, int]:
        base = _base(slot[0])
        return (0, id(base), _offset(slot[0], base)) if base is not None else (1, 0, 0)

    def flush() -> None:
        if len(run) == 1:
            merged.append(run[0])
        elif run:
            merged.append((_join([p for p, _, _ in run]), _join([g for _, g, _ in run]), run[0][2]))
        run.clear()

    for slot in sorted(slots, key=address):  # stable: separate arrays keep their order
        if run and not (_follows(run[-1][0], slot[0]) and _follows(run[-1][1], slot[1]) and slot[2] == run[-1][2]):
            flush()
        run.append(slot)
    flush()
    return merged


def _base(a: np.ndarray) -> np.ndarray | None:
    base = a.base
    ok = (isinstance(base, np.ndarray) and base.ndim == 1 and base.flags.c_contiguous
          and base.dtype == a.dtype and a.flags.c_contiguous)
    return base if ok else None


def _offset(a: np.ndarray, base: np.ndarray) -> int:
    return (a.__array_interface__["data"][0] - base.__array_interface__["data"][0]) // a.itemsize


def _follows(a: np.ndarray, b: np.ndarray) -> bool:
    """True when b starts right where a ends, both contiguous views of one flat array."""
    base = _base(a)
    return base is not None and _base(b) is base and _offset(a, base) + a.size == _offset(b, base)


def _join(arrays: list[np.ndarray]) -> np.ndarray:
    base = _base(arrays[0])
    start = _offset(arrays[0], base)
    return base[start:start + sum(a.size for a in arrays)]


class Optimizer:
    def __init__(self, slots: list[tuple[np.ndarray, np.ndarray, bool]], weight_decay: float = 0.0,
                 momentum: float = 0.9, grad_clip: float = 0.0) -> None:
        self.slots = slots
        self.groups = merge_slots(slots)  # what the updates walk: the slots, neighbours joined
        self.weight_decay = weight_decay
        self.momentum = momentum
        self.grad_clip = grad_clip
        self.t = 0
        self.scratch = [np.empty_like(p) for p, _, _ in self.groups]

    def step(self, lr: float) -> None:
        self.t += 1
        if self.grad_clip:
            self._clip()
        for i, (param, grad, decay) in enumerate(self.groups):
            self.update(i, param, grad, decay, lr)

    def update(self, i: int, param: np.ndarray, grad: np.ndarray, decay: bool, lr: float) -> None:
        raise NotImplementedError

    def _clip(self) -> None:
        norm = math.sqrt(sum(float(np.vdot(g, g)) for _, g, _ in self.slots))
        if norm > self.grad_clip:
            for _, grad, _ in self.slots:
                grad *= self.grad_clip / norm

    def _l2(self, i: int, param: np.ndarray, grad: np.ndarray, decay: bool) -> None:
        """Coupled L2: add weight_decay * param to the gradient."""
        if decay and self.weight_decay:
            tmp = self.scratch[i]
            np.multiply(param, self.weight_decay, out=tmp)
            grad += tmp

    def state(self) -> dict[str, np.ndarray]:
        return {}


class SGD(Optimizer):
    """Plain mini-batch gradient descent (the reference): param -= lr * grad."""

    def update(self, i, param, grad, decay, lr):
        self._l2(i, param, grad, decay)
        grad *= lr
        param -= grad


class Momentum(Optimizer):
    """Heavy-ball momentum: v = mu v + grad; param -= lr v."""

    nesterov = False

    def __init__(self, slots, **kwargs):
        super().__init__(slots, **kwargs)
        self.velocity = [np.zeros_like(p) for p, _, _ in self.groups]

    def update(self, i, param, grad, decay, lr):
        self._l2(i, param, grad, decay)
        v, tmp = self.velocity[i], self.scratch[i]
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
    beta2 = 0.999
    eps = 1e-8

    def __init__(self, slots, **kwargs):
        super().__init__(slots, **kwargs)
        self.m = [np.zeros_like(p) for p, _, _ in self.groups]
        self.v = [np.zeros_like(p) for p, _, _ in self.groups]

    def step(self, lr):
        b1, b2 = self.momentum, self.beta2
        t = self.t + 1
        # fold both bias corrections into one step size (Kingma & Ba, section 2)
        self._step_size = lr * math.sqrt(1 - b2**t) / (1 - b1**t)
        self._eps_hat = self.eps * math.sqrt(1 - b2**t)
        self._lr = lr
        super().step(lr)

    def update(self, i, param, grad, decay, lr):
        b1, b2 = self.momentum, self.beta2
        if self.decoupled:
            if decay and self.weight_decay:
                param *= 1 - lr * self.weight_decay
        else:
            self._l2(i, param, grad, decay)
        m, v, tmp = self.m[i], self.v[i], self.scratch[i]
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
