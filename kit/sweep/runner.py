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
The id is the space file's name, the preset and a digest of everything that decides the
trials' configs (space, base, train.csv path), so the same command finds the same folder and
runs only the trials missing from results.csv: an interrupted sweep (Ctrl-C, a dead machine)
resumes where it stopped, and a larger TRIALS= extends it (random trial n does not depend on
TRIALS). Every trial trains with the base seed, so all see the same validation rows.

Backends
- local (default): kit.run.parallel.run_each, JOBS= processes (joblib), BLAS threads split so the
  trials together use no more threads than cores; JOBS=1 trains in this process.
- Dask (DASK_SCHEDULER=tcp://host:port set): kit.sweep.dask_cluster.run_each_on_dask. train.csv's arrays
  are scattered to the workers once; each trial trains on a worker and its run folder's files
  come back to this machine, which writes them into models/ (tagged, then moved into place):
  workers need the kit installed, no data and no shared filesystem. A dead worker costs only
  its trial's progress (kit/sweep/dask_cluster.py says how each loss is recovered).
The same trial gives the same validation accuracy on both backends (same seed, same split:
kit.data.split.run_split).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from kit.config import CONFIG_FIELDS, Config, format_value, make_config, make_variable
from kit.core.atomic import atomic_open
from kit.core.console import log
from kit.core.errors import KitError
from kit.sweep.space import Space, check_space, read_space

RESULT_TAIL = ["best_epoch", "val_accuracy", "val_loss", "seconds", "run_id", "worker", "error"]


@dataclass
class Trial:
    number: int  # 1-based
    values: dict[str, Any]  # the swept values
    config: Config


@dataclass
class Sweep:
    id: str
    folder: Path
    space: Space
    preset: str
    overrides: dict[str, Any]  # from the command line, on top of PRESET= and [fixed]
    train_path: Path
    trials: list[Trial]
    rows: dict[int, dict[str, str]] = field(default_factory=dict)  # trial -> its results.csv row

    @property
    def columns(self) -> list[str]:
        return ["trial"] + [dim.name for dim in self.space.dims] + RESULT_TAIL

    def trial(self, number: int) -> Trial:
        """Trial `number`, also one beyond this run's TRIALS= that an earlier, longer run recorded."""
        if number <= len(self.trials):
            return self.trials[number - 1]
        values = self.space.plan(number, self.trials[0].config.seed)[number - 1]
        return Trial(
            number, values, make_config(self.preset, **{**self.space.fixed, **self.overrides, **values})
        )


@dataclass
class TrialOutcome:
    """A finished trial as a backend hands it over: its placed run folder or its error."""

    trial: Trial
    run_dir: Path | None
    seconds: float
    worker: str
    error: str | None = None


# --------------------------------------------------------------------------- planning


def plan_sweep(
    space_path: str | os.PathLike,
    preset: str,
    overrides: dict[str, Any] | None,
    train_path: str | os.PathLike,
    sweep_dir: str | os.PathLike = "sweeps",
    n_trials: int | None = None,
) -> Sweep:
    """Read and check the space against the base, plan the trials and read the sweep folder's
    results.csv (if this sweep ran before). Nothing is trained and nothing is written."""
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    space = read_space(space_path)
    check_space(space, preset, overrides)
    base = make_config(preset, **{**space.fixed, **overrides})
    if base.val_fraction <= 0:
        raise KitError(
            "a sweep ranks trials by validation accuracy; VAL_FRACTION=0 leaves no validation rows"
        )
    if n_trials is not None and n_trials < 1:
        raise KitError(f"TRIALS={n_trials}: give at least 1")
    count = n_trials or space.default_trials()
    distinct = space.grid_size() if space.method == "grid" else space.distinct_trials()
    if distinct is not None and count > distinct:
        log(f"note: the space holds {distinct} different trials; TRIALS={count} runs each once")
        count = distinct
    trials = []
    for number, values in enumerate(space.plan(count, base.seed), start=1):
        trials.append(Trial(number, values, make_config(preset, **{**space.fixed, **overrides, **values})))
    sweep_id = f"{space.path.stem}-{preset}-{_digest(space, preset, overrides, train_path)}"
    sweep = Sweep(sweep_id, Path(sweep_dir) / sweep_id, space, preset, overrides, Path(train_path), trials)
    sweep.rows = read_results(sweep)
    return sweep


def _digest(space: Space, preset: str, overrides: dict[str, Any], train_path) -> str:
    """8 hex digits of everything that decides the trials' configs and data."""
    identity = {
        "method": space.method,
        "fixed": {k: format_value(v) for k, v in space.fixed.items()},
        "space": [[d.name, d.kind, [format_value(v) for v in d.values]] for d in space.dims],
        "preset": preset,
        # speed settings (THREADS=, EVAL_BATCH=) do not change the trials: the same sweep whatever they are
        "overrides": {
            k: format_value(v) for k, v in overrides.items() if not CONFIG_FIELDS[k].metadata["speed_only"]
        },
        "train": str(Path(train_path).resolve()),
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:8]


def read_results(sweep: Sweep) -> dict[int, dict[str, str]]:
    """The rows of an earlier run of this sweep, by trial; checked against the plan."""
    path = sweep.folder / "results.csv"
    if not path.is_file():
        return {}
    planned = {t.number: t for t in sweep.trials}
    rows = {}
    with open(path, newline="") as handle:
        for line, row in enumerate(csv.DictReader(handle), start=2):
            try:
                number = int(row["trial"])
            except (KeyError, TypeError, ValueError):
                raise KitError(
                    f"{path}, line {line}: no trial number; move the file away to start over"
                ) from None
            trial = planned.get(number)
            if trial and any(row.get(name) != format_value(value) for name, value in trial.values.items()):
                raise KitError(
                    f"{path}, line {line}: trial {number}'s values differ from the space's; "
                    f"was the file edited? move {sweep.folder} away to start over"
                )
            rows[number] = row
    return rows


# --------------------------------------------------------------------------- recording


def write_sweep_files(sweep: Sweep) -> None:
    """The space file as given and sweep.json (what the trials were built from)."""
    sweep.folder.mkdir(parents=True, exist_ok=True)
    with atomic_open(sweep.folder / f"space{sweep.space.path.suffix}", "wb") as handle:
        handle.write(sweep.space.text)
    description = {
        "id": sweep.id,
        "space_file": str(sweep.space.path),
        "method": sweep.space.method,
        "preset": sweep.preset,
        "overrides": {k: format_value(v) for k, v in sweep.overrides.items()},
        "fixed": {k: format_value(v) for k, v in sweep.space.fixed.items()},
        "train": str(sweep.train_path),
        "trials_planned": len(sweep.trials),
        "updated": datetime.now().isoformat(timespec="seconds"),
    }
    with atomic_open(sweep.folder / "sweep.json", "w") as handle:
        handle.write(json.dumps(description, indent=2) + "\n")


def write_results(sweep: Sweep) -> Path:
    """results.csv, every recorded trial in trial order, written to a temp file and renamed."""
    path = sweep.folder / "results.csv"
    columns = sweep.columns
    with atomic_open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for number in sorted(sweep.rows):
            writer.writerow({name: sweep.rows[number].get(name, "") for name in columns})
    return path


def tag_run(run_dir: Path, sweep_id: str, trial: int) -> dict:
    """Add "sweep" and "trial" to the run's metrics.json (rewritten atomically); returns the metrics."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    metrics.update(sweep=sweep_id, trial=trial)
    with atomic_open(run_dir / "metrics.json", "w") as handle:
        json.dump(metrics, handle, indent=2)
        handle.write("\n")
    return metrics


def record(sweep: Sweep, outcome: TrialOutcome) -> dict[str, str]:
    """Turn a finished trial into its results.csv row and rewrite the file."""
    row = {"trial": str(outcome.trial.number), "seconds": f"{outcome.seconds:.2f}", "worker": outcome.worker}
    row.update({name: format_value(value) for name, value in outcome.trial.values.items()})
    if outcome.run_dir is not None:
        metrics = json.loads((outcome.run_dir / "metrics.json").read_text())
        row.update(
            best_epoch=str(metrics["best_epoch"]),
            val_accuracy=f"{metrics['val_accuracy']:.6f}",
            val_loss=f"{metrics['val_loss']:.6f}",
            run_id=outcome.run_dir.name,
        )
    else:
        row["error"] = outcome.error or "failed"
    sweep.rows[outcome.trial.number] = row
    write_results(sweep)
    return row


# --------------------------------------------------------------------------- running


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
    from kit.run.parallel import _place

    if result["error"]:
        return TrialOutcome(trial, None, result["seconds"], result["worker"], result["error"])
    private = Path(tempfile.mkdtemp(prefix=".sweep-", dir=model_dir))
    try:
        run_dir = private / result["run_id"]
        run_dir.mkdir()
        for name, content in result["files"].items():
            (run_dir / name).write_bytes(content)
        tag_run(run_dir, sweep.id, trial.number)
        placed = _place(run_dir, trial.config, model_dir)
        point_latest(model_dir, placed.name)
    finally:
        shutil.rmtree(private, ignore_errors=True)
    return TrialOutcome(trial, placed, result["seconds"], result["worker"])


# --------------------------------------------------------------------------- the ranking


def ranked(sweep: Sweep) -> list[dict[str, str]]:
    """Recorded rows, best first: validation accuracy, then lower loss, then trial; failures last."""

    def key(row):
        if row.get("error") or not row.get("val_accuracy"):
            return (1, 0.0, 0.0, int(row["trial"]))
        return (0, -float(row["val_accuracy"]), float(row["val_loss"]), int(row["trial"]))

    return sorted(sweep.rows.values(), key=key)


def train_command(sweep: Sweep, trial: Trial) -> str:
    """`make train ...` that trains this trial's config again (the base, fixed and swept values)."""
    values = {**sweep.space.fixed, **sweep.overrides, **trial.values}
    parts = ["make train", f"PRESET={sweep.preset}"]
    if str(sweep.train_path) != "data/train.csv":
        parts.append(f"TRAIN={sweep.train_path}")
    parts += [f"{make_variable(name)}={format_value(value)}" for name, value in values.items()]
    return " ".join(parts)


def ranking_text(sweep: Sweep, model_dir) -> str:
    rows = ranked(sweep)
    if not rows:
        return "no trial finished"
    names = [dim.name for dim in sweep.space.dims]
    header = ["rank", "trial", *names, "val_acc", "best_epoch", "seconds", "run_id"]
    table = [
        [
            str(rank),
            row["trial"],
            *(row.get(n, "") for n in names),
            row.get("val_accuracy", "") or "failed",
            row.get("best_epoch", ""),
            row.get("seconds", ""),
            row.get("run_id", "") or row.get("error", ""),
        ]
        for rank, row in enumerate(rows, start=1)
    ]
    widths = [max(len(line[i]) for line in [header] + table) for i in range(len(header))]
    lines = [
        "",
        f"sweep {sweep.id}: {len(rows)} trials ranked by validation accuracy "
        f"({sweep.folder / 'results.csv'})",
    ]
    lines += [
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip()
        for line in [header] + table
    ]
    best = rows[0]
    if not best.get("error"):
        lines += [
            "",
            f"best: trial {best['trial']}, validation accuracy {best['val_accuracy']} "
            f"({Path(model_dir) / best['run_id']}); to train it again:",
            "  " + train_command(sweep, sweep.trial(int(best["trial"]))),
        ]
    return "\n".join(lines)
