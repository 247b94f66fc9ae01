"""The report of one run: `models/<run-id>/report.html` and the PNGs it shows, beside it.

    report.html            self-contained page (inline CSS, no JavaScript, no network), opens from disk
    report-curves.png      loss, accuracy and learning rate per epoch, one line per ensemble member
    report-confusion.png   confusion matrix heat maps: counts and row-normalised
    report-mistakes.png    the worst validation mistakes (most confident first)
    report-unsure.png      the test rows the model is least sure of (from the run's latest submission)

Everything is read from the run folder (config.json, metrics.json, history.csv, model.npz);
the validation rows are drawn again from train.csv with the run's seed, as `make validate`
does, and evaluated once. Whatever is missing (train.csv moved, no validation rows, no
submission yet, an old run without some file) is named in one line and the rest is drawn.
The pictures are drawn in kit/report_plots.py; matplotlib and scikit-learn are imported only when
a report is written, never on the training path.
"""

from __future__ import annotations

import csv
import html
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kit.config import Config
from kit.core.atomic import atomic_open
from kit.core.console import log
from kit.core.errors import KitError
from kit.core.mnist import N_CLASSES
from kit.data.load import load_test, load_train
from kit.data.split import class_counts, run_split, to_float
from kit.report.plots import plot_confusion, plot_curves, plot_digits

REPORT_NAME = "report.html"
CURVES_PNG = "report-curves.png"
CONFUSION_PNG = "report-confusion.png"
MISTAKES_PNG = "report-mistakes.png"
UNSURE_PNG = "report-unsure.png"
MAX_MISTAKES = 48  # the gallery shows the worst 48 (all of them when there are fewer)
N_UNSURE = 36  # least-sure test rows shown


@dataclass
class Run:
    """What a run folder holds, read leniently: each missing piece is None plus a note."""

    run_dir: Path
    config: Config | None = None
    metrics: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    model: object | None = None  # kit.network.Model
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


@dataclass
class Report:
    """What write_report produced: the page, the images it embeds, and what it had to leave out."""

    path: Path
    images: list[Path]
    notes: list[str]
    mistakes: list[dict]  # gallery rows: line (train.csv), true, predicted, confidence
    unsure: list[dict]  # test rows: image_id, first, p_first, second, p_second


# --------------------------------------------------------------------------- reading a run


def find_run_dir(path: str | os.PathLike) -> Path:
    """A run folder, its model.npz, or a models/ folder (its latest run) -> the run folder."""
    from kit.run.folders import resolve_run_dir

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
    from kit.run.model import Model

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


# --------------------------------------------------------------------------- the sections


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


def _percent(probability: float) -> str:
    """'87%'; above 99% one decimal, rounded down, so a wrong answer never reads '100%'."""
    if probability < 0.99:
        return f"{100 * probability:.0f}%"
    return f"{math.floor(1000 * probability) / 10:.1f}%"


def write_report(run_path: str | os.PathLike, submissions_dir: str | os.PathLike = "submissions") -> Report:
    """Write report.html and its PNGs into the run folder (each file atomically); returns what was written."""
    started = time.perf_counter()
    run = read_run(find_run_dir(run_path))
    run_dir, metrics = run.run_dir, run.metrics
    images: list[Path] = []
    sections: list[str] = []

    if run.history:
        # an older run names only its best epoch, not each member's
        members = metrics.get("members") or [{"member": 0, "best_epoch": metrics.get("best_epoch")}]
        images.append(plot_curves(run.history, members, run_dir / CURVES_PNG))
        sections.append(
            _section(
                "Learning curves",
                _img(CURVES_PNG, "loss, accuracy and learning rate per epoch") + _epochs_note(run),
            )
        )

    validation = evaluate_validation(run)
    if validation is not None:
        from sklearn.metrics import classification_report, confusion_matrix

        labels = list(range(N_CLASSES))
        matrix = confusion_matrix(validation.labels, validation.predicted, labels=labels)
        per_class = classification_report(
            validation.labels, validation.predicted, labels=labels, output_dict=True, zero_division=0
        )
    else:
        matrix = np.array(metrics["confusion_matrix"]) if "confusion_matrix" in metrics else None
        per_class = None
    if matrix is not None:
        images.append(plot_confusion(matrix, run_dir / CONFUSION_PNG))
        sections.append(
            _section(
                "Confusion matrix",
                _img(CONFUSION_PNG, "confusion matrix heat maps")
                + (_per_class_table(per_class) if per_class else ""),
            )
        )

    mistakes: list[dict] = []
    if validation is not None:
        mistakes = mistakes_of(validation)
        if mistakes:
            captions = [
                f"true {m['true']} → {m['predicted']}\n{_percent(m['confidence'])}, line {m['line']}"
                for m in mistakes
            ]
            images.append(
                plot_digits(
                    validation.pixels[[m["index"] for m in mistakes]],
                    captions,
                    run_dir / MISTAKES_PNG,
                    ["#b00020"] * len(mistakes),
                )
            )
            n_wrong = int(np.count_nonzero(validation.predicted != validation.labels))
            body = (
                f"<p>{len(mistakes)} of the {n_wrong} misclassified validation rows, most confident first "
                "(caption: true label → predicted, the model's confidence in it, the row's line in "
                "train.csv).</p>"
                + _img(MISTAKES_PNG, "misclassified validation digits")
                + _mistakes_table(mistakes)
            )
        else:
            body = "<p>No validation row is misclassified.</p>"
        sections.append(_section("Worst validation mistakes", body))

    unsure: list[dict] = []
    run_id = run_dir.name
    submission = latest_submission(run_id, Path(submissions_dir)) if run.model is not None else None
    if run.model is not None and submission is None:
        run.notes.append(
            f"no submission of this run under {submissions_dir}/ yet, so no least-sure test rows "
            "(`make submit MODEL=...` then `make report`)"
        )
    if submission is not None:
        found = unsure_test_rows(run, submission)
        if found is not None:
            pixels, unsure = found
            captions = [
                f"#{u['image_id']}: {u['first']} {_percent(u['p_first'])}\nor {u['second']} "
                f"{_percent(u['p_second'])}"
                for u in unsure
            ]
            images.append(plot_digits(pixels, captions, run_dir / UNSURE_PNG))
            sections.append(
                _section(
                    "Test rows the model is least sure of",
                    (
                        f"<p>From {html.escape(str(submission['test']))} as submitted in "
                        f"{html.escape(submission['json'])}: the {len(unsure)} rows with the lowest top "
                        "probability "
                        "(caption: ImageId: first choice and its probability, or the second). Look at "
                        "these before "
                        "uploading.</p>"
                    )
                    + _img(UNSURE_PNG, "least sure test digits"),
                )
            )

    sections.append(_section("Run", _run_tables(run, validation)))
    path = run_dir / REPORT_NAME
    page = _page(run, sections, time.perf_counter() - started)
    with atomic_open(path, "w", encoding="utf-8") as handle:
        handle.write(page)
    for note in run.notes:
        log(f"report: {note}")
    return Report(path, images, run.notes, mistakes, unsure)


# --------------------------------------------------------------------------- HTML


CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0 auto;
       max-width: 1320px; padding: 1rem 1.5rem 3rem; color: #222; line-height: 1.45; }
h1 { font-size: 1.5rem; margin-bottom: .2rem; } h2 { font-size: 1.2rem; border-bottom: 1px solid #ddd; }
img { max-width: 100%; height: auto; display: block; }
table { border-collapse: collapse; font-size: .9rem; margin: .5rem 0; }
td, th { border: 1px solid #ddd; padding: .2rem .55rem; text-align: right; }
th { background: #f4f4f4; } td.k { text-align: left; font-family: ui-monospace, monospace; }
.notes { background: #fff6d6; border: 1px solid #e8d48a; padding: .5rem 1rem; }
.summary { font-size: 1.05rem; }
.tables { display: flex; flex-wrap: wrap; gap: 2rem; align-items: flex-start; }
details { margin: .5rem 0; } small { color: #666; }
"""


def _page(run: Run, sections: list[str], seconds: float) -> str:
    metrics = run.metrics
    bits = []
    if "val_accuracy" in metrics:
        bits.append(
            f"validation accuracy <b>{metrics['val_accuracy']:.4f}</b> (loss {metrics['val_loss']:.4f}) "
            f"on {metrics.get('n_val', '?')} rows"
        )
    if metrics.get("best_epoch"):
        bits.append(f"best epoch {metrics['best_epoch']}")
    if "seconds" in metrics:
        bits.append(f"trained in {metrics['seconds']:.1f} s")
    notes = "".join(f"<li>{html.escape(note)}</li>" for note in run.notes)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Run {html.escape(run.run_dir.name)}</title><style>{CSS}</style></head><body>\n"
        f"<h1>Run {html.escape(run.run_dir.name)}</h1>\n"
        '<p class="summary">preset '
        f"{html.escape(str(metrics.get('preset', run.config.preset if run.config else '?')))}"
        f"{'; ' if bits else ''}{'; '.join(bits)}</p>\n"
        + (f'<div class="notes"><b>Not shown:</b><ul>{notes}</ul></div>\n' if notes else "")
        + "\n".join(sections)
        + f"\n<p><small>written {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())} in {seconds:.1f} s "
        f"by <code>make report</code> from {html.escape(str(run.run_dir))}</small></p>\n</body></html>\n"
    )


def _section(title: str, body: str) -> str:
    return f"<section><h2>{html.escape(title)}</h2>\n{body}\n</section>"


def _img(name: str, alt: str) -> str:
    return f'<img src="{name}" alt="{html.escape(alt)}">'


def _table(header: list[str] | None, rows: list[list], key_column: bool = True) -> str:
    """An HTML table of rows (lists of cells), with a header row when header is given."""
    head = "<tr>" + "".join(f"<th>{html.escape(str(h))}</th>" for h in header) + "</tr>" if header else ""
    body = "".join(
        "<tr>"
        + "".join(
            f"<td{' class=k' if key_column and j == 0 else ''}>{html.escape(str(v))}</td>"
            for j, v in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table>{head}{body}</table>"


def _epochs_note(run: Run) -> str:
    if run.config is None:
        return ""
    ran = sum(1 for row in run.history if int(row["member"]) == 0)
    if ran < run.config.epochs:
        why = "interrupted" if run.metrics.get("interrupted") else "early stopping (PATIENCE)"
        return f"<p>{ran} of {run.config.epochs} epochs ran ({why}).</p>"
    return ""


def _per_class_table(report: dict) -> str:
    rows = [
        [
            str(c),
            f"{report[str(c)]['precision']:.4f}",
            f"{report[str(c)]['recall']:.4f}",
            f"{report[str(c)]['f1-score']:.4f}",
            int(report[str(c)]["support"]),
        ]
        for c in range(N_CLASSES)
    ]
    for name in ("macro avg", "weighted avg"):
        if name in report:
            r = report[name]
            rows.append(
                [
                    name,
                    f"{r['precision']:.4f}",
                    f"{r['recall']:.4f}",
                    f"{r['f1-score']:.4f}",
                    int(r["support"]),
                ]
            )
    return (
        "<p>Per class (scikit-learn's classification_report; recall is the per-class accuracy):</p>"
        + _table(["class", "precision", "recall", "F1", "rows"], rows)
    )


def _mistakes_table(mistakes: list[dict]) -> str:
    rows = "".join(
        f'<tr data-line="{m["line"]}" data-true="{m["true"]}" data-predicted="{m["predicted"]}">'
        f"<td>{m['line']}</td><td>{m['true']}</td><td>{m['predicted']}</td><td>{m['confidence']:.4f}</td>"
        f"<td>{m['p_true']:.4f}</td></tr>"
        for m in mistakes
    )
    return (
        '<details><summary>the same rows as a table</summary><table class="mistakes"><tr><th>train.csv '
        "line</th>"
        "<th>true</th><th>predicted</th><th>confidence</th><th>p(true)</th></tr>"
        + rows
        + "</table></details>"
    )


def _run_tables(run: Run, validation: Validation | None) -> str:
    metrics, config = run.metrics, run.config
    config_rows = [[k, v] for k, v in config.to_dict().items()] if config else []
    data_rows = [
        ["train.csv", metrics.get("train_path", "not recorded")],
        ["training rows", metrics.get("n_train", "?")],
        ["validation rows", metrics.get("n_val", "?")],
    ]
    if validation is not None:
        val_counts = class_counts(validation.labels)
        data_rows += [
            [f"class {c} (train / val)", f"{validation.train_counts[c]} / {val_counts[c]}"]
            for c in range(N_CLASSES)
        ]
    epoch_seconds = [row["seconds"] for row in run.history if isinstance(row.get("seconds"), float)]
    time_rows = [
        ["total seconds", metrics.get("seconds", "?")],
        ["epochs run", len(epoch_seconds)],
        ["mean seconds per epoch", f"{np.mean(epoch_seconds):.2f}" if epoch_seconds else "?"],
        ["best epoch", metrics.get("best_epoch", "?")],
        ["interrupted", metrics.get("interrupted", "?")],
        ["BLAS threads", metrics.get("blas_threads", "?")],
    ]
    for member in metrics.get("members", []) if len(metrics.get("members", [])) > 1 else []:
        time_rows.append(
            [
                f"member {member['member'] + 1}",
                f"best epoch {member.get('best_epoch')}, val acc "
                f"{member.get('val_accuracy', float('nan')):.4f}",
            ]
        )
    machine = metrics.get("machine")
    machine_rows = (
        [[k, v] for k, v in machine.items()] if machine else [["machine", "not recorded by this run"]]
    )
    parts = [("Config", config_rows), ("Data", data_rows), ("Timings", time_rows), ("Machine", machine_rows)]
    return (
        '<div class="tables">'
        + "".join(f"<div><h3>{title}</h3>{_table(None, rows)}</div>" for title, rows in parts if rows)
        + "</div>"
    )
