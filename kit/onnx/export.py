"""`make export`: a run's model written as ONNX (kit.onnx.graph builds it), and its int8 copy.

    make export                 models/<run-id>/model.onnx
    make export QUANTIZE=1      and model.int8.onnx: onnxruntime.quantization, static, QDQ format,
                                int8 weights per output channel, uint8 activations, calibrated on
                                training rows of the run (its own split, redrawn from its seed)

Both files are written atomically, and nothing is written when the export or the quantization
fails.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from kit.core.atomic import atomic_path
from kit.core.console import log
from kit.core.errors import KitError
from kit.onnx.graph import INPUT, IR_VERSION, OPSET, build_onnx
from kit.run.folders import resolve_model
from kit.run.model import Model

CALIBRATION_ROWS = 3000  # training rows the int8 model's activation ranges are measured on
# The ops that hold weights, and those between them that run on uint8 as they are, so the
# activations stay quantized from one Conv to the next (with Conv and Gemm alone the CNN's
# MaxPool/Relu ran in float between extra Dequantize/Quantize steps, and int8 was slower than
# float). Softmax, ArgMax, the activations other than Relu and the ensemble's mean stay float.
QUANTIZED_OPS = ["Conv", "Gemm", "Relu", "MaxPool", "Flatten", "Reshape"]


def default_onnx_path(model_file: Path) -> Path:
    """models/<run-id>/model.onnx for models/<run-id>/model.npz (any other name.npz -> name.onnx)."""
    if model_file.name == "model.npz":
        return model_file.resolve().parent / "model.onnx"
    return model_file.with_suffix(".onnx")


def int8_path(onnx_path: Path) -> Path:
    return onnx_path.with_name(onnx_path.name[: -len(".onnx")] + ".int8.onnx")


def recorded_train_path(model_file: Path) -> str | None:
    """The train.csv the run's metrics.json names, or None."""
    try:
        return json.loads((model_file.resolve().parent / "metrics.json").read_text())["train_path"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def run_rows(model_file: Path, model: Model, train_path: str | os.PathLike | None = None):
    """The run's own split, redrawn from its seed: (training rows, validation rows, validation
    labels), rows as raw 0..255 float32 (n, 784) (the exported graph's input). The training
    file is the one metrics.json names unless `train_path` is given."""
    from kit.data.load import load_train
    from kit.data.split import run_split

    if train_path is None:
        train_path = recorded_train_path(model_file)
        if train_path is None:
            raise KitError(
                f"{model_file.resolve().parent / 'metrics.json'}: does not name the run's train.csv; "
                "give TRAIN=path/to/train.csv"
            )
    if not Path(train_path).is_file():
        raise KitError(f"{train_path}: the run's training file is not there; give TRAIN=path/to/train.csv")
    config = model.config
    dataset = load_train(train_path)
    train_idx, val_idx, _ = run_split(dataset.y, config.val_fraction, config.seed)
    # the graph's input is the raw 0..255 values as float32: only the two parts are converted
    x_train, x_val = (dataset.x[idx].astype(np.float32) for idx in (train_idx, val_idx))
    return x_train, x_val, dataset.y[val_idx].astype(np.int64)


def quantize_onnx(float_path: Path, out_path: Path, calibration_rows: np.ndarray, batch: int = 500) -> None:
    """Static int8 quantization of an exported model (QDQ format) with onnxruntime.quantization:
    weights int8 per output channel, activations uint8 with ranges measured (min/max) on
    calibration_rows (n, 784) raw 0..255 float32. Only QUANTIZED_OPS are quantized."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_static,
    )

    class Rows(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(range(0, len(calibration_rows), batch))

        def get_next(self):
            start = next(self.batches, None)
            return None if start is None else {INPUT: calibration_rows[start : start + batch]}

    # onnxruntime's recommended pre-processing: shape inference, and graph optimisations such as
    # folding a Conv's batch norm into its weights (one quantized tensor instead of two steps).
    # Its symbolic shape inference needs sympy; onnx's own inference suffices for this graph.
    prepared = out_path.with_name(out_path.name + ".prepared.onnx")
    try:
        quant_pre_process(str(float_path), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(out_path),
            Rows(),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=QUANTIZED_OPS,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )
    except Exception as error:  # onnxruntime's own exception types; the export then writes nothing
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise KitError(
            f"int8 quantization failed ({type(error).__name__}: {first}); nothing was written"
        ) from None
    finally:
        prepared.unlink(missing_ok=True)


def export_run(
    model_path: str | os.PathLike = "models",
    out_path: str | os.PathLike | None = None,
    quantize: bool = False,
    train_path: str | os.PathLike | None = None,
    tta: bool | None = None,
) -> dict:
    """`kit export`: write the run's model.onnx (and with quantize, model.int8.onnx), each
    atomically; nothing is written when the export or the quantization fails. Returns
    {"onnx", "int8"?: paths, "bytes"/"int8_bytes", "val_accuracy"/"int8_val_accuracy"?}."""
    import onnx

    from kit.onnx.predict import OnnxModel

    model_file = resolve_model(model_path, demo_fallback=True)
    model = Model.load(model_file)
    out = Path(out_path) if out_path else default_onnx_path(model_file)
    if out.suffix != ".onnx":
        raise KitError(f"{out}: an exported model's file name must end in .onnx")
    proto = build_onnx(model, tta)  # raises before anything is written
    rows = run_rows(model_file, model, train_path) if quantize else None
    result: dict = {"onnx": out}
    with atomic_path(out) as tmp_float:
        onnx.save(proto, tmp_float)
        if quantize:
            x_train, x_val, y_val = rows
            pick = np.random.default_rng(model.config.seed).permutation(len(x_train))[:CALIBRATION_ROWS]
            result["int8"] = out_int8 = int8_path(out)
            with atomic_path(out_int8) as tmp_int8:
                quantize_onnx(tmp_float, tmp_int8, x_train[np.sort(pick)])
                result["int8_bytes"] = tmp_int8.stat().st_size
                if len(y_val):
                    result["val_accuracy"] = OnnxModel(tmp_float).accuracy(x_val, y_val)
                    result["int8_val_accuracy"] = OnnxModel(tmp_int8).accuracy(x_val, y_val)
                result["calibration_rows"] = int(len(pick))
                result["n_val"] = int(len(y_val))
        result["bytes"] = tmp_float.stat().st_size
    report(result, model)
    return result


def report(result: dict, model: Model) -> None:
    log(
        f"wrote {result['onnx']} ({result['bytes'] / 1024:.1f} KiB; opset {OPSET}, IR version {IR_VERSION}; "
        f"run {model.meta.get('run_id', 'unknown')}, {len(model.members)} member(s))"
    )
    if "int8" not in result:
        return
    log(
        f"wrote {result['int8']} ({result['int8_bytes'] / 1024:.1f} KiB, "
        f"{100 * result['int8_bytes'] / result['bytes']:.1f}% of the float file; "
        f"static QDQ int8, calibrated on {result['calibration_rows']} training rows)"
    )
    if "val_accuracy" not in result:
        log("no validation rows (trained with VAL_FRACTION=0): accuracies not measured")
        return
    change = 100 * (result["int8_val_accuracy"] - result["val_accuracy"])
    log(
        f"validation accuracy on {result['n_val']} rows: float {result['val_accuracy']:.4f}, "
        f"int8 {result['int8_val_accuracy']:.4f} (int8 minus float: {change:+.2f} points)"
    )
    if model.config.refit:
        log("note: this model was refit on all rows, validation rows included; these scores are optimistic")
