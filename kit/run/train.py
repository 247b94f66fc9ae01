"""A whole run: train.csv in, a run folder out.

    run_dir = train_run(make_config("best"), "data/train.csv")      # models/<run-id>/
    run_dir = resume_run(run_dir, "data/train.csv")                 # a stopped run, continued

train_run loads and splits the data (kit.data.split.run_split), claims the run folder, trains
the ensemble's members (each with kit.run.trainer.fit, refit on all rows when asked) and saves
the finished run (kit.run.folders). While it trains, the best epoch so far and what a resumed
run needs (kit.run.resume) are saved after every epoch, so a crash loses one epoch at most.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from kit.config import Config, describe
from kit.core.blas import blas_threads_now, limit_blas
from kit.core.console import log
from kit.core.errors import KitError
from kit.core.machine import machine_summary
from kit.data.load import load_train
from kit.data.split import class_counts, require_two_classes, split_rows
from kit.nn.metrics import validation_metrics
from kit.nn.network import Network
from kit.run.folders import load_run_config, point_latest, save_checkpoint, save_run, start_run, summary
from kit.run.model import Model
from kit.run.resume import Resume, Trained, drop_resume, load_resume, pack_resume, save_resume, unpack_resume
from kit.run.trainer import FitState, evaluate, fit


def train_run(
    config: Config,
    train_path: str | os.PathLike,
    model_dir: str | os.PathLike = "models",
    rows: tuple[np.ndarray, np.ndarray] | None = None,
) -> Path:
    """Train as the config says on train.csv and save the run; returns the run folder.
    `rows` (x uint8 (n, 784), y (n,)) are train.csv's rows already in memory (a Dask worker's
    scattered copy, kit.sweep.dask_cluster); train_path is then only recorded with the run."""
    started = time.perf_counter()
    data = _split(config, train_path, rows)
    run_dir = start_run(config, Path(model_dir))  # after the data: a bad train.csv leaves no folder
    try:
        return _train(config, run_dir, data, train_path, started)
    finally:
        if not (run_dir / "model.npz").exists():
            shutil.rmtree(run_dir, ignore_errors=True)  # not one epoch finished: nothing worth a folder


def resume_run(run_dir: str | os.PathLike, train_path: str | os.PathLike) -> Path:
    """Continue a run that was stopped (a crash, a kill, Ctrl-C) from its last finished epoch,
    with its own config and seed, as if it had not stopped (same BLAS threads: same weights)."""
    started = time.perf_counter()
    run_dir = Path(run_dir)
    config = load_run_config(run_dir)
    meta, arrays = load_resume(run_dir)
    if str(train_path) != meta["train_path"]:
        log(f"note: the run started on {meta['train_path']}; continuing on {train_path}")
    log(
        f"resuming {run_dir}: member {meta['member'] + 1}/{config.ensemble}, {meta['phase']} after epoch "
        f"{meta['fit']['epoch']}"
    )
    resume = unpack_resume(config, meta, arrays)
    return _train(config, run_dir, _split(config, train_path), train_path, started, resume)


def _split(config: Config, train_path, rows=None) -> tuple:
    """(x_train, y_train, x_val, y_val, the run's rng after the split), with a line about each."""
    if rows is None:
        dataset = load_train(train_path)
        rows = dataset.x, dataset.y
    x, y = rows
    require_two_classes(y, train_path)
    x_train, y_train, x_val, y_val, rng = split_rows(x, y, config.val_fraction, config.seed)
    log(f"data: {len(y)} rows from {train_path}; train {len(y_train)}, validation {len(y_val)}")
    log(f"  train class counts: {class_counts(y_train).tolist()}")
    if len(y_val):
        log(f"  val   class counts: {class_counts(y_val).tolist()}")
    log(f"config: preset {config.preset}, {describe(config)}")
    return x_train, y_train, x_val, y_val, rng


def _train(
    config: Config, run_dir: Path, data: tuple, train_path, started: float, resume: Resume | None = None
) -> Path:
    """Train the members into run_dir (with BLAS as THREADS= says) and save the finished run;
    its seconds count from `started` (plus those before a stop)."""
    x_train, y_train, x_val, y_val, rng = data
    before = resume.seconds if resume else 0.0
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
    seconds = before + time.perf_counter() - started
    return finish_run(config, run_dir, trained, len(y_train), y_val, seconds, threads, train_path)


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
    one's best epoch are saved there whenever that epoch improves (folders.save_checkpoint), and
    after every epoch what a resumed run needs (resume.save_resume)."""
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
    (from folders.start_run); models/latest then points at it."""
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
