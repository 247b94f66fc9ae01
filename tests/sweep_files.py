"""The sweep tests' shared pieces: a tiny random space (4 trials of 2 epochs), writing a space
file, and the `kit sweep` command line into a test's own folders."""

from __future__ import annotations

from pathlib import Path

TINY_SPACE = """
method = "random"
trials = 4

[fixed]
epochs = 2
hidden = [16]
batch_size = 32

[space]
lr = { log_uniform = [0.005, 0.05] }
dropout = [0.0, 0.2]
"""


def write_space(folder: Path, text: str = TINY_SPACE, name: str = "tiny.toml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


def sweep_args(space: Path, train_csv: Path, tmp_path: Path, *extra: str) -> list[str]:
    return [
        "sweep",
        "--space",
        str(space),
        "--train",
        str(train_csv),
        "--model-dir",
        str(tmp_path / "models"),
        "--sweep-dir",
        str(tmp_path / "sweeps"),
        "--preset",
        "reference",
        *extra,
    ]
