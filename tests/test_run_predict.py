"""kit/run/predict.py through the CLI: `make submit` refuses what Kaggle would refuse and keeps
the last good file, `make validate` scores a run's own validation rows again, and a model that
is missing or broken is one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kit.cli import main
from synthetic import train_argv, write_competition

FAST = ["--hidden", "32,16", "--batch", "32", "--augment", "0"]


@pytest.fixture(scope="module")
def competition(tmp_path_factory) -> Path:
    return write_competition(tmp_path_factory.mktemp("data"), n_train=400, n_test=120)


def test_submit_refuses_mismatch_with_sample_and_keeps_old_file(competition, tmp_path, capsys):
    models = tmp_path / "models"
    assert (
        main(
            [
                *train_argv(competition / "train.csv", models),
                "--epochs",
                "1",
                *FAST,
            ]
        )
        == 0
    )
    out_file = tmp_path / "submission.csv"
    out_file.write_text("previous good submission\n")
    wrong_sample = tmp_path / "sample.csv"
    wrong_sample.write_text("ImageId,Label\n" + "\n".join(f"{i},0" for i in range(1, 51)) + "\n")
    capsys.readouterr()
    code = main(
        [
            "submit",
            "--model",
            str(models),
            "--test",
            str(competition / "test.csv"),
            "--sample",
            str(wrong_sample),
            "--out",
            str(out_file),
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "120 rows, but the test set has 50" in err[0]
    assert out_file.read_text() == "previous good submission\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".submission")] == []


def test_submit_without_model_says_make_train(tmp_path, competition, capsys):
    code = main(["submit", "--model", str(tmp_path / "nothing"), "--test", str(competition / "test.csv")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "make train" in err[0]


def test_validate_scores_the_runs_own_validation_rows_again(competition, tmp_path, capsys):
    """The split is drawn again from the run's seed: the score equals the one the run recorded."""
    models = tmp_path / "models"
    assert (
        main(
            [
                *train_argv(competition / "train.csv", models),
                "--preset",
                "reference",
                "--epochs",
                "1",
                "--lr",
                "0.05",
                *FAST[:4],
                "--val-fraction",
                "0.3",
                "--seed",
                "5",
            ]
        )
        == 0
    )
    recorded = json.loads((models / "latest" / "metrics.json").read_text())["val_accuracy"]
    capsys.readouterr()
    assert (
        main(["validate", "--model", str(models), "--train", str(competition / "train.csv"), "--tta", "0"])
        == 0
    )
    out = capsys.readouterr().out
    assert 0.3 < recorded < 0.99  # not a score every split would give
    assert f"validation accuracy {recorded:.4f} on 120 rows" in out
    assert "warning" not in out


def test_validate_refuses_a_run_without_validation_rows(competition, tmp_path, capsys):
    models = tmp_path / "models"
    assert (
        main(
            [
                *train_argv(competition / "train.csv", models),
                "--epochs",
                "1",
                *FAST,
                "--val-fraction",
                "0",
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["validate", "--model", str(models), "--train", str(competition / "train.csv")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "VAL_FRACTION=0" in err[0]


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 not really a zip", b"\x00" * 100])
def test_a_broken_model_file_is_one_line(tmp_path, competition, capsys, content):
    broken = tmp_path / "model.npz"
    broken.write_bytes(content)
    assert (
        main(
            [
                "submit",
                "--model",
                str(broken),
                "--test",
                str(competition / "test.csv"),
                "--out",
                str(tmp_path / "s.csv"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a model file this kit can read" in err[0]
