"""`make runs`: one row per run under models/, with its validation score and, once its submission
was uploaded, the public leaderboard score Kaggle returned (from submissions/history.csv).

Prints the table and writes `<models>/runs.html` (the same table, each run linking to its
report.html when it has one). history.csv is read by column name:
    date,run_id,file,message,status,public_score,ref
a missing file means nothing was uploaded yet.
"""

from __future__ import annotations

import csv
import html
import json
import os
from pathlib import Path

from kit.config import Config, describe
from kit.core.atomic import atomic_open
from kit.core.errors import KitError

COLUMNS = ["run", "preset", "network", "epochs", "best", "val acc", "seconds", "public score"]


def find_runs(models_dir: Path) -> list[Path]:
    """Every run folder (one holding metrics.json) under models_dir, nested ones included
    (models/demo/<run-id>), oldest first; the `latest` link is not followed."""
    runs = []
    for folder, subfolders, files in os.walk(models_dir):  # followlinks=False: latest is not a second copy
        if "metrics.json" in files:
            runs.append(Path(folder))
            subfolders.clear()
    return sorted(runs, key=lambda run: ((run / "metrics.json").stat().st_mtime, run.name))


def read_uploads(history_path: Path) -> dict[str, dict]:
    """run_id -> its latest upload row (the latest with a public score when there is one)."""
    if not history_path.exists():
        return {}
    with open(history_path, newline="", encoding="utf-8") as handle:
        rows = [row for row in csv.DictReader(handle) if (row.get("run_id") or "").strip()]
    rows.sort(key=lambda row: row.get("date") or "")  # ISO-8601 UTC dates sort as text
    latest: dict[str, dict] = {}
    for row in rows:
        run_id = row["run_id"].strip()
        scored = bool((row.get("public_score") or "").strip())
        kept_scored = run_id in latest and bool((latest[run_id].get("public_score") or "").strip())
        if scored or not kept_scored:  # a later pending/error upload does not hide an earlier score
            latest[run_id] = row
    return latest


def run_row(run_dir: Path, uploads: dict[str, dict]) -> dict:
    """The table's cells for one run folder (missing files give '?')."""
    try:
        metrics = json.loads((run_dir / "metrics.json").read_text())
    except (OSError, ValueError):
        metrics = {}
    try:
        config = Config.from_dict(json.loads((run_dir / "config.json").read_text()))
    except (OSError, ValueError, KitError):
        config = None
    try:
        with open(run_dir / "history.csv", newline="") as handle:
            epochs_ran = sum(1 for row in csv.DictReader(handle) if row.get("member") == "0")
    except OSError:
        epochs_ran = None
    asked = config.epochs if config else None
    epochs = (
        "?"
        if epochs_ran is None
        else str(epochs_ran) + (f"/{asked}" if asked and asked != epochs_ran else "")
    )
    upload = uploads.get(run_dir.name)
    public = ""
    if upload:
        public = (upload.get("public_score") or "").strip() or (upload.get("status") or "uploaded").strip()
    val = metrics.get("val_accuracy")
    return {
        "run": run_dir.name,
        "preset": metrics.get("preset", config.preset if config else "?"),
        "network": describe(config, network_only=True) if config else "?",
        "epochs": epochs,
        "best": str(metrics.get("best_epoch", "?")),
        "val acc": f"{val:.4f}" if isinstance(val, (int, float)) else "-",
        "seconds": f"{metrics['seconds']:.1f}" if isinstance(metrics.get("seconds"), (int, float)) else "?",
        "public score": public,
        "dir": run_dir,
    }


def format_table(rows: list[dict]) -> str:
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in COLUMNS}
    right = {"epochs", "best", "val acc", "seconds", "public score"}
    lines = ["  ".join(c.rjust(widths[c]) if c in right else c.ljust(widths[c]) for c in COLUMNS)]
    lines.append("  ".join("-" * widths[c] for c in COLUMNS))
    for r in rows:
        lines.append(
            "  ".join(r[c].rjust(widths[c]) if c in right else r[c].ljust(widths[c]) for c in COLUMNS)
        )
    return "\n".join(lines)


def write_runs_html(rows: list[dict], path: Path) -> None:
    body = []
    for r in rows:
        report = r["dir"] / "report.html"
        name = html.escape(r["run"])
        if report.exists():
            name = f'<a href="{html.escape(os.path.relpath(report, path.parent))}">{name}</a>'
        cells = [name] + [html.escape(r[c]) for c in COLUMNS[1:]]
        body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    head = "".join(f"<th>{html.escape(c)}</th>" for c in COLUMNS)
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>Runs</title><style>'
        "body{font-family:system-ui,sans-serif;margin:1rem 1.5rem;color:#222}"
        "table{border-collapse:collapse;font-size:.92rem}td,th{border:1px solid #ddd;padding:.25rem .6rem}"
        "th{background:#f4f4f4}td:nth-child(n+4){text-align:right}</style></head><body>"
        f"<h1>Runs</h1><p>{len(rows)} runs, oldest first; a run links to its report when it has one.</p>"
        f"<table><tr>{head}</tr>{''.join(body)}</table></body></html>\n"
    )
    with atomic_open(path, "w", encoding="utf-8") as handle:
        handle.write(page)


def list_runs(
    models_dir: str | os.PathLike = "models", history_path: str | os.PathLike = "submissions/history.csv"
) -> tuple[str, Path]:
    """Print the runs table and write models_dir/runs.html; returns (table text, html path)."""
    from kit.core.console import log

    models_dir = Path(models_dir)
    if not models_dir.is_dir():
        raise KitError(f"{models_dir}: no such folder, so no runs yet; `make train` makes one")
    runs = find_runs(models_dir)
    if not runs:
        raise KitError(f"{models_dir}: no runs there yet; `make train` (or `make demo`) makes one")
    uploads = read_uploads(Path(history_path))
    rows = [run_row(run, uploads) for run in runs]
    text = format_table(rows)
    path = models_dir / "runs.html"
    write_runs_html(rows, path)
    log(text)
    log(f"\n{len(rows)} runs; public scores from {history_path}" + ("" if uploads else " (no uploads yet)"))
    log(f"table with links to each report: {path}")
    return text, path
