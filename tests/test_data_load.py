"""Loading, checks, cache and split of the competition CSVs; every bad input gives one line and exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kit.cli import main
from kit.core.errors import KitError
from kit.data import load as data
from kit.data import split
from synthetic import make_images, write_test, write_train

HEADER = "label," + ",".join(f"pixel{i}" for i in range(784))
TEST_HEADER = ",".join(f"pixel{i}" for i in range(784))


def row(label=3, fill=0, n=784):
    return ",".join([str(label)] + [str(fill)] * n)


def run_train_cli(path: Path, capsys) -> tuple[int, list[str]]:
    code = main(["train", "--train", str(path), "--epochs", "1", "--model-dir", str(path.parent / "models")])
    err = capsys.readouterr().err.strip().splitlines()
    return code, err


BAD_TRAIN = {
    "empty file": ("", ["file is empty"]),
    "header only": (HEADER + "\n", ["no data rows"]),
    "wrong header": (
        HEADER.replace("pixel5,", "pixle5,") + "\n" + row() + "\n",
        ["line 1", "column 7", "'pixle5'"],
    ),
    "short header": ("label,pixel0,pixel1\n1,2,3\n", ["line 1", "3 columns, expected 785"]),
    "too few columns": (HEADER + "\n" + row() + "\n" + row(n=783) + "\n", ["line 3", "784 columns", "785"]),
    "too many columns": (HEADER + "\n" + row(n=785) + "\n", ["line 2", "786 columns"]),
    "not an integer": (
        HEADER + "\n" + row() + "\n" + row().replace(",0", ",x", 1) + "\n",
        ["line 3", "column pixel0", "'x'"],
    ),
    "empty cell (NaN)": (HEADER + "\n" + row()[:-2] + ",\n", ["line 2", "column pixel783", "empty cell"]),
    "nan text": (HEADER + "\n" + row().replace(",0", ",nan", 1) + "\n", ["line 2", "column pixel0", "'nan'"]),
    "float pixel": (
        HEADER + "\n" + row().replace(",0", ",1.5", 1) + "\n",
        ["line 2", "column pixel0", "'1.5'"],
    ),
    "pixel above 255": (
        HEADER + "\n" + row() + "\n" + row().replace(",0", ",0,256", 1)[:-2] + "\n",
        ["line 3", "column pixel1", "256 is out of range", "0..255"],
    ),
    "negative pixel": (
        HEADER + "\n" + row().replace(",0", ",-1", 1) + "\n",
        ["line 2", "column pixel0", "-1"],
    ),
    "label outside 0..9": (
        HEADER + "\n" + row() + "\n" + row(label=10) + "\n",
        ["line 3", "column label", "10", "0..9"],
    ),
    "test file given as train": (TEST_HEADER + "\n" + ",".join(["0"] * 784) + "\n", ["no 'label' column"]),
}


@pytest.mark.parametrize("case", list(BAD_TRAIN))
def test_bad_train_file_gives_one_line_and_exit_2(tmp_path, capsys, case):
    text, expected = BAD_TRAIN[case]
    path = tmp_path / "train.csv"
    path.write_text(text)
    code, err = run_train_cli(path, capsys)
    assert code == 2
    assert len(err) == 1, err
    assert err[0].startswith(f"error: {path}")
    for fragment in expected:
        assert fragment in err[0], (fragment, err[0])
    assert not (tmp_path / "models").exists()


def test_missing_file_says_make_data(tmp_path, capsys):
    code, err = run_train_cli(tmp_path / "train.csv", capsys)
    assert code == 2 and len(err) == 1
    assert "file not found" in err[0] and "make data" in err[0] and "make demo" in err[0]


def test_test_file_with_label_column_is_refused(tmp_path):
    path = write_train(tmp_path / "test.csv", n=20)
    with pytest.raises(KitError, match=r"line 1: test file has a 'label' column"):
        data.load_test(path)


@pytest.mark.slow
def test_bad_input_from_a_fresh_process_prints_no_traceback(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text(HEADER + "\n" + row(label=12) + "\n")
    result = subprocess.run(
        [sys.executable, "-m", "kit", "train", "--train", str(path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"error: {path}, line 2, column label: 12 is out of range; each cell must be a label 0..9"
    ]


def test_load_round_trip_and_dtypes(tmp_path):
    pixels, labels = make_images(50, seed=3)
    path = write_train(tmp_path / "train.csv", n=50, seed=3)
    loaded = data.load_train(path)
    assert loaded.x.dtype == np.uint8 and loaded.x.shape == (50, 784)
    assert loaded.y.dtype == np.uint8
    np.testing.assert_array_equal(loaded.x, pixels)
    np.testing.assert_array_equal(loaded.y, labels)
    test = data.load_test(write_test(tmp_path / "test.csv", n=30))
    assert test.y is None and test.x.shape == (30, 784)


def test_cache_is_used_and_rebuilt_when_csv_changes(tmp_path, monkeypatch):
    path = write_train(tmp_path / "train.csv", n=40, seed=1)
    first = data.load_train(path)
    assert (tmp_path / ".cache" / "train.csv.npz").exists()

    def no_parse(*args, **kwargs):
        raise AssertionError("the CSV was parsed again although the cache is valid")

    monkeypatch.setattr(data, "parse_csv", no_parse)
    np.testing.assert_array_equal(data.load_train(path).x, first.x)
    monkeypatch.undo()

    write_train(path, n=60, seed=2)  # a changed CSV (size and mtime differ)
    os.utime(path, ns=(1, 1))
    second = data.load_train(path)
    assert second.x.shape == (60, 784)


def test_stratified_split_keeps_class_proportions_within_one_row():
    rng = np.random.default_rng(0)
    y = rng.choice(10, size=4203, p=np.linspace(0.05, 0.15, 10))
    train_idx, val_idx = split.stratified_split(y, 0.1, np.random.default_rng(1))
    assert len(np.intersect1d(train_idx, val_idx)) == 0
    assert len(train_idx) + len(val_idx) == len(y)
    counts, val_counts = np.bincount(y, minlength=10), np.bincount(y[val_idx], minlength=10)
    expected = counts * len(val_idx) / len(y)
    assert np.all(np.abs(val_counts - expected) <= 1), (val_counts, expected)


@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.5])
def test_stratified_split_allocates_as_scikit_learn_does(fraction):
    from sklearn.model_selection import StratifiedShuffleSplit

    y = np.random.default_rng(3).choice(10, size=997, p=np.linspace(0.02, 0.18, 10))
    val_counts = np.bincount(
        y[split.stratified_split(y, fraction, np.random.default_rng(4))[1]], minlength=10
    )
    n_val = round(len(y) * fraction)
    splitter = StratifiedShuffleSplit(n_splits=1, test_size=n_val, random_state=0)
    sk_val = next(splitter.split(np.zeros(len(y)), y))[1]
    sk_counts = np.bincount(y[sk_val], minlength=10)
    assert val_counts.sum() == sk_counts.sum() == n_val
    assert np.all(np.abs(val_counts - sk_counts) <= 1), (val_counts, sk_counts)  # they differ only in ties


def test_split_is_seeded():
    y = np.arange(500) % 10
    a = split.stratified_split(y, 0.2, np.random.default_rng(5))[1]
    b = split.stratified_split(y, 0.2, np.random.default_rng(5))[1]
    c = split.stratified_split(y, 0.2, np.random.default_rng(6))[1]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_to_float_scales_to_unit_interval():
    x = np.array([[0, 255, 51]], dtype=np.uint8)
    out = split.to_float(x)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[0.0, 1.0, 0.2]], rtol=1e-6)
