"""The training loop: epochs of shuffled mini-batches, validation after each epoch, the best
epoch's weights kept (copied on improvement, restored at the end, saved on Ctrl-C), optional
early stopping, refit and ensembles; `train_run` writes the run folder through kit.runs.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from kit.config import Config, describe
from kit.core.blas import blas_threads_now, limit_blas
from kit.core.console import log
from kit.core.errors import KitError
from kit.core.machine import machine_summary
from kit.data.augment import draw_transforms, transform_batch
from kit.data.load import class_counts, load_split, split_arrays
from kit.nn import layers as L
from kit.nn.metrics import score, validation_metrics
from kit.nn.network import Network, Replicas
from kit.nn.optim import OPTIMIZERS, SCHEDULES
from kit.run.folders import (
    drop_resume,
    load_resume,
    load_run_config,
    point_latest,
    save_checkpoint,
    save_resume,
    save_run,
    start_run,
    summary,
)
from kit.run.model import MODEL_FORMAT, Model, build_network


@dataclass
class FitResult:
    network: Network
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0  # 1-based; 0 when no epoch finished
    interrupted: bool = False


def evaluate(
    network: Network, x: np.ndarray, y: np.ndarray, batch_size: int = 4096
) -> tuple[float, float, np.ndarray]:
    """(mean cross-entropy, accuracy, probabilities (n, 10)) of a network on float32 x (n, 784)."""
    probs = network.predict_proba(x, batch_size)
    return (*score(probs, y), probs)


class Trainer:
    """One network with its optimiser and schedule, and the per-step buffers reused across batches.

    train_epoch() is the hot path: gather a batch from the contiguous float32 array, augment it,
    forward, fused softmax cross-entropy, backward, in-place optimiser step. Per batch it does
    no bookkeeping beyond that: the labels are put in the epoch's order once (a batch's labels
    are a slice), predictions go into one array and are counted once at the end.

    A convolutional network trains data-parallel over the BLAS threads it was given
    (kit.network.Replicas): each batch is cut into one part per thread, a replica of the network
    runs each further part in a thread of its own, every network with one BLAS thread; the
    parts' gradients (each divided by the whole batch's rows) are summed and the optimiser steps
    a slice of the parameters per thread. For the CNN this beat one network with two BLAS
    threads by 1.26x (4.82 -> 3.83 s per 6,400 rows, tools/profile_step.py). Batch norm then
    normalises each part with that part's statistics (as data-parallel GPUs do), and the running
    averages come from the first part. Validation rows are split the same way."""

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
        self.batch_x = np.empty((config.batch_size, n_features), dtype=np.float32)
        self.augmented = np.empty_like(self.batch_x)
        self.predicted = np.empty(0, dtype=np.intp)
        self.lr = config.lr
        self.replicas = Replicas.for_cores(self.network)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """The network's probabilities (n, 10) for x (n, 784), a part of the rows per replica
        (one BLAS thread each), as the training step splits a batch."""
        return self.replicas.predict_proba(x, self.config.eval_batch_size)

    def validate(self, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        """(mean cross-entropy, accuracy) of the network on the validation rows."""
        return score(self.predict_proba(x), y)

    def close(self) -> None:
        """Stop the replicas' threads (they also end with the process)."""
        self.replicas.close()

    def step(
        self,
        xb: np.ndarray,
        yb: np.ndarray,
        lr: float,
        predicted: np.ndarray | None = None,
        transforms: tuple[np.ndarray, ...] | None = None,
    ) -> float:
        """One gradient step on a batch (xb (b, 784) float32, yb (b,)): forward, loss, backward,
        update with learning rate lr. Returns the batch's mean loss; `predicted` (b,), when
        given, receives the predictions. `transforms` (kit.augment.draw_transforms for b rows)
        augments the batch first, each part in its own thread."""
        run, networks = self.replicas.run, self.replicas.networks
        bounds = self.replicas.bounds(len(xb))
        n_parts = len(bounds) - 1

        def part(network: Network, i: int) -> float:
            lo, hi = bounds[i], bounds[i + 1]
            out = None if predicted is None else predicted[lo:hi]
            x_part = xb[lo:hi]
            if transforms is not None:
                x_part = transform_batch(x_part, *(t[lo:hi] for t in transforms), out=self.augmented[lo:hi])
            loss = network.loss(network.forward(x_part, training=True), yb[lo:hi], out)
            network.backward(len(xb))  # each part's share of the whole batch's mean gradient
            return loss

        losses = run([lambda i=i: part(networks[i], i) for i in range(n_parts)])
        if n_parts == 1:
            self.optimizer.step(lr)
        else:
            grads = self.network.parameters.grads
            total = len(grads)

            def add_twins(k: int) -> None:  # the parts' gradients summed, a slice per thread
                sl = slice(total * k // n_parts, total * (k + 1) // n_parts)
                for twin in networks[1:n_parts]:
                    grads[sl] += twin.parameters.grads[sl]

            run([lambda k=k: add_twins(k) for k in range(n_parts)])
            self.optimizer.step(lr, n_parts, run)
        return sum(loss * (bounds[i + 1] - bounds[i]) for i, loss in enumerate(losses)) / len(xb)

    def train_epoch(self, epoch: int, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        """One pass over (x (n, 784) float32, y (n,)) in a fresh random order -> (mean loss, accuracy)."""
        n_rows = len(x)
        order = self.rng.permutation(n_rows)
        y_order = np.take(y, order)
        if len(self.predicted) != n_rows:
            self.predicted = np.empty(n_rows, dtype=np.intp)
        predicted = self.predicted
        twins = self.replicas.networks[1:]
        for twin in twins:  # drawn from the run's rng, so a resumed epoch draws the same masks
            for layer in twin.layers:
                if isinstance(layer, L.Dropout):
                    layer.rng = np.random.default_rng(self.rng.integers(1 << 63))
        with limit_blas(1) if twins else contextlib.nullcontext():
            return self._epoch(epoch, x, y_order, order, predicted)

    def _epoch(self, epoch, x, y_order, order, predicted) -> tuple[float, float]:
        config, schedule = self.config, self.schedule
        batch_size, n_rows = config.batch_size, len(x)
        n_batches = math.ceil(n_rows / batch_size)
        loss_sum, correct, counted = 0.0, 0, 0
        batches = tqdm(range(n_batches), desc=f"epoch {epoch}", unit="batch", disable=None, leave=False)
        for b in batches:
            start = b * batch_size
            stop = min(start + batch_size, n_rows)
            # the indices are valid, and mode="clip" spares take() its bounds-checked extra copy
            xb = np.take(x, order[start:stop], axis=0, out=self.batch_x[: stop - start], mode="clip")
            transforms = None
            if config.augment:
                transforms = draw_transforms(
                    stop - start,
                    self.rng,
                    config.max_shift,
                    config.max_rotate,
                    config.max_scale,
                    config.max_warp,
                )
            self.lr = schedule.lr(epoch - 1 + b / n_batches)
            loss_sum += self.step(xb, y_order[start:stop], self.lr, predicted[start:stop], transforms) * (
                stop - start
            )
            if not batches.disable and b % 20 == 0:
                correct += int(np.count_nonzero(predicted[counted:stop] == y_order[counted:stop]))
                counted = stop
                batches.set_postfix(loss=f"{loss_sum / stop:.4f}", acc=f"{correct / stop:.4f}", refresh=False)
        batches.close()
        correct += int(np.count_nonzero(predicted[counted:] == y_order[counted:]))
        return loss_sum / n_rows, correct / n_rows


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
                    on_epoch(
                        state,
                        {
                            "network": network.state(),
                            "optimizer": trainer.optimizer.state(),
                            "schedule": trainer.schedule.state(),
                            "rng": rng.bit_generator.state,
                        },
                    )
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


def format_epoch(row: dict, n_epochs: int, best: bool) -> str:
    text = f"epoch {row['epoch']:>3}/{n_epochs}  loss {row['train_loss']:.4f}  acc {row['train_acc']:.4f}"
    if not math.isnan(row["val_acc"]):
        text += f"  val_loss {row['val_loss']:.4f}  val_acc {row['val_acc']:.4f}"
    text += f"  lr {row['lr']:.2e}  {row['seconds']:.1f}s"
    return text + ("  *" if best else "")


# --------------------------------------------------------------------------- a whole run


def train_run(
    config: Config,
    train_path: str | os.PathLike,
    model_dir: str | os.PathLike = "models",
    rows: tuple[np.ndarray, np.ndarray] | None = None,
) -> Path:
    """Train as the config says on train.csv and save the run; returns the run folder.
    `rows` (x uint8 (n, 784), y (n,)) are train.csv's rows already in memory (a Dask worker's
    scattered copy, kit/cluster.py); train_path is then only recorded with the run."""
    return _run(config, train_path, lambda: start_run(config, Path(model_dir)), resume=None, rows=rows)


def resume_run(run_dir: str | os.PathLike, train_path: str | os.PathLike) -> Path:
    """Continue a run that was stopped (a crash, a kill, Ctrl-C) from its last finished epoch,
    with its own config and seed, as if it had not stopped (same BLAS threads: same weights)."""
    run_dir = Path(run_dir)
    config = load_run_config(run_dir)
    meta, arrays = load_resume(run_dir)
    if str(train_path) != meta["train_path"]:
        log(f"note: the run started on {meta['train_path']}; continuing on {train_path}")
    log(
        f"resuming {run_dir}: member {meta['member'] + 1}/{config.ensemble}, {meta['phase']} after epoch "
        f"{meta['fit']['epoch']}"
    )
    return _run(config, train_path, lambda: run_dir, resume=unpack_resume(config, meta, arrays))


def _run(
    config: Config,
    train_path: str | os.PathLike,
    claim_run_dir: Callable[[], Path],
    resume: Resume | None,
    rows: tuple[np.ndarray, np.ndarray] | None = None,
) -> Path:
    """Load and split the data, then claim the run folder (so bad data leaves none) and train."""
    started = time.perf_counter()
    rng = np.random.default_rng(config.seed)
    if rows is None:
        x_train, y_train, x_val, y_val = load_split(train_path, config.val_fraction, rng)
    else:
        x_train, y_train, x_val, y_val = split_arrays(*rows, config.val_fraction, rng)
    log(
        f"data: {len(y_train) + len(y_val)} rows from {train_path}; train {len(y_train)}, validation "
        f"{len(y_val)}"
    )
    log(f"  train class counts: {class_counts(y_train).tolist()}")
    if len(y_val):
        log(f"  val   class counts: {class_counts(y_val).tolist()}")
    log(f"config: preset {config.preset}, {describe(config)}")
    before = resume.seconds if resume else 0.0
    run_dir = claim_run_dir()
    try:
        with limit_blas(config.blas_threads):
            trained = train_members(
                config,
                rng,
                x_train,
                y_train,
                x_val,
                y_val,
                run_dir,
                resume,
                train_path=train_path,
                seconds=lambda: before + time.perf_counter() - started,
            )
            threads = blas_threads_now()
        return finish_run(
            config,
            run_dir,
            trained,
            n_train=len(y_train),
            y_val=y_val,
            seconds=before + time.perf_counter() - started,
            blas_threads=threads,
            train_path=train_path,
        )
    finally:
        if resume is None and not (run_dir / "model.npz").exists():
            shutil.rmtree(run_dir, ignore_errors=True)  # not one epoch finished: nothing worth a folder


@dataclass
class Trained:
    """What train_members hands to finish_run."""

    members: list[Network]
    history: list[dict]
    member_metrics: list[dict]  # per member: best_epoch and, with validation rows, its own val score
    val_probs: list[np.ndarray]  # per member: validation probabilities (n_val, 10) from before any refit
    interrupted: bool


@dataclass
class Resume:
    """A stopped run's progress (runs.load_resume): the members finished before the stop, the
    member it stopped in and in which phase ("fit", or "refit" on all rows), and that fit's state."""

    trained: Trained  # in the refit phase it holds the current member's scores too
    member: int
    phase: str
    fit: FitState
    current: Network | None  # refit phase: the member's network before the refit
    seconds: float  # training time before the stop


def train_members(
    config: Config,
    rng: np.random.Generator,
    x_train,
    y_train,
    x_val,
    y_val,
    run_dir: Path | None = None,
    resume: Resume | None = None,
    train_path: str | os.PathLike = "",
    seconds: Callable[[], float] = lambda: 0.0,
) -> Trained:
    """Train the ensemble's members (one by default), each with its own child of the run's rng,
    refitting each on all rows when asked. With run_dir, the finished members plus the current
    one's best epoch are saved there whenever that epoch improves (runs.save_checkpoint), and
    after every epoch what a resumed run needs (runs.save_resume)."""
    trained = resume.trained if resume else Trained([], [], [], [], False)

    def checkpoint(network: Network, history: list[dict]) -> None:
        save_checkpoint(run_dir, Model(config, trained.members + [network]), trained.history + history)

    def saver(m: int, phase: str, current: Network | None = None):
        def save(state: FitState, running: dict) -> None:
            save_resume(
                run_dir, *pack_resume(trained, m, phase, state, running, current, seconds(), train_path)
            )

        return save if run_dir is not None else None

    for m, member_rng in enumerate(rng.spawn(config.ensemble)):
        if resume and m < resume.member:
            continue  # finished before the stop: in trained already
        here = resume if resume and m == resume.member else None
        label = f"member {m + 1}/{config.ensemble} " if config.ensemble > 1 else ""
        if label:
            log(f"--- {label.strip()}")
        if here is None or here.phase == "fit":
            result = fit(
                config,
                x_train,
                y_train,
                x_val,
                y_val,
                member_rng,
                member=m,
                label=label,
                on_best=checkpoint if run_dir is not None else None,
                on_epoch=saver(m, "fit"),
                resume=here.fit if here else None,
            )
            trained.history += result.history
            trained.interrupted = result.interrupted
            if result.best_epoch == 0:
                break
            network, metrics = result.network, {"member": m, "best_epoch": result.best_epoch}
            trained.member_metrics.append(metrics)
            if len(y_val):
                # scored before any refit: a refit member has seen the validation rows
                val_loss, val_acc, probs = evaluate(network, x_val, y_val, config.eval_batch_size)
                metrics.update(val_loss=val_loss, val_accuracy=val_acc)
                trained.val_probs.append(probs)
        else:  # stopped during this member's refit: its fit and scores came back with `resume`
            network, metrics = here.current, trained.member_metrics[m]
        if config.refit and not trained.interrupted and len(y_val):
            x_all, y_all = np.concatenate([x_train, x_val]), np.concatenate([y_train, y_val])
            log(f"refit: {metrics['best_epoch']} epochs on all {len(y_all)} rows")
            refit = fit(
                config,
                x_all,
                y_all,
                None,
                None,
                member_rng,
                n_epochs=metrics["best_epoch"],
                member=m,
                label=f"{label}refit ",
                on_epoch=saver(m, "refit", network),
                resume=here.fit if here and here.phase == "refit" else None,
            )
            trained.interrupted = refit.interrupted
            if not trained.interrupted:
                network = refit.network
                metrics["refit_epochs"] = metrics["best_epoch"]
        trained.members.append(network)
        if trained.interrupted:
            break
    return trained


def pack_resume(
    trained: Trained,
    member: int,
    phase: str,
    state: FitState,
    running: dict,
    current: Network | None,
    seconds: float,
    train_path,
) -> tuple[dict, dict[str, np.ndarray]]:
    """(JSON-able meta, arrays) of a run's progress after an epoch; unpack_resume reverses it."""
    meta = {
        "format": MODEL_FORMAT,
        "member": member,
        "phase": phase,
        "seconds": seconds,
        "train_path": str(train_path),
        "history": trained.history,
        "member_metrics": trained.member_metrics,
        "n_members": len(trained.members),
        "fit": {
            "epoch": state.epoch,
            "history": state.history,
            "best_epoch": state.best_epoch,
            "best_key": state.best_key,
            "since_best": state.since_best,
            "schedule": running["schedule"],
            "rng": running["rng"],
        },
    }
    arrays = {f"network/{k}": v for k, v in running["network"].items()}
    arrays.update({f"optimizer/{k}": v for k, v in running["optimizer"].items()})
    arrays.update({f"best/{k}": v for k, v in (state.best or {}).items()})
    for i, network in enumerate(trained.members):
        arrays.update({f"member{i}/{k}": v for k, v in network.state().items()})
    for i, probs in enumerate(trained.val_probs):
        arrays[f"val_probs{i}"] = probs
    if current is not None:
        arrays.update({f"current/{k}": v for k, v in current.state().items()})
    return meta, arrays


def unpack_resume(config: Config, meta: dict, arrays: dict[str, np.ndarray]) -> Resume:
    def part(prefix: str) -> dict[str, np.ndarray]:
        return {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}

    def network(prefix: str) -> Network:
        # weights replaced by the stored ones; a run started by an older kit keeps its layer order
        built = build_network(config, np.random.default_rng(0), model_format=meta.get("format", 1))
        built.load_state(part(prefix))
        return built

    members = [network(f"member{i}/") for i in range(meta["n_members"])]
    val_probs = [
        arrays[f"val_probs{i}"] for i in range(len(meta["member_metrics"])) if f"val_probs{i}" in arrays
    ]
    trained = Trained(members, meta["history"], meta["member_metrics"], val_probs, False)
    fit_meta = meta["fit"]
    state = FitState(
        epoch=fit_meta["epoch"],
        history=fit_meta["history"],
        best_epoch=fit_meta["best_epoch"],
        best_key=tuple(fit_meta["best_key"]) if fit_meta["best_key"] else None,
        since_best=fit_meta["since_best"],
        best=part("best/") or None,
        running={
            "network": part("network/"),
            "optimizer": part("optimizer/"),
            "schedule": fit_meta["schedule"],
            "rng": fit_meta["rng"],
        },
    )
    current = network("current/") if meta["phase"] == "refit" else None
    return Resume(trained, meta["member"], meta["phase"], state, current, meta["seconds"])


def finish_run(
    config: Config,
    run_dir: Path,
    trained: Trained,
    n_train: int,
    y_val: np.ndarray,
    seconds: float,
    blas_threads: int,
    train_path: str | os.PathLike,
) -> Path:
    """Score the trained members together on the validation rows and save the run in run_dir
    (from runs.start_run); models/latest then points at it."""
    if not trained.members:
        raise KitError("interrupted before the first epoch finished; nothing to save")
    model = Model(config, trained.members)
    metrics: dict = {
        "preset": config.preset,
        "train_path": str(train_path),  # the report and `make validate` redraw the split from it
        "n_train": int(n_train),
        "n_val": int(len(y_val)),
        "best_epoch": trained.member_metrics[0]["best_epoch"],
        "refit": bool(config.refit),
        "interrupted": trained.interrupted,
        "members": trained.member_metrics,
        "blas_threads": blas_threads,
        # the report's machine table
        "machine": machine_summary(),
    }
    if trained.val_probs:
        metrics.update(validation_metrics(np.mean(trained.val_probs, axis=0), y_val))
    metrics["seconds"] = round(seconds, 2)

    model.meta = {
        "run_id": run_dir.name,
        "preset": config.preset,
        "val_accuracy": metrics.get("val_accuracy"),
    }
    save_run(run_dir, model, trained.history, metrics)
    point_latest(run_dir.parent, run_dir.name)
    if not trained.interrupted:
        drop_resume(run_dir)  # finished: nothing left to resume
    log(summary(run_dir, metrics))
    if trained.interrupted:
        raise KeyboardInterrupt  # the CLI turns this into exit 130 after the run is safely saved
    return run_dir
