"""A sweep planned: its trials (each a config), its id, and its folder's results read back.

The id is the space file's name, the preset and a digest of everything that decides the
trials' configs (space, base, train.csv path), so the same command finds the same folder and
runs only the trials missing from results.csv: an interrupted sweep resumes where it stopped,
and a larger TRIALS= extends it (random trial n does not depend on TRIALS). Every trial trains
with the base seed, so all see the same validation rows.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kit.config import CONFIG_FIELDS, Config, format_value, make_config
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
