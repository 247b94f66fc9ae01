"""`make sweep`: train one config per trial of a search space (kit/sweep/space.py), in local processes
or on a Dask cluster, record every finished trial at once, rank them, and resume.

    make sweep SPACE=sweeps/default-mlp.toml TRIALS=8 JOBS=2
    DASK_SCHEDULER=tcp://scheduler:8786 make sweep SPACE=sweeps/default-mlp.toml TRIALS=32

A trial is an ordinary run under models/ (`make submit MODEL=models/<run-id>` works on it) whose
metrics.json also says `"sweep": <id>, "trial": <n>`. The sweep folder `sweeps/<id>/` holds
    space.toml (or .json)  the space file as it was given
    sweep.json             the base (preset, command-line overrides), method, train.csv
    results.csv            trial, the swept values, best_epoch, val_accuracy, val_loss, seconds,
                           run_id, worker, error; rewritten (atomically) after every trial
The same command finds the same folder (kit.sweep.plan: the id) and trains only the trials
missing from results.csv, so an interrupted sweep (Ctrl-C, a dead machine) resumes.

Backends
- local (default): kit.run.parallel.run_each, JOBS= processes (joblib), BLAS threads split so the
  trials together use no more threads than cores; JOBS=1 trains in this process.
- Dask (DASK_SCHEDULER=tcp://host:port set): kit.sweep.dask_cluster.run_each_on_dask.
  train.csv's arrays are scattered to the workers once; each trial trains on a worker and its
  run folder's files come back to this machine, which writes them into models/ (tagged, then
  moved into place):
  workers need the kit installed, no data and no shared filesystem. A dead worker costs only
  its trial's progress (kit/sweep/dask_cluster.py says how each loss is recovered).
The same trial gives the same validation accuracy on both backends (same seed, same split:
kit.data.split.run_split).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from kit.config import format_value
from kit.core.console import log
from kit.sweep.plan import Sweep, Trial, TrialOutcome, plan_sweep
from kit.sweep.results import ranking_text, record, tag_run, write_results, write_sweep_files


def run_sweep(
    space_path: str | os.PathLike,
    preset: str = "default",
    overrides: dict[str, Any] | None = None,
    train_path: str | os.PathLike = "data/train.csv",
    model_dir: str | os.PathLike = "models",
    sweep_dir: str | os.PathLike = "sweeps",
    n_trials: int | None = None,
    n_jobs: int = 1,
    scheduler: str | None = None,
    threads: int | None = None,
    on_result: Callable[[dict[str, str]], None] | None = None,
) -> Sweep:
    """Plan the sweep, train its missing trials (locally in n_jobs processes, or on the Dask
    scheduler at `scheduler`), record each as it finishes, print the ranking and the best
    trial's `make train` line. threads: BLAS threads per trial (None: the backend's rule).
    on_result(row) is called after each trial's row is written. Returns the Sweep (.rows)."""
    from kit.data.load import load_train

    sweep = plan_sweep(space_path, preset, overrides, train_path, sweep_dir, n_trials)
    pending = [t for t in sweep.trials if t.number not in sweep.rows]
    where = f"on the Dask scheduler {scheduler}" if scheduler else f"{n_jobs} at a time in local processes"
    log(
        f"sweep {sweep.id}: {len(sweep.trials)} {sweep.space.method} trials, "
        f"{len(sweep.trials) - len(pending)} already done; {len(pending)} to train {where}"
    )
    dataset = load_train(train_path)  # a bad train.csv stops the sweep now; the processes then read its cache
    write_sweep_files(sweep)
    write_results(sweep)
    Path(model_dir).mkdir(parents=True, exist_ok=True)
    if pending:
        if scheduler:
            finished = _run_dask(sweep, pending, dataset, model_dir, scheduler, threads)
        else:
            finished = _run_local(sweep, pending, model_dir, n_jobs, threads)
        with contextlib.closing(finished):
            for outcome in finished:
                row = record(sweep, outcome)
                done = sum(1 for t in sweep.trials if t.number in sweep.rows)
                log(
                    f"trial {outcome.trial.number} ({done}/{len(sweep.trials)}): "
                    + (
                        f"val_acc {row['val_accuracy']}, best epoch {row['best_epoch']}, {row['seconds']}s, "
                        f"{_values_text(outcome.trial.values)} -> {Path(model_dir) / row['run_id']}"
                        if not row.get("error")
                        else f"failed: {row['error']}"
                    )
                )
                if on_result:
                    on_result(row)
    log(ranking_text(sweep, model_dir))
    return sweep


def _values_text(values: dict[str, Any]) -> str:
    return " ".join(f"{name}={format_value(value)}" for name, value in values.items())


def _run_local(
    sweep: Sweep, pending: list[Trial], model_dir, n_jobs: int, threads: int | None
) -> Iterator[TrialOutcome]:
    from kit.run.parallel import run_each

    for index, outcome in run_each(
        [t.config for t in pending], sweep.train_path, model_dir, n_jobs=n_jobs, threads=threads, quiet=True
    ):
        trial = pending[index]
        if outcome.run_dir is not None:
            tag_run(outcome.run_dir, sweep.id, trial.number)
        yield TrialOutcome(trial, outcome.run_dir, outcome.seconds, outcome.worker, outcome.error)


def _run_dask(
    sweep: Sweep, pending: list[Trial], dataset, model_dir, scheduler: str, threads: int | None
) -> Iterator[TrialOutcome]:
    from kit.sweep.dask_cluster import run_each_on_dask

    for index, result in run_each_on_dask(
        [t.config for t in pending],
        dataset,
        sweep.train_path,
        scheduler,
        threads,
        key_prefix=f"kit-sweep-{sweep.id}",
        labels=[f"trial {t.number}" for t in pending],
    ):
        yield _place_files(sweep, pending[index], result, Path(model_dir))


def _place_files(sweep: Sweep, trial: Trial, result: dict, model_dir: Path) -> TrialOutcome:
    """Write a worker's run files into a private folder in model_dir, tag them, then move the
    whole folder into place (so models/ never holds half a run)."""
    from kit.run.folders import point_latest
    from kit.run.parallel import place_run

    if result["error"]:
        return TrialOutcome(trial, None, result["seconds"], result["worker"], result["error"])
    private = Path(tempfile.mkdtemp(prefix=".sweep-", dir=model_dir))
    try:
        run_dir = private / result["run_id"]
        run_dir.mkdir()
        for name, content in result["files"].items():
            (run_dir / name).write_bytes(content)
        tag_run(run_dir, sweep.id, trial.number)
        placed = place_run(run_dir, trial.config, model_dir)
        point_latest(model_dir, placed.name)
    finally:
        shutil.rmtree(private, ignore_errors=True)
    return TrialOutcome(trial, placed, result["seconds"], result["worker"])
