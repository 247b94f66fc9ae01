"""Loading and checking the competition CSVs, and their binary cache (the split: kit.data.split).

Kaggle's layout:
    train.csv   label,pixel0,...,pixel783     one row per image, ints 0..255, label 0..9
    test.csv    pixel0,...,pixel783

Arrays are batch-major: images as (n, 784) uint8, labels as (n,) uint8. The first load
parses the CSV once (pandas' C parser) and keeps a .npz cache in `<csv folder>/.cache/`;
the cache is keyed on the CSV's size and modification time, so an edited CSV is parsed again.
Every problem with a file raises KitError with one line: file, line, column, what to do.
"""

from __future__ import annotations

import csv
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kit.core.atomic import atomic_path
from kit.core.errors import KitError
from kit.core.mnist import N_CLASSES, N_PIXELS

PIXEL_COLUMNS = [f"pixel{i}" for i in range(N_PIXELS)]
TRAIN_COLUMNS = ["label"] + PIXEL_COLUMNS
TEST_COLUMNS = PIXEL_COLUMNS
CACHE_VERSION = 1

GET_DATA_HINT = "run `make data` to download the competition files (or `make demo` to try the bundled sample)"


@dataclass
class Dataset:
    """Images (n, 784) uint8 and, for train.csv, labels (n,) uint8 (None for test.csv)."""

    x: np.ndarray
    y: np.ndarray | None


def load_train(path: str | os.PathLike) -> Dataset:
    """Load and check a Kaggle train.csv (label,pixel0..pixel783)."""
    return _load(Path(path), has_label=True)


def load_test(path: str | os.PathLike) -> Dataset:
    """Load and check a Kaggle test.csv (pixel0..pixel783)."""
    return _load(Path(path), has_label=False)


def _load(path: Path, has_label: bool) -> Dataset:
    if not path.exists():
        raise KitError(f"{path}: file not found; {GET_DATA_HINT}")
    if path.is_dir():
        raise KitError(f"{path}: is a folder, not a CSV file; give the path of the .csv file")
    stat = path.stat()
    cached = _read_cache(path, stat, has_label)
    if cached is not None:
        return cached
    x, y = parse_csv(path, has_label)
    _write_cache(path, stat, x, y)
    return Dataset(x=x, y=y)


# --------------------------------------------------------------------------- parsing and checks


def parse_csv(path: Path, has_label: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Parse and check one competition CSV; return (pixels uint8 (n, 784), labels uint8 (n,) or None)."""
    import pandas as pd  # imported here: the cached path never needs it

    expected = TRAIN_COLUMNS if has_label else TEST_COLUMNS
    _check_header(path, expected, has_label)
    try:
        with warnings.catch_warnings():
            # a row with extra cells is only a warning to pandas (it drops them); to us it is an error
            warnings.simplefilter("error", pd.errors.ParserWarning)
            frame = pd.read_csv(path, dtype=np.int16, index_col=False, engine="c", skip_blank_lines=True)
        values = frame.to_numpy()
        ok = frame.shape[1] == len(expected)
    except (ValueError, pd.errors.ParserError, pd.errors.ParserWarning, OverflowError):
        ok = False
    if not ok:
        # The fast parser only says *that* something is wrong; find exactly where.
        _diagnose_rows(path, expected)
        raise KitError(
            f"{path}: could not be parsed as a CSV of integers; check that it is the competition's file"
        )
    if values.shape[0] == 0:
        raise KitError(f"{path}: has a header but no data rows; {GET_DATA_HINT}")

    first_pixel = 1 if has_label else 0
    pixels = values[:, first_pixel:]
    _check_range(path, pixels, 0, 255, first_pixel, expected, "a pixel value 0..255")
    x = np.ascontiguousarray(pixels, dtype=np.uint8)
    y = None
    if has_label:
        labels = values[:, :1]
        _check_range(path, labels, 0, N_CLASSES - 1, 0, expected, "a label 0..9")
        y = np.ascontiguousarray(labels[:, 0], dtype=np.uint8)
    return x, y


def _check_header(path: Path, expected: list[str], has_label: bool) -> None:
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as handle:
        header = next(csv.reader([handle.readline()]), None)
    if not header:
        raise KitError(f"{path}: file is empty; {GET_DATA_HINT}")
    header = [name.strip() for name in header]
    if header == expected:
        return
    if not has_label and header and header[0] == "label":
        raise KitError(
            f"{path}, line 1: test file has a 'label' column; test.csv must hold only pixel0..pixel783 "
            "(was train.csv given as the test file?)"
        )
    if has_label and header == TEST_COLUMNS:
        raise KitError(
            f"{path}, line 1: no 'label' column; train.csv must start with label,pixel0 "
            "(was test.csv given as the training file?)"
        )
    for index, (got, want) in enumerate(zip(header, expected)):
        if got != want:
            raise KitError(
                f"{path}, line 1, column {index + 1}: header says {got!r} where {want!r} belongs; "
                f"the header must be {expected[0]},{expected[1]},...,{expected[-1]}"
            )
    raise KitError(
        f"{path}, line 1: header has {len(header)} columns, expected {len(expected)} "
        f"({expected[0]},{expected[1]},...,{expected[-1]})"
    )


def _diagnose_rows(path: Path, expected: list[str]) -> None:
    """Scan the file row by row and raise KitError at the first bad cell (slow; error path only)."""
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as handle:
        reader = csv.reader(handle)
        next(reader, None)
        for row in reader:
            line = reader.line_num
            if not row:
                continue
            if len(row) != len(expected):
                raise KitError(
                    f"{path}, line {line}: {len(row)} columns where the header has {len(expected)}; "
                    "fix or remove that row"
                )
            for column, cell in zip(expected, row):
                text = cell.strip()
                try:
                    int(text)
                except ValueError:
                    shown = text if text else "an empty cell"
                    what = "a label 0..9" if column == "label" else "a pixel value 0..255"
                    raise KitError(
                        f"{path}, line {line}, column {column}: {shown!r} is not an integer; "
                        f"each cell must be {what}"
                    ) from None


def _check_range(
    path: Path, block: np.ndarray, low: int, high: int, first_column: int, names: list[str], what: str
) -> None:
    bad = (block < low) | (block > high)
    if bad.any():
        row, column = np.argwhere(bad)[0]
        raise KitError(
            f"{path}, line {row + 2}, column {names[first_column + column]}: "
            f"{int(block[row, column])} is out of range; each cell must be {what}"
        )


# --------------------------------------------------------------------------- the binary cache


def is_cached(path: str | os.PathLike, has_label: bool) -> bool:
    """True when the CSV has a valid binary cache (so it was parsed and checked since it last changed)."""
    path = Path(path)
    return _read_cache(path, path.stat(), has_label) is not None


def _cache_path(path: Path) -> Path:
    return path.parent / ".cache" / f"{path.name}.npz"


def _read_cache(path: Path, stat: os.stat_result, has_label: bool) -> Dataset | None:
    cache = _cache_path(path)
    if not cache.exists():
        return None
    try:
        with np.load(cache, allow_pickle=False) as stored:
            key = stored["key"].tolist()
            if key != [CACHE_VERSION, stat.st_size, stat.st_mtime_ns, int(has_label)]:
                return None
            x = stored["x"]
            y = stored["y"] if has_label else None
    except (OSError, ValueError, KeyError):
        return None  # a damaged cache is simply rebuilt
    return Dataset(x=x, y=y)


def _write_cache(path: Path, stat: os.stat_result, x: np.ndarray, y: np.ndarray | None) -> None:
    key = np.array([CACHE_VERSION, stat.st_size, stat.st_mtime_ns, int(y is not None)], dtype=np.int64)
    arrays = {"key": key, "x": x}
    if y is not None:
        arrays["y"] = y
    try:
        with atomic_path(_cache_path(path)) as tmp:
            np.savez(tmp, **arrays)
    except OSError:
        pass  # a read-only data folder just means no cache
