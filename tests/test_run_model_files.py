"""Saved models keep working across versions of the kit: a run folder written by the kit at
commit e854907 (before kit/ was split into subpackages; a two-member CNN with batch norm,
model format 2) still loads, predicts what it predicted then, and submits."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from kit.cli import main
from kit.data.load import load_test
from kit.data.split import to_float
from kit.data.submission import read_submission
from kit.run.model import Model

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "model-e854907"
SAMPLE_ZIP = Path(__file__).resolve().parent.parent / "data" / "sample" / "digit-recognizer-sample.zip"


def sample_test_rows(folder: Path, n: int) -> Path:
    """The first n rows of the bundled sample's test.csv, as a test.csv of their own."""
    with zipfile.ZipFile(SAMPLE_ZIP) as archive:
        lines = archive.read("test.csv").decode().splitlines()
    path = folder / "test.csv"
    path.write_text("\n".join(lines[: n + 1]) + "\n")
    return path


def test_a_model_from_before_the_subpackages_predicts_as_it_did(tmp_path):
    expected = json.loads((FIXTURE / "expected.json").read_text())
    model = Model.load(FIXTURE / "model.npz")
    assert len(model.members) == 2 and model.config.arch == "cnn" and model.config.batch_norm
    x = to_float(load_test(sample_test_rows(tmp_path, expected["rows"])).x)
    probabilities = model.predict_proba(x)
    assert probabilities.argmax(axis=1).tolist() == expected["labels"]
    np.testing.assert_allclose(
        probabilities[: len(expected["probabilities"])], expected["probabilities"], atol=1e-4
    )


def test_a_model_from_before_the_subpackages_still_submits(tmp_path):
    expected = json.loads((FIXTURE / "expected.json").read_text())
    test = sample_test_rows(tmp_path, expected["rows"])
    out = tmp_path / "submission.csv"
    assert (
        main(
            [
                "submit",
                "--model",
                str(FIXTURE),
                "--test",
                str(test),
                "--out",
                str(out),
                "--sample",
                str(tmp_path / "none.csv"),
            ]
        )
        == 0
    )
    ids, labels = read_submission(out)
    assert ids.tolist() == list(range(1, expected["rows"] + 1)) and labels.tolist() == expected["labels"]
    assert json.loads(out.with_suffix(".json").read_text())["run_id"] == "20261201-084413-best-s3"
