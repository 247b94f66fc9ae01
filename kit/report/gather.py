"""What a run's report shows, gathered from its folder: the run's files read leniently (each
missing piece a note), its validation rows predicted again, the worst mistakes, and the test
rows of its latest submission the model is least sure of. kit.report.page draws it."""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kit.config import Config
from kit.core.errors import KitError
from kit.data.load import load_test, load_train
from kit.data.split import class_counts, run_split, to_float
from kit.run.folders import resolve_run_dir
from kit.run.model import Model

MAX_MISTAKES = 48  # the gallery shows the worst 48 (all of them when there are fewer)
N_UNSURE = 36  # least-sure test rows shown


@dataclass
class Run:
    """What a run folder holds, read leniently: each missing piece is None plus a note."""

    run_dir: Path
    config: Config | None = None
    metrics: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    model: Model | None = None
    notes: list[str] = field(default_factory=list)  # one line per thing the report could not show


@dataclass
class Validation:
    """The run's validation rows evaluated once: pixels (n, 784) uint8, labels (n,), probabilities
    (n, 10), and each row's line number in train.csv (header = line 1)."""

    pixels: np.ndarray
    labels: np.ndarray
    probs: np.ndarray
    lines: np.ndarray
    train_counts: np.ndarray  # class counts (10,) of the training part

    @property
    def predicted(self) -> np.ndarray:
        return self.probs.argmax(axis=1)


def find_run_dir(path: str | os.PathLike) -> Path:
    """A run folder, its model.npz, or a models/ folder (its latest run) -> the run folder."""
    path = Path(path)
    if not path.exists():
        raise KitError(f"{path}: no such run folder; give MODEL=models/<run-id> (`make runs` lists them)")
    if path.is_dir() and any(
        (path / name).exists() for name in ("metrics.json", "history.csv", "config.json")
    ):
        return path.resolve()
    return resolve_run_dir(path)


def read_run(run_dir: Path) -> Run:
    """Read config, metrics, history and model of a run folder; a note for each one missing."""
    run = Run(run_dir)
    if (run_dir / "model.npz").exists():
        try:
            run.model = Model.load(run_dir / "model.npz")
            run.config = run.model.config
        except KitError as error:
            run.notes.append(f"model.npz unreadable, so no gallery or test rows: {error}")
    else:
        run.notes.append("no model.npz in the run folder, so no mistakes gallery or test rows")
    if run.config is None and (run_dir / "config.json").exists():
        try:
            run.config = Config.from_dict(
                json.loads((run_dir / "config.json").read_text()), where="config.json"
            )
        except (KitError, ValueError) as error:
            run.notes.append(f"config.json unreadable: {error}")
    if run.config is None:
        run.notes.append("no config.json: the config table is empty")
    try:
        run.metrics = json.loads((run_dir / "metrics.json").read_text())
    except (OSError, ValueError):
        run.notes.append("no readable metrics.json: scores, timings and row counts are missing")
    try:
        with open(run_dir / "history.csv", newline="") as handle:
            run.history = [
                {"member": 0, **{k: _number(v) for k, v in row.items()}} for row in csv.DictReader(handle)
            ]
    except OSError:
        run.notes.append("no history.csv: no learning curves")
    return run


def _number(text: str):
    try:
        return float(text) if text not in ("", None) else math.nan
    except ValueError:
        return text


def evaluate_validation(run: Run) -> Validation | None:
    """Draw the run's validation rows again from its train.csv and predict them once (no TTA:
    the scores in metrics.json are without it). None, with a note, when that is not possible."""
    config, train_path = run.config, run.metrics.get("train_path")
    if config is None or run.model is None:
        return None
    if config.val_fraction <= 0:
        run.notes.append(
            "trained with VAL_FRACTION=0: no validation rows, so no confusion matrix or mistakes"
        )
        return None
    if not train_path or not Path(train_path).exists():
        run.notes.append(
            f"the training file {train_path or '(not recorded by this older run)'} is not there, "
            "so no mistakes gallery; give it back at that path and run `make report` again"
        )
        return None
    dataset = load_train(train_path)
    labels = dataset.y.astype(np.int64)
    train_idx, val_idx, _ = run_split(labels, config.val_fraction, config.seed)  # the run's own split
    if run.metrics.get("n_val") not in (None, len(val_idx)):
        run.notes.append(
            f"{train_path} now gives {len(val_idx)} validation rows where the run had "
            f"{run.metrics['n_val']}; has the file changed since?"
        )
    pixels = dataset.x[val_idx]
    probs = run.model.predict_proba(to_float(pixels), tta=False)
    if config.refit:
        run.notes.append(
            "refit on all rows: the model has seen these validation rows, so the gallery and "
            "matrix below are optimistic"
        )
    return Validation(pixels, labels[val_idx], probs, val_idx + 2, class_counts(labels[train_idx]))


def latest_submission(run_id: str, submissions_dir: Path) -> dict | None:
    """The newest submission JSON (written by `make submit`) naming this run, or None."""
    found = []
    if submissions_dir.is_dir():
        for path in submissions_dir.rglob("*.json"):
            try:
                meta = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if isinstance(meta, dict) and meta.get("run_id") == run_id:
                found.append((path.stat().st_mtime, str(path), meta))
    if not found:
        return None
    _, path, meta = max(found)
    return {**meta, "json": path}


def mistakes_of(validation: Validation) -> list[dict]:
    """The validation rows predicted wrong, most confident first (the worst), at most MAX_MISTAKES."""
    predicted = validation.predicted
    wrong = np.flatnonzero(predicted != validation.labels)
    confidence = validation.probs[wrong, predicted[wrong]]
    order = wrong[np.argsort(-confidence, kind="stable")][:MAX_MISTAKES]
    return [
        {
            "index": int(i),
            "line": int(validation.lines[i]),
            "true": int(validation.labels[i]),
            "predicted": int(predicted[i]),
            "confidence": float(validation.probs[i, predicted[i]]),
            "p_true": float(validation.probs[i, validation.labels[i]]),
        }
        for i in order
    ]


def unsure_test_rows(run: Run, submission: dict) -> tuple[np.ndarray, list[dict]] | None:
    """The N_UNSURE test rows with the lowest top probability: (pixels (k, 784), rows)."""
    test_path = submission.get("test")
    if not test_path or not Path(test_path).exists():
        run.notes.append(
            f"the run's submission ({submission['json']}) names no test file that is still there "
            f"({test_path or 'not recorded: `make submit` again'}), so no least-sure test rows"
        )
        return None
    test = load_test(test_path)
    probs = run.model.predict_proba(to_float(test.x), tta=submission.get("tta"))
    top_two = np.argsort(-probs, axis=1)[:, :2]
    top_p = probs[np.arange(len(probs)), top_two[:, 0]]
    order = np.argsort(top_p, kind="stable")[:N_UNSURE]
    rows = [
        {
            "image_id": int(i) + 1,
            "first": int(top_two[i, 0]),
            "p_first": float(probs[i, top_two[i, 0]]),
            "second": int(top_two[i, 1]),
            "p_second": float(probs[i, top_two[i, 1]]),
        }
        for i in order
    ]
    return test.x[order], rows
