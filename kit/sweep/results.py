"""A sweep's folder as it fills: the space file and sweep.json, results.csv rewritten after
every finished trial (atomically), each trial's run tagged, and the ranking with the best
trial's `make train` line.
"""

from __future__ import annotations

import csv
import json
from datetime import datetime
from pathlib import Path

from kit.config import format_value, make_variable
from kit.core.atomic import atomic_open
from kit.sweep.plan import Sweep, Trial, TrialOutcome


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
