"""Small generated data sets in Kaggle's exact CSV layout, learnable and quick to train on.

Each class is a fixed random prototype image (bright blobs on a dark background); rows are
their prototype with noise and a random one-pixel jitter, so a small network learns them well.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

N_PIXELS = 784


def make_images(n: int, seed: int = 0, n_classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """(pixels (n, 784) uint8, labels (n,) uint8) with every class present."""
    proto_rng = np.random.default_rng(12345)  # the same prototypes for every call: train and test match
    prototypes = (proto_rng.random((n_classes, 28, 28)) > 0.8) * 220.0
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % n_classes
    rng.shuffle(labels)
    images = prototypes[labels]
    shifts = rng.integers(-1, 2, n)  # each row moved up, down or not at all by one pixel
    for shift in (-1, 1):
        images[shifts == shift] = np.roll(images[shifts == shift], shift, axis=1)
    images = images + rng.normal(0, 25, images.shape)
    pixels = np.clip(images, 0, 255).round().astype(np.uint8).reshape(n, N_PIXELS)
    return pixels, labels.astype(np.uint8)


def write_train(path: Path, n: int = 300, seed: int = 0) -> Path:
    pixels, labels = make_images(n, seed)
    header = "label," + ",".join(f"pixel{i}" for i in range(N_PIXELS))
    body = np.column_stack([labels, pixels]).astype(np.int64)
    np.savetxt(path, body, fmt="%d", delimiter=",", header=header, comments="")
    return path


def write_test(path: Path, n: int = 100, seed: int = 1) -> Path:
    pixels, _ = make_images(n, seed)
    header = ",".join(f"pixel{i}" for i in range(N_PIXELS))
    np.savetxt(path, pixels.astype(np.int64), fmt="%d", delimiter=",", header=header, comments="")
    return path


def write_sample_submission(path: Path, n: int = 100) -> Path:
    rows = "\n".join(f"{i},0" for i in range(1, n + 1))
    path.write_text("ImageId,Label\n" + rows + "\n")
    return path


def write_competition(folder: Path, n_train: int = 300, n_test: int = 100) -> Path:
    """train.csv, test.csv and sample_submission.csv in `folder`, as Kaggle ships them."""
    folder.mkdir(parents=True, exist_ok=True)
    write_train(folder / "train.csv", n_train)
    write_test(folder / "test.csv", n_test)
    write_sample_submission(folder / "sample_submission.csv", n_test)
    return folder


def train_argv(train_csv, model_dir, *extra: str) -> list[str]:
    """`kit train` on this train.csv into this folder of runs, then `extra` flags."""
    return ["train", "--train", str(train_csv), "--model-dir", str(model_dir), *extra]
