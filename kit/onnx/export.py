"""`make export`: a trained run as one ONNX graph (onnx's helper API), and its int8 version.

The graph, opset 17, IR version 8 (read by onnxruntime 1.13 and later, Mobile and Web included):

    pixels  float32 (N, 784)  raw 0..255, in test.csv's column order (N is dynamic)
      -> Mul 1/255                          the kit's data.to_float, inside the graph
      [-> TTA: the image and its four one-pixel shifts, stacked on the batch axis]
      -> every member's layers -> Softmax   members (and TTA views) averaged
    probabilities  float32 (N, 10)
    label          int64 (N,)               ArgMax of probabilities

Layers map from their public `params`/`buffers` (never from private attributes):
    Dense        Gemm(x, w (n_in, n_out), b)
    ReLU, LeakyReLU (slope), Tanh, Sigmoid     Relu, LeakyRelu(alpha), Tanh, Sigmoid
    BatchNorm    BatchNormalization (inference form: running_mean / running_var); it normalises
                 per feature on (N, C) input and per channel on (N, C, H, W), as the kit does
    Conv2D       Conv(w (c_out, c_in, k, k) = ONNX's OIHW, b), stride 1, `padding` on every side
    MaxPool2D    MaxPool(size x size, stride size): remainders dropped, as the kit does
    Flatten, Reshape          Flatten(axis 1), Reshape(0, *shape)
    Dropout      nothing (an identity at inference)
Any other layer stops the export with one line naming it, before anything is written.

QUANTIZE=1 also writes model.int8.onnx with onnxruntime.quantization: static, QDQ format,
int8 weights per output channel, uint8 activations, calibrated on training rows of the run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from kit.core.atomic import atomic_path
from kit.core.console import log
from kit.core.errors import KitError
from kit.core.mnist import IMAGE_SIDE, N_CLASSES, N_PIXELS
from kit.core.version import VERSION
from kit.nn import image_layers
from kit.nn import layers as L
from kit.run.folders import resolve_model
from kit.run.model import Model

OPSET = 17
IR_VERSION = 8
INPUT = "pixels"
PROBABILITIES = "probabilities"
LABEL = "label"
INPUT_MEANING = (
    "pixels: float32 [N, 784], raw 0..255 values of test.csv's pixel0..pixel783 columns "
    "(scaled by 1/255 inside the graph); outputs probabilities float32 [N, 10], label int64 [N]"
)
CALIBRATION_ROWS = 3000  # training rows the int8 model's activation ranges are measured on
# The ops that hold weights, and those between them that run on uint8 as they are, so the
# activations stay quantized from one Conv to the next (with Conv and Gemm alone the CNN's
# MaxPool/Relu ran in float between extra Dequantize/Quantize steps, and int8 was 1.8x slower
# than float). Softmax, ArgMax, the activations other than Relu and the ensemble's mean stay float.
QUANTIZED_OPS = ["Conv", "Gemm", "Relu", "MaxPool", "Flatten", "Reshape"]


class _Graph:
    """Nodes and initializers under construction; every tensor gets a unique readable name."""

    def __init__(self) -> None:
        self.nodes: list = []
        self.initializers: list = []
        self._names: set[str] = set()

    def name(self, hint: str) -> str:
        name, n = hint, 1
        while name in self._names:
            n += 1
            name = f"{hint}_{n}"
        self._names.add(name)
        return name

    def const(self, hint: str, value: np.ndarray) -> str:
        from onnx import numpy_helper

        name = self.name(hint)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def node(self, op: str, inputs: list[str], hint: str, output: str | None = None, **attrs) -> str:
        from onnx import helper

        out = output or self.name(hint)
        self.nodes.append(helper.make_node(op, inputs, [out], name=self.name(f"{hint}/{op}"), **attrs))
        return out


def _f32(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.float32)


def _unknown(where: str, layer, why: str = "") -> KitError:
    known = "Dense, ReLU, LeakyReLU, Tanh, Sigmoid, Dropout, BatchNorm, Conv2D, MaxPool2D, Flatten, Reshape"
    return KitError(
        f"cannot export {where} ({type(layer).__name__}){': ' + why if why else ''}; "
        f"the ONNX exporter knows {known}"
    )


def _setting(layer, name: str, where: str):
    """A layer's public constructor setting (Conv2D.padding, MaxPool2D.size, BatchNorm.eps, ...),
    with one line if a rewrite of the layer renamed it."""
    if not hasattr(layer, name):
        raise _unknown(where, layer, f"it has no `{name}` setting any more; update kit/export.py")
    return getattr(layer, name)


def _layer_nodes(
    graph: _Graph, layer: L.Layer, x: str, shape: tuple[int, ...], where: str
) -> tuple[str, tuple[int, ...]]:
    """Append one layer's nodes after tensor x, whose per-row shape is `shape`;
    return the output tensor and its per-row shape."""
    kind = type(layer)  # exact types: a subclass may compute something else
    hint = where.replace(" ", "")
    if kind is L.Dense:
        w, b = layer.params["w"], layer.params["b"]
        if shape != (w.shape[0],):
            raise _unknown(where, layer, f"takes {w.shape[0]} features but gets shape {shape}")
        out = graph.node(
            "Gemm", [x, graph.const(f"{hint}.w", _f32(w)), graph.const(f"{hint}.b", _f32(b))], hint
        )
        return out, (w.shape[1],)
    if kind in (L.ReLU, L.LeakyReLU):
        slope = float(_setting(layer, "slope", where))
        if slope == 0.0:
            return graph.node("Relu", [x], hint), shape
        return graph.node("LeakyRelu", [x], hint, alpha=slope), shape
    if kind is L.Tanh:
        return graph.node("Tanh", [x], hint), shape
    if kind is L.Sigmoid:
        return graph.node("Sigmoid", [x], hint), shape
    if kind is L.Dropout:
        return x, shape
    if kind is L.BatchNorm:
        # (N, C): per feature; (N, C, H, W): per channel; both are ONNX's channel axis 1
        gamma, beta = layer.params["gamma"], layer.params["beta"]
        mean, var = layer.buffers["running_mean"], layer.buffers["running_var"]
        if len(shape) not in (1, 3) or shape[0] != len(gamma):
            raise _unknown(where, layer, f"has {len(gamma)} channels but gets shape {shape}")
        inputs = [x] + [
            graph.const(f"{hint}.{n}", _f32(v))
            for n, v in (("gamma", gamma), ("beta", beta), ("running_mean", mean), ("running_var", var))
        ]
        return graph.node(
            "BatchNormalization", inputs, hint, epsilon=float(_setting(layer, "eps", where))
        ), shape
    if kind is image_layers.Conv2D:
        w, b = layer.params["w"], layer.params["b"]
        c_out, c_in, k, k2 = w.shape
        p = int(_setting(layer, "padding", where))
        if len(shape) != 3 or shape[0] != c_in or k != k2:
            raise _unknown(where, layer, f"kernel {w.shape} does not fit input shape {shape}")
        out = graph.node(
            "Conv",
            [x, graph.const(f"{hint}.w", _f32(w)), graph.const(f"{hint}.b", _f32(b))],
            hint,
            kernel_shape=[k, k],
            pads=[p, p, p, p],
            strides=[1, 1],
        )
        side_h, side_w = shape[1] + 2 * p - k + 1, shape[2] + 2 * p - k + 1
        s = int(_setting(layer, "pool", where))
        if s > 1:  # the kit fuses the pooling into the convolution; ONNX has its own node
            out = graph.node("MaxPool", [out], f"{hint}.pool", kernel_shape=[s, s], strides=[s, s])
        return out, (c_out, side_h // s, side_w // s)
    if kind is image_layers.MaxPool2D:
        s = int(_setting(layer, "size", where))
        if len(shape) != 3:
            raise _unknown(where, layer, f"needs (channels, h, w) input, gets shape {shape}")
        out = graph.node("MaxPool", [x], hint, kernel_shape=[s, s], strides=[s, s])
        return out, (shape[0], shape[1] // s, shape[2] // s)
    if kind is image_layers.Flatten:
        return graph.node("Flatten", [x], hint, axis=1), (int(np.prod(shape)),)
    if kind is image_layers.Reshape:
        target = tuple(int(d) for d in _setting(layer, "shape", where))
        if int(np.prod(target)) != int(np.prod(shape)):
            raise _unknown(where, layer, f"cannot reshape {shape} to {target}")
        dims = graph.const(f"{hint}.shape", np.array((0,) + target, dtype=np.int64))  # 0: keep the batch size
        return graph.node("Reshape", [x, dims], hint), target
    raise _unknown(where, layer)


def _tta_views(graph: _Graph, x: str) -> tuple[str, int]:
    """x (N, 784) -> (views * N, 784): the image, then shifted one pixel right, left, down, up
    (augment.TTA_SHIFTS, zero fill), stacked view after view along the batch axis."""
    from kit.data.augment import TTA_SHIFTS

    side = IMAGE_SIDE
    images = graph.node(
        "Reshape", [x, graph.const("tta.image_shape", np.array([0, side, side], np.int64))], "tta"
    )
    padded = graph.node(
        "Pad", [images, graph.const("tta.pads", np.array([0, 1, 1, 0, 1, 1], np.int64))], "tta"
    )
    axes = graph.const("tta.axes", np.array([1, 2], np.int64))
    row_shape = graph.const("tta.row_shape", np.array([0, N_PIXELS], np.int64))
    views = [x]
    for dy, dx in TTA_SHIFTS:
        # shifted down by dy: output row r reads image row r - dy, which is padded row r - dy + 1
        starts = graph.const(f"tta.starts_{dy}_{dx}", np.array([1 - dy, 1 - dx], np.int64))
        ends = graph.const(f"tta.ends_{dy}_{dx}", np.array([1 - dy + side, 1 - dx + side], np.int64))
        shifted = graph.node("Slice", [padded, starts, ends, axes], f"tta.shift_{dy}_{dx}")
        views.append(graph.node("Reshape", [shifted, row_shape], f"tta.shift_{dy}_{dx}"))
    return graph.node("Concat", views, "tta", axis=0), len(views)


def build_onnx(model: Model, tta: bool | None = None):
    """The model (all members) as an onnx.ModelProto, checked by onnx.checker (full_check).
    tta None follows the model's config. Raises KitError naming a layer it cannot map."""
    import onnx
    from onnx import TensorProto, helper

    tta = model.config.tta if tta is None else tta
    graph = _Graph()
    graph.name(INPUT)
    scaled = graph.node(
        "Mul", [INPUT, graph.const("scale_1_255", np.array(1.0 / 255.0, np.float32))], "to_float"
    )
    x, n_views = _tta_views(graph, scaled) if tta else (scaled, 1)
    member_probs = []
    for m, member in enumerate(model.members):
        h, shape = x, (N_PIXELS,)
        for i, layer in enumerate(member.layers):
            h, shape = _layer_nodes(graph, layer, h, shape, f"member {m} layer {i}")
        if shape != (N_CLASSES,):
            raise KitError(
                f"cannot export member {m}: its last layer gives shape {shape}, not ({N_CLASSES},)"
            )
        member_probs.append(graph.node("Softmax", [h], f"member{m}", axis=-1))
    total = member_probs[0] if len(member_probs) == 1 else graph.node("Sum", member_probs, "members")
    if n_views > 1:  # (views * N, 10) -> (views, N, 10), summed over the views
        stacked = graph.node(
            "Reshape", [total, graph.const("tta.stack", np.array([n_views, -1, N_CLASSES], np.int64))], "tta"
        )
        total = graph.node(
            "ReduceSum", [stacked, graph.const("tta.view_axis", np.array([0], np.int64))], "tta", keepdims=0
        )
    count = len(member_probs) * n_views
    graph.name(PROBABILITIES)
    graph.name(LABEL)
    if count == 1:
        graph.node("Identity", [total], "mean", output=PROBABILITIES)
    else:
        graph.node(
            "Div",
            [total, graph.const("n_averaged", np.array(count, np.float32))],
            "mean",
            output=PROBABILITIES,
        )
    graph.node("ArgMax", [PROBABILITIES], "label", output=LABEL, axis=1, keepdims=0)

    onnx_graph = helper.make_graph(
        graph.nodes,
        "digit_recognizer",
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["N", N_PIXELS])],
        [
            helper.make_tensor_value_info(PROBABILITIES, TensorProto.FLOAT, ["N", N_CLASSES]),
            helper.make_tensor_value_info(LABEL, TensorProto.INT64, ["N"]),
        ],
        graph.initializers,
    )
    onnx_graph.input[0].doc_string = "raw pixel values 0..255, float32, test.csv's column order"
    proto = helper.make_model(
        onnx_graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="digit-kit",
        producer_version=VERSION,
        doc_string="Digit Recognizer network exported by kit/export.py",
    )
    proto.ir_version = IR_VERSION
    meta = model.meta
    helper.set_model_props(
        proto,
        {
            "run_id": str(meta.get("run_id", "unknown")),
            "preset": str(meta.get("preset", model.config.preset)),
            "val_accuracy": "" if meta.get("val_accuracy") is None else f"{meta['val_accuracy']:.6f}",
            "kit_version": VERSION,
            "input": INPUT_MEANING,
            "members": str(len(model.members)),
            "tta": str(int(bool(tta))),
            "config": model.config.to_json(),
        },
    )
    onnx.checker.check_model(proto, full_check=True)
    return proto


# --------------------------------------------------------------------------- files


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
    x = dataset.x.astype(np.float32)
    return x[train_idx], x[val_idx], dataset.y[val_idx].astype(np.int64)


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
