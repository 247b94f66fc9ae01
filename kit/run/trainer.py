"""Training one network: epochs of shuffled mini-batches through its training step, validation
after each epoch, the best epoch's weights kept.

    result = fit(config, x_train, y_train, x_val, y_val, rng)   # result.network: the best epoch

Trainer.train_epoch is the loop the notebook the kit grew from wrote in a few lines: shuffle,
cut into batches, one Network.train_step per batch (kit.nn.replicas runs it data-parallel for
a CNN). fit adds around it what a competitor needs: the best epoch by validation accuracy,
early stopping, a readable line per epoch, Ctrl-C that keeps the best so far, and the state a
stopped run resumes from.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

from kit.config import Config
from kit.core.console import log
from kit.core.errors import KitError
from kit.data.augment import draw_transforms, transform_batch
from kit.nn.metrics import score
from kit.nn.network import Network
from kit.nn.optim import OPTIMIZERS
from kit.nn.replicas import Prepare, Replicas
from kit.nn.schedules import SCHEDULES
from kit.run.model import build_network


class Trainer:
    """One network with its optimiser and schedule, and the buffers every batch reuses.

    Per batch train_epoch gathers the rows from the contiguous float32 array, draws their
    augmentation, asks the schedule for the learning rate and makes one training step; nothing
    else: the labels are put in the epoch's order once (a batch's labels are a slice), and the
    predictions go into one array that is counted at the end."""

    def __init__(self, config: Config, n_features: int, n_epochs: int, rng: np.random.Generator) -> None:
        self.config, self.rng, self.n_epochs = config, rng, n_epochs
        self.network = build_network(config, rng)
        self.optimizer = OPTIMIZERS[config.optimizer](
            self.network.parameters,
            weight_decay=config.weight_decay,
            momentum=config.momentum,
            grad_clip=config.grad_clip,
        )
        self.schedule = SCHEDULES[config.schedule](config.lr, n_epochs, config.warmup_epochs)
        self.replicas = Replicas.for_cores(self.network)
        self.batch_x = np.empty((config.batch_size, n_features), dtype=np.float32)
        self.augmented = np.empty_like(self.batch_x)
        self.predicted = np.empty(0, dtype=np.intp)
        self.lr = config.lr

    def train_epoch(self, epoch: int, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        """One pass over (x (n, 784) float32, y (n,)) in a fresh random order -> (mean loss, accuracy)."""
        config, n_rows, batch_size = self.config, len(x), self.config.batch_size
        order = self.rng.permutation(n_rows)
        y_order = np.take(y, order)
        if len(self.predicted) != n_rows:
            self.predicted = np.empty(n_rows, dtype=np.intp)
        predicted = self.predicted
        self.replicas.reseed_dropout(self.rng)
        n_batches = math.ceil(n_rows / batch_size)
        loss_sum, correct, counted = 0.0, 0, 0
        batches = tqdm(range(n_batches), desc=f"epoch {epoch}", unit="batch", disable=None, leave=False)
        with self.replicas.one_blas_thread_each():
            for b in batches:
                start, stop = b * batch_size, min((b + 1) * batch_size, n_rows)
                # the indices are valid, and mode="clip" spares take() its bounds-checked extra copy
                xb = np.take(x, order[start:stop], axis=0, out=self.batch_x[: stop - start], mode="clip")
                augment = self.augmenter(stop - start) if config.augment else None
                self.lr = self.schedule.lr(epoch - 1 + b / n_batches)
                loss = self.replicas.train_step(
                    xb, y_order[start:stop], self.optimizer, self.lr, predicted[start:stop], augment
                )
                loss_sum += loss * (stop - start)
                if not batches.disable and b % 20 == 0:
                    correct += int(np.count_nonzero(predicted[counted:stop] == y_order[counted:stop]))
                    counted = stop
                    batches.set_postfix(
                        loss=f"{loss_sum / stop:.4f}", acc=f"{correct / stop:.4f}", refresh=False
                    )
        batches.close()
        correct += int(np.count_nonzero(predicted[counted:] == y_order[counted:]))
        return loss_sum / n_rows, correct / n_rows

    def augmenter(self, n: int) -> Prepare:
        """The batch's random transforms, drawn now from the run's rng (kit.data.augment), and
        what applies them to a part of the batch, in the thread that trains on that part."""
        c = self.config
        transforms = draw_transforms(n, self.rng, c.max_shift, c.max_rotate, c.max_scale, c.max_warp)

        def augment(rows: np.ndarray, part: slice) -> np.ndarray:
            return transform_batch(rows, *(t[part] for t in transforms), out=self.augmented[part])

        return augment

    def validate(self, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        """(mean cross-entropy, accuracy) of the network on the validation rows, a part of the
        rows per replica (one BLAS thread each), as the training step splits a batch."""
        return score(self.replicas.predict_proba(x, self.config.eval_batch_size), y)

    def close(self) -> None:
        """Stop the replicas' threads (they also end with the process)."""
        self.replicas.close()


# --------------------------------------------------------------------------- fit: epochs, best epoch


@dataclass
class FitState:
    """Where one fit() stands after its last finished epoch. With the running arrays (network,
    optimiser moments, schedule, rng) that on_epoch receives beside it, it is everything a
    resumed run needs to continue exactly as if it had not stopped."""

    epoch: int = 0  # epochs finished
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    best_key: tuple[float, float] | None = None  # (val accuracy, -val loss) of the best epoch
    since_best: int = 0
    best: dict[str, np.ndarray] | None = None  # the best epoch's weights (with validation rows)
    running: dict | None = None  # on resume: {"network", "optimizer", "schedule", "rng"} to restore


@dataclass
class FitResult:
    network: Network
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0  # 1-based; 0 when no epoch finished
    interrupted: bool = False


def fit(
    config: Config,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray | None,
    y_val: np.ndarray | None,
    rng: np.random.Generator,
    n_epochs: int | None = None,
    member: int = 0,
    label: str = "",
    on_best: Callable[[Network, list[dict]], None] | None = None,
    on_epoch: Callable[[FitState, dict], None] | None = None,
    resume: FitState | None = None,
) -> FitResult:
    """Train one network from scratch (or from `resume`). With validation data, the returned
    network holds the best epoch's weights (highest val accuracy, ties to lower val loss);
    without, the last epoch's.

    x_*: (n, 784) float32 in [0, 1]; y_*: (n,) integer labels. Ctrl-C ends training early and
    returns what was best so far (interrupted=True). on_best(network, history so far) is called
    after every epoch that becomes the best, while the network holds that epoch's weights;
    on_epoch(state, running arrays) after every epoch, to save what a resumed run needs."""
    n_epochs = n_epochs or config.epochs
    trainer = Trainer(config, x_train.shape[1], n_epochs, rng)
    network = trainer.network
    has_val = x_val is not None and len(x_val) > 0
    state = resume or FitState()
    if resume is not None:
        network.load_state(resume.running["network"])
        trainer.optimizer.load_state(resume.running["optimizer"])
        trainer.schedule.load_state(resume.running["schedule"])
        rng.bit_generator.state = resume.running["rng"]
    result = FitResult(network=network, history=state.history)
    epochs_bar = tqdm(
        range(state.epoch + 1, n_epochs + 1),
        total=n_epochs,
        initial=state.epoch,
        desc=f"{label}epochs",
        unit="epoch",
        disable=None,
        leave=False,
    )
    # Overflow shows up as a non-finite loss, checked after every epoch with a clear message.
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        try:
            for epoch in epochs_bar:
                if config.patience and state.since_best >= config.patience:
                    log(f"early stop: no better validation accuracy for {config.patience} epochs")
                    break
                started = time.perf_counter()
                train_loss, train_acc = trainer.train_epoch(epoch, x_train, y_train)
                if not np.isfinite(train_loss):
                    raise KitError(
                        f"training diverged in epoch {epoch} (loss {train_loss}); lower the learning rate "
                        f"(LR=) from {config.lr} or pick another optimizer"
                    )
                row = dict(
                    member=member,
                    epoch=epoch,
                    train_loss=train_loss,
                    train_acc=train_acc,
                    val_loss=float("nan"),
                    val_acc=float("nan"),
                    lr=trainer.lr,
                )
                if has_val:
                    val_loss, val_acc = trainer.validate(x_val, y_val)
                    row.update(val_loss=val_loss, val_acc=val_acc)
                    trainer.schedule.end_epoch(val_loss)
                    key = (val_acc, -val_loss)
                    if state.best_key is None or key > tuple(state.best_key):
                        state.best_key, state.best, state.since_best = key, network.copy_state(), 0
                        state.best_epoch = epoch
                    else:
                        state.since_best += 1
                else:
                    state.best_epoch = epoch
                row["seconds"] = time.perf_counter() - started
                state.epoch = epoch
                state.history.append(row)
                log(format_epoch(row, n_epochs, best=state.best_epoch == epoch and has_val))
                if on_best is not None and state.best_epoch == epoch:
                    on_best(network, state.history)
                if on_epoch is not None:
                    running = {
                        "network": network.state(),
                        "optimizer": trainer.optimizer.state(),
                        "schedule": trainer.schedule.state(),
                        "rng": rng.bit_generator.state,
                    }
                    on_epoch(state, running)
        except KeyboardInterrupt:
            result.interrupted = True
            log("interrupted: keeping the best epoch so far")
        finally:
            epochs_bar.close()
            trainer.close()
    if state.best is not None:
        network.load_state(state.best)
    result.best_epoch = state.best_epoch
    return result


def evaluate(
    network: Network, x: np.ndarray, y: np.ndarray, batch_size: int = 4096
) -> tuple[float, float, np.ndarray]:
    """(mean cross-entropy, accuracy, probabilities (n, 10)) of a network on float32 x (n, 784)."""
    probs = network.predict_proba(x, batch_size)
    return (*score(probs, y), probs)


def format_epoch(row: dict, n_epochs: int, best: bool) -> str:
    text = f"epoch {row['epoch']:>3}/{n_epochs}  loss {row['train_loss']:.4f}  acc {row['train_acc']:.4f}"
    if not math.isnan(row["val_acc"]):
        text += f"  val_loss {row['val_loss']:.4f}  val_acc {row['val_acc']:.4f}"
    text += f"  lr {row['lr']:.2e}  {row['seconds']:.1f}s"
    return text + ("  *" if best else "")
