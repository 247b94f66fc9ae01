"""One small real model for the serve tests (and PNGs of its digits drawn big): the default
preset trained for a few epochs on the bundled sample (5,000 real rows; ~95% validation
accuracy), once per test session."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kit.config import make_config
from kit.data.load import load_train
from kit.data.preprocess import resample_matrix
from kit.data.split import run_split
from kit.kaggle.archive import install_archive
from kit.run.model import Model

SAMPLE_ZIP = Path(__file__).resolve().parent.parent / "data" / "sample" / "digit-recognizer-sample.zip"
EPOCHS = 3


@dataclass
class SampleModel:
    model: Model
    run_dir: Path
    x_val: np.ndarray  # (n, 784) uint8: the run's own validation rows, never trained on
    y_val: np.ndarray  # (n,) int64


@pytest.fixture(scope="session")
def sample_model(tmp_path_factory) -> SampleModel:
    from kit.run.train import train_run

    root = tmp_path_factory.mktemp("sample")
    install_archive(SAMPLE_ZIP, root / "data")
    config = make_config("default", epochs=EPOCHS, seed=0)
    run_dir = train_run(config, root / "data" / "train.csv", root / "models")
    dataset = load_train(root / "data" / "train.csv")
    _, val_idx, _ = run_split(dataset.y, config.val_fraction, config.seed)
    x_val, y_val = dataset.x[val_idx], dataset.y[val_idx].astype(np.int64)
    return SampleModel(Model.load(run_dir / "model.npz"), run_dir, x_val, y_val)


def drawn_png(row: np.ndarray, scale: int = 7, top: int = 20, left: int = 60) -> bytes:
    """A 28x28 row drawn big and off-centre as dark ink on a white 280 x 280 canvas, as PNG."""
    side = 28 * scale
    big = resample_matrix(28, side) @ row.reshape(28, 28).astype(np.float32) @ resample_matrix(28, side).T
    canvas = np.zeros((280, 280), dtype=np.float32)
    canvas[top : top + side, left : left + side] = big
    image = 255 - np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
    return png(image)


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()
