"""A train.csv with a single label is refused before any training, with one line."""

from __future__ import annotations

import numpy as np
import pytest

from kit.cli import main
from kit.core.errors import KitError
from kit.data.load import load_train
from kit.data.split import require_two_classes, split_rows
from synthetic import train_argv

HEADER = "label," + ",".join(f"pixel{i}" for i in range(784))


def write_rows(path, labels):
    rng = np.random.default_rng(0)
    rows = [",".join([str(label)] + [str(v) for v in rng.integers(0, 256, 784)]) for label in labels]
    path.write_text(HEADER + "\n" + "\n".join(rows) + "\n")
    return path


def test_one_label_is_refused_with_one_line_before_training(tmp_path, capsys):
    path = write_rows(tmp_path / "train.csv", [7] * 40)
    code = main(
        [
            "train",
            "--train",
            str(path),
            "--epochs",
            "1",
            "--hidden",
            "8",
            "--model-dir",
            str(tmp_path / "models"),
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1, err
    assert err[0].startswith(f"error: {path}") and "every row has label 7" in err[0]
    assert "at least two classes" in err[0]
    assert not (tmp_path / "models").exists()


@pytest.mark.parametrize("val_fraction", [0.0, 0.1])
def test_one_label_is_refused_with_or_without_validation(tmp_path, val_fraction):
    path = write_rows(tmp_path / "train.csv", [0] * 30)
    code = main(
        [
            *train_argv(path, tmp_path / "models"),
            "--epochs",
            "1",
            "--val-fraction",
            str(val_fraction),
            "--report",
            "0",
        ]
    )
    assert code == 2 and not (tmp_path / "models").exists()
    with pytest.raises(KitError, match="at least two classes"):
        require_two_classes(load_train(path).y, path)


def test_two_labels_are_enough(tmp_path):
    path = write_rows(tmp_path / "train.csv", [0, 1] * 15)
    dataset = load_train(path)
    require_two_classes(dataset.y, path)
    x_train, y_train, x_val, y_val, _ = split_rows(dataset.x, dataset.y, 0.2, seed=0)
    assert set(y_train.tolist()) == {0, 1} and set(y_val.tolist()) == {0, 1}
