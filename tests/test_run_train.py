"""kit/run/train.py and kit/run/trainer.py, through whole runs: a CNN ensemble with refit and
TTA from `kit train` to a checked submission, early stopping, the best weights on disk while a
run is still going, and a run that fails in its first epoch leaving no folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from kit.cli import main
from kit.config import make_config
from kit.data.submission import read_submission
from kit.run import train as train_module
from kit.run.model import Model
from kit.run.trainer import Trainer, fit
from synthetic import train_argv, write_competition


@pytest.fixture(scope="module")
def competition(tmp_path_factory) -> Path:
    return write_competition(tmp_path_factory.mktemp("data"), n_train=300, n_test=50)


def test_cnn_ensemble_with_refit_and_tta_from_train_to_submission(competition, tmp_path, capsys):
    models, out = tmp_path / "models", tmp_path / "submission.csv"
    assert (
        main(
            [
                *train_argv(competition / "train.csv", models),
                "--preset",
                "best",
                "--epochs",
                "1",
                "--channels",
                "4,8",
                "--hidden",
                "16",
                "--ensemble",
                "2",
                "--refit",
                "1",
                "--tta",
                "1",
                "--val-fraction",
                "0.2",
                "--eval-batch",
                "64",
            ]
        )
        == 0
    )
    run_dir = (models / "latest").resolve()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert [m["member"] for m in metrics["members"]] == [0, 1]
    assert all(m["refit_epochs"] == 1 for m in metrics["members"])  # each member retrained on all rows
    matrix = np.array(metrics["confusion_matrix"])
    assert metrics["n_val"] == 60 == matrix.sum()
    assert metrics["val_accuracy"] == pytest.approx(np.trace(matrix) / 60)  # the ensemble's, from its matrix
    model = Model.load(run_dir / "model.npz")
    assert len(model.members) == 2 and model.config.tta and model.config.arch == "cnn"
    a, b = (m.layers[1].params["w"] for m in model.members)  # the first conv of each member
    assert not np.array_equal(a, b)  # different seeds, different members
    assert (
        main(
            [
                "submit",
                "--model",
                str(models),
                "--test",
                str(competition / "test.csv"),
                "--out",
                str(out),
                "--sample",
                str(competition / "sample_submission.csv"),
            ]
        )
        == 0
    )
    ids, labels = read_submission(out)
    x = np.loadtxt(competition / "test.csv", delimiter=",", skiprows=1, dtype=np.float32) / 255
    assert np.array_equal(ids, np.arange(1, 51))
    assert np.array_equal(labels, model.predict_proba(x, tta=True).argmax(axis=1))


def scripted_validation(monkeypatch, accuracies):
    """Validation accuracy follows the script, epoch by epoch; each call records the weights."""
    seen = []

    def validate(trainer, x, y):
        acc = accuracies[len(seen)]
        seen.append(trainer.network.copy_state())
        return 1.0 - acc, acc

    monkeypatch.setattr(Trainer, "validate", validate)
    return seen


def test_patience_stops_early_and_keeps_the_best_epoch(monkeypatch):
    seen = scripted_validation(monkeypatch, [0.50, 0.70, 0.65, 0.69, 0.99, 0.99])
    rng = np.random.default_rng(0)
    x, y = rng.random((64, 784), dtype=np.float32), np.arange(64) % 10
    config = make_config("reference", hidden=(8,), epochs=6, patience=2, batch_size=16)
    result = fit(config, x, y, x[:20], y[:20], np.random.default_rng(1))
    assert [row["epoch"] for row in result.history] == [1, 2, 3, 4]  # epochs 3 and 4 were not better
    assert result.best_epoch == 2
    for key, value in result.network.state().items():
        np.testing.assert_array_equal(value, seen[1][key])  # epoch 2's weights, not epoch 4's


def test_best_weights_are_on_disk_before_the_run_ends(competition, tmp_path, monkeypatch):
    """A crash in epoch 4 (not Ctrl-C: nothing catches it) leaves the run folder with epoch 2's
    weights and history, usable by `make submit`, and no models/latest pointing at it."""
    seen = scripted_validation(monkeypatch, [0.5, 0.8, 0.7, 0.9])
    real_epoch = Trainer.train_epoch

    def crashing_epoch(self, epoch, x, y):
        if epoch == 4:
            raise MemoryError("simulated")
        return real_epoch(self, epoch, x, y)

    monkeypatch.setattr(Trainer, "train_epoch", crashing_epoch)
    config = make_config("reference", hidden=(8,), epochs=6, batch_size=32, val_fraction=0.2)
    with pytest.raises(MemoryError):
        train_module.train_run(config, competition / "train.csv", tmp_path / "models")
    (run_dir,) = [p for p in (tmp_path / "models").iterdir()]
    assert not (tmp_path / "models" / "latest").exists() and not (run_dir / "metrics.json").exists()
    model = Model.load(run_dir / "model.npz")
    assert model.meta["partial"] and model.meta["run_id"] == run_dir.name
    for key, value in model.members[0].state().items():
        np.testing.assert_array_equal(value, seen[1][key])
    assert (run_dir / "history.csv").read_text().count("\n") == 1 + 2  # header, epochs 1-2


def test_a_run_that_fails_in_its_first_epoch_leaves_no_folder(competition, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(Trainer, "train_epoch", lambda self, epoch, x, y: (float("nan"), 0.0))
    models = tmp_path / "models"
    assert (
        main(
            [
                *train_argv(competition / "train.csv", models),
                "--preset",
                "reference",
                "--epochs",
                "2",
                "--hidden",
                "8",
            ]
        )
        == 2
    )
    assert "diverged" in capsys.readouterr().err
    assert not models.exists() or not any(models.iterdir())
