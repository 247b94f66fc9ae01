"""A saved run at work: predicting test.csv into a checked submission (`make submit`), and
scoring the run again on its own validation rows (`make validate`).

    submit_run("models", "data/test.csv", "submissions/submission.csv")   # the latest run

Besides submission.csv, `make submit` writes a copy named after the run (so earlier
submissions are kept) and submission.json describing the model, which `make upload` (its
default message) and `make report` (its least-sure test rows) read. The ONNX route
(`make submit ONNX=`) predicts in kit.onnx.predict and writes the same files through
write_submission_files.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from kit.core.atomic import atomic_open
from kit.core.console import log
from kit.core.errors import KitError
from kit.core.mnist import N_CLASSES
from kit.data.load import load_test, load_train
from kit.data.split import run_split, to_float
from kit.data.submission import write_submission
from kit.nn.metrics import score
from kit.run.folders import resolve_model
from kit.run.model import Model


def predict_test(model: Model, test_path: str | os.PathLike) -> np.ndarray:
    """Predicted labels (n,) for every row of test.csv."""
    test = load_test(test_path)
    return model.predict(to_float(test.x))


def submit_run(
    model_path: str | os.PathLike,
    test_path: str | os.PathLike,
    out_path: str | os.PathLike,
    sample_path: str | os.PathLike | None = None,
    tta: bool | None = None,
) -> Path:
    """Predict test.csv with a saved run (a run folder, its model.npz, or models/ for the latest)
    and write the checked submission files; returns the submission's path."""
    model_file = resolve_model(model_path)
    model = Model.load(model_file)
    if tta is not None:
        model.config.tta = tta
    labels = predict_test(model, test_path)
    return write_submission_files(
        labels, model.meta, model_file, test_path, out_path, sample_path, used_tta=bool(model.config.tta)
    )


def write_submission_files(
    labels: np.ndarray,
    meta: dict,
    model_file: Path,
    test_path: str | os.PathLike,
    out_path: str | os.PathLike,
    sample_path: str | os.PathLike | None,
    used_tta: bool,
) -> Path:
    """Check and write submission.csv, its copy submission-<run_id>.csv and submission.json
    (the model's meta, the model file, the row count, the test file and whether TTA was used),
    each atomically, and say what was written."""
    sample = sample_path if sample_path and Path(sample_path).exists() else None
    out_path = Path(out_path)
    write_submission(labels, out_path, sample)
    run_id = meta.get("run_id", "unknown")
    copy = out_path.with_name(f"{out_path.stem}-{run_id}.csv")
    write_submission(labels, copy, sample)
    with atomic_open(out_path.with_suffix(".json"), "w") as handle:
        # test and tta let `make report` find and predict these test rows again (its least-sure rows)
        json.dump(
            {
                **meta,
                "model": str(model_file),
                "rows": int(len(labels)),
                "test": str(test_path),
                "tta": used_tta,
            },
            handle,
            indent=2,
        )
    log(f"model {model_file} (run {run_id}, val acc {meta.get('val_accuracy')})")
    log(f"wrote {out_path} ({len(labels)} rows{', matches ' + str(sample) if sample else ''}); copy {copy}")
    log(f"predicted class counts: {np.bincount(labels, minlength=N_CLASSES).tolist()}")
    return out_path


def validate_run(
    model_path: str | os.PathLike, train_path: str | os.PathLike, tta: bool | None = None
) -> dict[str, float]:
    """Score a saved run again on its own validation rows: the split is drawn again from the
    run's seed (it is the first thing its rng draws), so give the train.csv it was trained on.
    tta None scores without and with test-time augmentation. Returns {"plain"/"tta": accuracy}."""
    model_file = resolve_model(model_path)
    model = Model.load(model_file)
    config = model.config
    if config.val_fraction <= 0:
        raise KitError(f"{model_file}: trained with VAL_FRACTION=0, so it has no validation rows to score")
    dataset = load_train(train_path)
    _, val_idx, _ = run_split(dataset.y, config.val_fraction, config.seed)
    x_val, y_val = to_float(dataset.x[val_idx]), dataset.y[val_idx].astype(np.int64)
    results = {}
    for use_tta in [False, True] if tta is None else [tta]:
        started = time.perf_counter()
        _, accuracy = score(model.predict_proba(x_val, tta=use_tta), y_val)
        results["tta" if use_tta else "plain"] = accuracy
        log(
            f"{model_file}: validation accuracy {accuracy:.4f} on {len(y_val)} rows "
            f"({'with' if use_tta else 'without'} test-time augmentation, "
            f"{time.perf_counter() - started:.1f}s)"
        )
    stored = model.meta.get("val_accuracy")
    if (
        stored is not None
        and "plain" in results
        and abs(stored - results["plain"]) > 1e-9
        and not config.refit
    ):
        log(f"warning: the run recorded {stored:.4f}; is {train_path} the file it was trained on?")
    if config.refit:
        log("note: this model was refit on all rows, validation rows included; these scores are optimistic")
    return results
