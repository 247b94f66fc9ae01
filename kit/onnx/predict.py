"""Predicting with an exported model through onnxruntime (`make submit ONNX=...`, the bench, the tests).

OnnxModel(path).predict_proba(pixels (n, 784) raw 0..255) -> (n, 10) float32
OnnxModel(path).predict(pixels) -> (n,) int64
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from kit.core.errors import KitError

BATCH_ROWS = 1024  # rows per session run: a CNN's activations for 28,000 rows at once would take gigabytes


def session_options(threads: int | None = None):
    """onnxruntime session options: no more intra-op threads than the cores this process may use
    (onnxruntime's own default counts the machine's cores, not a container's quota); warnings off."""
    import onnxruntime as ort

    from kit.core.blas import usable_cores

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or usable_cores()
    options.log_severity_level = 3
    return options


def runtime_version() -> str:
    """onnxruntime's version (the bench records it beside its timings)."""
    import onnxruntime

    return onnxruntime.__version__


class OnnxModel:
    """An exported model (model.onnx or model.int8.onnx) in an onnxruntime CPU session."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise KitError(
                f"{self.path}: no exported model there; run `make export` first (or give ONNX=path.onnx)"
            )
        try:
            self.session = ort.InferenceSession(
                str(self.path), session_options(threads), providers=["CPUExecutionProvider"]
            )
        except Exception as error:  # onnxruntime raises its own exception types for unreadable files
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise KitError(f"{self.path}: onnxruntime cannot load it ({first}); export it again") from None
        props = self.session.get_modelmeta().custom_metadata_map
        self.meta = {
            "run_id": props.get("run_id", "unknown"),
            "preset": props.get("preset", "unknown"),
            "val_accuracy": float(props["val_accuracy"]) if props.get("val_accuracy") else None,
        }
        self.tta = props.get("tta") == "1"

    def predict_proba(self, pixels: np.ndarray, batch_rows: int = BATCH_ROWS) -> np.ndarray:
        """Probabilities (n, 10) float32 of rows (n, 784) of raw pixel values 0..255 (any numeric dtype)."""
        pixels = np.asarray(pixels)
        out = np.empty((len(pixels), 10), dtype=np.float32)
        for start in range(0, len(pixels), batch_rows):
            part = np.ascontiguousarray(pixels[start : start + batch_rows], dtype=np.float32)
            out[start : start + len(part)] = self.session.run(["probabilities"], {"pixels": part})[0]
        return out

    def predict(self, pixels: np.ndarray, batch_rows: int = BATCH_ROWS) -> np.ndarray:
        """Labels (n,) int64, the graph's own ArgMax."""
        pixels = np.asarray(pixels)
        out = np.empty(len(pixels), dtype=np.int64)
        for start in range(0, len(pixels), batch_rows):
            part = np.ascontiguousarray(pixels[start : start + batch_rows], dtype=np.float32)
            out[start : start + len(part)] = self.session.run(["label"], {"pixels": part})[0]
        return out

    def accuracy(self, pixels: np.ndarray, labels: np.ndarray) -> float:
        return float(np.mean(self.predict(pixels) == labels))


def submit_onnx(
    onnx_path: str | os.PathLike,
    test_path: str | os.PathLike,
    out_path: str | os.PathLike,
    sample_path: str | os.PathLike | None = None,
    tta: bool | None = None,
) -> Path:
    """`make submit ONNX=`: every row of test.csv through onnxruntime, written as `make submit`
    writes (kit.run.predict.write_submission_files); submission.json says "engine": "onnxruntime"."""
    from kit.data.load import load_test
    from kit.run.predict import write_submission_files

    model = OnnxModel(onnx_path)
    if tta is not None and tta != model.tta:
        raise KitError(
            f"{onnx_path}: test-time augmentation is {'on' if model.tta else 'off'} inside the "
            f"exported graph; export again with TTA={int(tta)} instead of passing it to submit"
        )
    labels = model.predict(load_test(test_path).x)
    return write_submission_files(
        labels,
        {**model.meta, "engine": "onnxruntime"},
        model.path,
        test_path,
        out_path,
        sample_path,
        used_tta=model.tta,
    )
