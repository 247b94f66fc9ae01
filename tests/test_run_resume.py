"""kit/run/resume.py through whole runs: a run stopped at any point (a fit, a refit, replicas
on two threads) and resumed ends with the same weights as one that never stopped; what cannot
be resumed is one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from kit.cli import main
from kit.config import make_config
from kit.run import train as train_module
from kit.run.trainer import Trainer
from synthetic import train_argv, write_competition


@pytest.fixture(scope="module")
def competition(tmp_path_factory) -> Path:
    return write_competition(tmp_path_factory.mktemp("data"), n_train=300, n_test=50)


def crash_at(monkeypatch, call: int, error=MemoryError):
    """Trainer.train_epoch raises on its call-th call (counted over every fit of the run)."""
    real_epoch = Trainer.train_epoch
    calls = {"n": 0}

    def epoch(self, *args):
        calls["n"] += 1
        if calls["n"] == call:
            raise error("simulated")
        return real_epoch(self, *args)

    monkeypatch.setattr(Trainer, "train_epoch", epoch)


def run_arrays(run_dir: Path) -> dict[str, np.ndarray]:
    with np.load(run_dir / "model.npz") as stored:
        return {k: stored[k] for k in stored.files if k.startswith("m") and "/" in k}  # the members' arrays


@pytest.mark.parametrize(
    "overrides, crash, where",
    [
        # adam moments, plateau schedule, dropout and augmentation draws: stopped before epoch 4 of 5
        (dict(optimizer="adam", schedule="plateau", dropout=0.2, augment=True, epochs=5), 4, (0, "fit", 3)),
        # two members, each refit on all rows for its best epoch count (3 here): stopped in member 2's refit
        (
            dict(ensemble=2, refit=True, epochs=3, optimizer="momentum", schedule="cosine", lr=0.05),
            11,
            (1, "refit", 1),
        ),
        # a CNN trained by two replicas (two BLAS threads), with batch norm, dropout and augmentation
        (
            dict(
                arch="cnn",
                conv_channels=(3, 4),
                batch_norm=True,
                dropout=0.2,
                augment=True,
                optimizer="adamw",
                epochs=3,
                blas_threads=2,
            ),
            3,
            (0, "fit", 2),
        ),
    ],
)
def test_a_resumed_run_ends_exactly_where_an_unstopped_one_does(
    competition, tmp_path, monkeypatch, overrides, crash, where
):
    config = make_config(
        "reference", **{**dict(hidden=(16,), batch_size=32, val_fraction=0.2, blas_threads=1), **overrides}
    )
    whole = train_module.train_run(config, competition / "train.csv", tmp_path / "whole")
    crash_at(monkeypatch, crash)
    with pytest.raises(MemoryError):
        train_module.train_run(config, competition / "train.csv", tmp_path / "stopped")
    monkeypatch.undo()
    (stopped,) = (tmp_path / "stopped").iterdir()
    assert not (stopped / "metrics.json").exists()
    from kit.run.resume import load_resume

    meta, _ = load_resume(stopped)
    assert (meta["member"], meta["phase"], meta["fit"]["epoch"]) == where
    assert (
        main(
            [
                *train_argv(competition / "train.csv", tmp_path / "stopped"),
                "--resume",
                stopped.name,
            ]
        )
        == 0
    )
    a, b = run_arrays(whole), run_arrays(stopped)
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert (whole / "history.csv").read_text().count("\n") == (stopped / "history.csv").read_text().count(
        "\n"
    )
    metrics = json.loads((stopped / "metrics.json").read_text())
    assert metrics["val_accuracy"] == json.loads((whole / "metrics.json").read_text())["val_accuracy"]
    assert not (stopped / "resume.npz").exists()  # finished: nothing left to resume
    assert (tmp_path / "stopped" / "latest").resolve() == stopped.resolve()


def test_resume_refuses_a_finished_run_and_a_non_run(competition, tmp_path, capsys):
    models = tmp_path / "models"
    assert (
        main(
            [
                *train_argv(competition / "train.csv", models),
                "--preset",
                "reference",
                "--epochs",
                "1",
                "--hidden",
                "8",
            ]
        )
        == 0
    )
    finished = (models / "latest").resolve()
    capsys.readouterr()
    assert main(["train", "--train", str(competition / "train.csv"), "--resume", str(finished)]) == 2
    assert "nothing to resume" in capsys.readouterr().err
    assert main(["train", "--train", str(competition / "train.csv"), "--resume", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a run folder" in err[0]


def test_resume_refuses_settings_it_would_ignore(competition, tmp_path, capsys, monkeypatch):
    """A resumed run keeps its own config: EPOCHS= beside RESUME= is refused in one line, not
    silently dropped; without it the run resumes and finishes."""
    models = tmp_path / "models"
    crash_at(monkeypatch, 2)
    with pytest.raises(MemoryError):
        train_module.train_run(
            make_config("reference", hidden=(8,), epochs=3), competition / "train.csv", models
        )
    monkeypatch.undo()
    stopped = next(p for p in models.iterdir() if p.is_dir() and not p.is_symlink())
    common = ["train", "--train", str(competition / "train.csv"), "--model-dir", str(models), "--report", "0"]
    assert main([*common, "--resume", stopped.name, "--epochs", "5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "error: EPOCHS=5: a resumed run keeps its own settings; drop it, or train a new run without RESUME="
    ]
    assert main([*common, "--resume", stopped.name]) == 0
    with open(stopped / "history.csv") as handle:
        assert [row.split(",")[1] for row in handle.read().splitlines()[1:]] == ["1", "2", "3"]
    assert (
        not (stopped / "resume.npz").exists()
        and json.loads((stopped / "metrics.json").read_text())["n_val"] == 30
    )
