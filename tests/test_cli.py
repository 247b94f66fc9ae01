"""kit/cli.py end to end on generated Kaggle-format files: train, best epoch saved, submit,
strict format check, determinism, Ctrl-C safety, bad flags and divergence in one line, and that
the network really learns."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kit.cli import main
from kit.config import make_config
from kit.data.submission import check_submission_file, read_submission
from kit.run.model import Model
from kit.run.train import train_run
from synthetic import train_argv, write_competition

FAST = ["--hidden", "32,16", "--batch", "32", "--augment", "0"]


@pytest.fixture(scope="module")
def competition(tmp_path_factory) -> Path:
    return write_competition(tmp_path_factory.mktemp("data"), n_train=400, n_test=120)


def read_history(run_dir: Path) -> list[dict]:
    with open(run_dir / "history.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_train_then_submit_through_the_cli(competition, tmp_path, capsys):
    models = tmp_path / "models"
    code = main(
        [
            *train_argv(competition / "train.csv", models),
            "--preset",
            "reference",
            "--epochs",
            "6",
            "--lr",
            "0.05",
            *FAST[:4],
            "--val-fraction",
            "0.25",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "train class counts" in out and "val   class counts" in out
    assert "confusion matrix" in out

    run_dir = (models / "latest").resolve()
    for name in ("model.npz", "config.json", "history.csv", "metrics.json"):
        assert (run_dir / name).is_file(), name
    config = json.loads((run_dir / "config.json").read_text())
    assert config["preset"] == "reference" and config["epochs"] == 6 and config["hidden"] == [32, 16]

    # The saved model is the best epoch's: its validation score equals that epoch's row in history.csv.
    history = read_history(run_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert len(history) == 6
    scores = [(float(r["val_acc"]), -float(r["val_loss"])) for r in history]
    best = max(range(6), key=lambda i: scores[i]) + 1
    assert metrics["best_epoch"] == best
    assert metrics["val_accuracy"] == pytest.approx(float(history[best - 1]["val_acc"]), abs=1e-6)
    assert metrics["val_loss"] == pytest.approx(float(history[best - 1]["val_loss"]), abs=1e-4)
    matrix = np.array(metrics["confusion_matrix"])
    assert matrix.shape == (10, 10) and matrix.sum() == metrics["n_val"] == 100
    assert len(metrics["per_class_accuracy"]) == 10

    out_file = tmp_path / "subs" / "submission.csv"
    code = main(
        [
            "submit",
            "--model",
            str(models),
            "--test",
            str(competition / "test.csv"),
            "--sample",
            str(competition / "sample_submission.csv"),
            "--out",
            str(out_file),
        ]
    )
    assert code == 0
    assert (
        check_submission_file(out_file, n_rows=120, sample_path=competition / "sample_submission.csv") == 120
    )
    lines = out_file.read_text().splitlines()
    assert lines[0] == "ImageId,Label" and lines[1].startswith("1,") and lines[-1].startswith("120,")
    ids, labels = read_submission(out_file)
    assert labels.min() >= 0 and labels.max() <= 9
    assert (tmp_path / "subs" / f"submission-{run_dir.name}.csv").read_text() == out_file.read_text()
    assert json.loads((tmp_path / "subs" / "submission.json").read_text())["run_id"] == run_dir.name


@pytest.mark.slow
def test_cli_entry_point_runs_as_a_module(tmp_path):
    result = subprocess.run([sys.executable, "-m", "kit", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    for command in ("train", "submit", "demo", "data", "upload", "check", "bench"):
        assert command in result.stdout


def test_same_seed_same_weights_bit_for_bit(competition, tmp_path):
    config = make_config("default", epochs=2, hidden=(32,), seed=7, batch_size=32)
    a = Model.load(train_run(config, competition / "train.csv", tmp_path / "a") / "model.npz")
    b = Model.load(train_run(config, competition / "train.csv", tmp_path / "b") / "model.npz")
    other = make_config("default", epochs=2, hidden=(32,), seed=8, batch_size=32)
    c = Model.load(train_run(other, competition / "train.csv", tmp_path / "c") / "model.npz")
    state_a, state_b, state_c = (m.members[0].state() for m in (a, b, c))
    for key in state_a:
        np.testing.assert_array_equal(state_a[key], state_b[key])
    assert not all(np.array_equal(state_a[k], state_c[k]) for k in state_a)


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("", "file is empty"),
        ("Id,Label\n1,2\n", "must be exactly ImageId,Label"),
        ("ImageId,Label\n1,2\n3,4\n", "line 3, column ImageId: 3 where 2 belongs"),
        ("ImageId,Label\n1,12\n", "line 2, column Label: 12 is not a digit"),
        ("ImageId,Label\n1,x\n", "line 2, column Label: 'x' is not an integer"),
        ("ImageId,Label\n1,2,3\n", "line 2: 3 columns"),
    ],
)
def test_check_refuses_bad_submissions(tmp_path, capsys, text, fragment):
    path = tmp_path / "submission.csv"
    path.write_text(text)
    code = main(["check", str(path), "--sample", str(tmp_path / "absent.csv")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and fragment in err[0], err


def test_interrupt_saves_the_best_epoch_so_far(competition, tmp_path, monkeypatch):
    """Ctrl-C during epoch 3: the run is saved with the best of epochs 1-2, and nothing half-written."""
    from kit.nn.network import Network

    real_gradients = Network.gradients
    calls = {"n": 0}
    n_batches_per_epoch = int(np.ceil(300 / 32))

    def interrupting_gradients(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2 * n_batches_per_epoch + 3:
            raise KeyboardInterrupt
        return real_gradients(self, *args, **kwargs)

    monkeypatch.setattr(Network, "gradients", interrupting_gradients)
    config = make_config(
        "reference", epochs=10, hidden=(32,), batch_size=32, val_fraction=0.25, blas_threads=1
    )
    with pytest.raises(KeyboardInterrupt):
        train_run(config, competition / "train.csv", tmp_path / "models")
    run_dir = (tmp_path / "models" / "latest").resolve()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["interrupted"] is True
    assert len(read_history(run_dir)) == 2
    assert metrics["best_epoch"] in (1, 2)
    assert not [p for p in run_dir.iterdir() if p.name.startswith(".")]
    Model.load(run_dir / "model.npz")


def test_bad_flag_values_give_one_line(tmp_path, competition, capsys):
    code = main(["train", "--train", str(competition / "train.csv"), "--optimizer", "adamm"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "adamm" in err[0] and "adamw" in err[0]


def test_divergence_is_reported(tmp_path, competition, capsys):
    code = main(
        [
            *train_argv(competition / "train.csv", tmp_path / "m"),
            "--preset",
            "reference",
            "--lr",
            "1e6",
            "--epochs",
            "3",
            *FAST[:4],
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "diverged" in err[0] and "LR=" in err[0]
