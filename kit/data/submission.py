"""Kaggle's submission format: reading, checking and writing submission.csv.

Format: header `ImageId,Label`, one row per test image in test order, ImageId 1..N, Label an
integer 0..9. When sample_submission.csv is present the row count and ids must match it.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from kit.core.atomic import atomic_open
from kit.core.errors import KitError

SUBMISSION_HEADER = ("ImageId", "Label")  # ImageId 1..N in test order, Label 0..9


def read_submission(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read and check a submission file's format; return (image_ids, labels) as int arrays."""
    path = Path(path)
    if not path.exists():
        raise KitError(f"{path}: no submission there; run `make submit` first (or give FILE=path)")
    ids, labels = [], []
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            raise KitError(f"{path}: file is empty; a submission starts with the header ImageId,Label")
        if tuple(h.strip() for h in header) != SUBMISSION_HEADER:
            raise KitError(
                f"{path}, line 1: header is {','.join(header)!r}; it must be exactly ImageId,Label"
            )
        for row in reader:
            line = reader.line_num
            if not row:
                continue
            if len(row) != 2:
                raise KitError(f"{path}, line {line}: {len(row)} columns; each row must be ImageId,Label")
            for column, cell in zip(SUBMISSION_HEADER, row):
                try:
                    int(cell.strip())
                except ValueError:
                    raise KitError(
                        f"{path}, line {line}, column {column}: {cell!r} is not an integer"
                    ) from None
            ids.append(int(row[0]))
            labels.append(int(row[1]))
    return np.array(ids, dtype=np.int64), np.array(labels, dtype=np.int64)


def check_submission(
    ids: np.ndarray,
    labels: np.ndarray,
    path: str | os.PathLike,
    n_rows: int | None = None,
    sample_path: str | os.PathLike | None = None,
) -> None:
    """Refuse a submission Kaggle would reject: wrong row count, ids not 1..N in order, labels
    outside 0..9."""
    if len(ids) == 0:
        raise KitError(f"{path}: has a header but no rows; it must hold one row per test image")
    if n_rows is None and sample_path is not None and Path(sample_path).exists():
        sample_ids, _ = read_submission(sample_path)
        n_rows = len(sample_ids)
        if len(ids) == n_rows and not np.array_equal(ids, sample_ids):
            row = int(np.argmax(ids != sample_ids))
            raise KitError(
                f"{path}, line {row + 2}, column ImageId: {ids[row]} where {sample_path} has "
                f"{sample_ids[row]}"
            )
    if n_rows is not None and len(ids) != n_rows:
        raise KitError(f"{path}: {len(ids)} rows, but the test set has {n_rows}; predict the whole test.csv")
    expected = np.arange(1, len(ids) + 1)
    if not np.array_equal(ids, expected):
        row = int(np.argmax(ids != expected))
        raise KitError(
            f"{path}, line {row + 2}, column ImageId: {ids[row]} where {expected[row]} belongs; "
            "ImageId must run 1..N in test order"
        )
    bad = (labels < 0) | (labels > 9)
    if bad.any():
        row = int(np.argmax(bad))
        raise KitError(f"{path}, line {row + 2}, column Label: {labels[row]} is not a digit 0..9")


def check_submission_file(
    path: str | os.PathLike, n_rows: int | None = None, sample_path: str | os.PathLike | None = None
) -> int:
    """The strict check `make upload` runs on a file before any network call; returns its row count."""
    ids, labels = read_submission(path)
    check_submission(ids, labels, path, n_rows=n_rows, sample_path=sample_path)
    return len(ids)


def write_submission(
    labels: np.ndarray, path: str | os.PathLike, sample_path: str | os.PathLike | None = None
) -> None:
    """Check, then write atomically, `ImageId,Label` rows for labels (n,) in test order."""
    labels = np.asarray(labels, dtype=np.int64)
    ids = np.arange(1, len(labels) + 1)
    check_submission(ids, labels, path, sample_path=sample_path)
    with atomic_open(path, "w", newline="") as handle:
        handle.write(",".join(SUBMISSION_HEADER) + "\n")
        handle.writelines(f"{i},{label}\n" for i, label in zip(ids, labels))
