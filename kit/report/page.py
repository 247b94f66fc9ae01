"""The report of one run: `models/<run-id>/report.html` and the PNGs it shows, beside it.

    report.html            self-contained page (inline CSS, no JavaScript, no network), opens from disk
    report-curves.png      loss, accuracy and learning rate per epoch, one line per ensemble member
    report-confusion.png   confusion matrix heat maps: counts and row-normalised
    report-mistakes.png    the worst validation mistakes (most confident first)
    report-unsure.png      the test rows the model is least sure of (from the run's latest submission)

Everything comes from the run folder (kit.report.gather: config.json, metrics.json,
history.csv, model.npz; the validation rows drawn again from train.csv with the run's seed, as
`make validate` does, and evaluated once). Whatever is missing (train.csv moved, no validation
rows, no submission yet, an old run without some file) is named in one line and the rest is
drawn. The pictures are drawn in kit/report/plots.py; matplotlib is imported only when a report
is written, never on the training path.
"""

from __future__ import annotations

import html
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kit.core.atomic import atomic_open
from kit.core.console import log
from kit.core.mnist import N_CLASSES
from kit.data.split import class_counts
from kit.nn.metrics import confusion_matrix, per_class
from kit.report.gather import (
    Run,
    Validation,
    evaluate_validation,
    find_run_dir,
    latest_submission,
    mistakes_of,
    read_run,
    unsure_test_rows,
)
from kit.report.plots import plot_confusion, plot_curves, plot_digits

REPORT_NAME = "report.html"
CURVES_PNG = "report-curves.png"
CONFUSION_PNG = "report-confusion.png"
MISTAKES_PNG = "report-mistakes.png"
UNSURE_PNG = "report-unsure.png"


@dataclass
class Report:
    """What write_report produced: the page, the images it embeds, and what it had to leave out."""

    path: Path
    images: list[Path]
    notes: list[str]
    mistakes: list[dict]  # gallery rows: line (train.csv), true, predicted, confidence
    unsure: list[dict]  # test rows: image_id, first, p_first, second, p_second


def _percent(probability: float) -> str:
    """'87%'; above 99% one decimal, rounded down, so a wrong answer never reads '100%'."""
    if probability < 0.99:
        return f"{100 * probability:.0f}%"
    return f"{math.floor(1000 * probability) / 10:.1f}%"


def write_report(run_path: str | os.PathLike, submissions_dir: str | os.PathLike = "submissions") -> Report:
    """Write report.html and its PNGs into the run folder (each file atomically); returns what
    was written. Each section draws what the run has; what it lacks becomes a note."""
    started = time.perf_counter()
    run = read_run(find_run_dir(run_path))
    validation = evaluate_validation(run)
    images: list[Path] = []
    sections = [_curves(run, images), _confusion(run, validation, images)]
    mistakes, section = _mistakes(run, validation, images)
    sections.append(section)
    unsure, section = _unsure(run, Path(submissions_dir), images)
    sections += [section, _section("Run", _run_tables(run, validation))]
    path = run.run_dir / REPORT_NAME
    page = _page(run, [s for s in sections if s], time.perf_counter() - started)
    with atomic_open(path, "w", encoding="utf-8") as handle:
        handle.write(page)
    for note in run.notes:
        log(f"report: {note}")
    return Report(path, images, run.notes, mistakes, unsure)


def _curves(run: Run, images: list[Path]) -> str | None:
    if not run.history:
        return None
    # an older run names only its best epoch, not each member's
    members = run.metrics.get("members") or [{"member": 0, "best_epoch": run.metrics.get("best_epoch")}]
    images.append(plot_curves(run.history, members, run.run_dir / CURVES_PNG))
    return _section(
        "Learning curves", _img(CURVES_PNG, "loss, accuracy and learning rate per epoch") + _epochs_note(run)
    )


def _confusion(run: Run, validation: Validation | None, images: list[Path]) -> str | None:
    if validation is not None:
        matrix = confusion_matrix(validation.labels, validation.predicted)
    elif "confusion_matrix" in run.metrics:  # no validation rows to predict: the run's own matrix
        matrix = np.array(run.metrics["confusion_matrix"])
    else:
        return None
    images.append(plot_confusion(matrix, run.run_dir / CONFUSION_PNG))
    return _section(
        "Confusion matrix", _img(CONFUSION_PNG, "confusion matrix heat maps") + _per_class_table(matrix)
    )


def _mistakes(run: Run, validation: Validation | None, images: list[Path]) -> tuple[list[dict], str | None]:
    if validation is None:
        return [], None
    mistakes = mistakes_of(validation)
    if not mistakes:
        return [], _section("Worst validation mistakes", "<p>No validation row is misclassified.</p>")
    captions = [
        f"true {m['true']} → {m['predicted']}\n{_percent(m['confidence'])}, line {m['line']}"
        for m in mistakes
    ]
    pixels = validation.pixels[[m["index"] for m in mistakes]]
    images.append(plot_digits(pixels, captions, run.run_dir / MISTAKES_PNG, ["#b00020"] * len(mistakes)))
    n_wrong = int(np.count_nonzero(validation.predicted != validation.labels))
    body = (
        f"<p>{len(mistakes)} of the {n_wrong} misclassified validation rows, most confident first (caption: "
        "true label → predicted, the model's confidence in it, the row's line in train.csv).</p>"
        + _img(MISTAKES_PNG, "misclassified validation digits")
        + _mistakes_table(mistakes)
    )
    return mistakes, _section("Worst validation mistakes", body)


def _unsure(run: Run, submissions_dir: Path, images: list[Path]) -> tuple[list[dict], str | None]:
    if run.model is None:
        return [], None
    submission = latest_submission(run.run_dir.name, submissions_dir)
    if submission is None:
        run.notes.append(
            f"no submission of this run under {submissions_dir}/ yet, so no least-sure test rows "
            "(`make submit MODEL=...` then `make report`)"
        )
        return [], None
    found = unsure_test_rows(run, submission)
    if found is None:
        return [], None
    pixels, unsure = found
    captions = [
        f"#{u['image_id']}: {u['first']} {_percent(u['p_first'])}\nor {u['second']} {_percent(u['p_second'])}"
        for u in unsure
    ]
    images.append(plot_digits(pixels, captions, run.run_dir / UNSURE_PNG))
    body = (
        f"<p>From {html.escape(str(submission['test']))} as submitted in {html.escape(submission['json'])}: "
        f"the {len(unsure)} rows with the lowest top probability (caption: ImageId: first choice and its "
        "probability, or the second). Look at these before uploading.</p>"
        + _img(UNSURE_PNG, "least sure test digits")
    )
    return unsure, _section("Test rows the model is least sure of", body)


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


def _per_class_table(matrix: np.ndarray) -> str:
    scores = per_class(matrix)
    rows = [
        [
            name,
            *(f"{scores[name][k]:.4f}" for k in ("precision", "recall", "f1-score")),
            int(scores[name]["support"]),
        ]
        for name in [str(c) for c in range(N_CLASSES)] + ["macro avg", "weighted avg"]
    ]
    return "<p>Per class, from the confusion matrix (recall is the class's accuracy):</p>" + _table(
        ["class", "precision", "recall", "F1", "rows"], rows
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
