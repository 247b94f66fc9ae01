"""Learning-rate schedules, in a registry so a new one drops in without touching the training loop.

A schedule gives the learning rate as a function of training progress, in epochs as a float
(2.5: half-way through the third epoch); the trainer asks before every step.
"""

from __future__ import annotations

import math


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
