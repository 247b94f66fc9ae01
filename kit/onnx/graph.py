"""A trained model as one ONNX graph, built with onnx's helper API (`make export` writes it).

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
"""

from __future__ import annotations

import numpy as np

from kit.core.errors import KitError
from kit.core.mnist import IMAGE_SIDE, N_CLASSES, N_PIXELS
from kit.core.version import VERSION
from kit.nn import image_layers
from kit.nn import layers as L
from kit.nn.conv import Conv2D
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
        slope = float(layer.slope)
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
        return graph.node("BatchNormalization", inputs, hint, epsilon=float(layer.eps)), shape
    if kind is Conv2D:
        w, b = layer.params["w"], layer.params["b"]
        c_out, c_in, k, k2 = w.shape
        p = int(layer.padding)
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
        s = int(layer.pool)
        if s > 1:  # the kit fuses the pooling into the convolution; ONNX has its own node
            out = graph.node("MaxPool", [out], f"{hint}.pool", kernel_shape=[s, s], strides=[s, s])
        return out, (c_out, side_h // s, side_w // s)
    if kind is image_layers.MaxPool2D:
        s = int(layer.size)
        if len(shape) != 3:
            raise _unknown(where, layer, f"needs (channels, h, w) input, gets shape {shape}")
        out = graph.node("MaxPool", [x], hint, kernel_shape=[s, s], strides=[s, s])
        return out, (shape[0], shape[1] // s, shape[2] // s)
    if kind is image_layers.Flatten:
        return graph.node("Flatten", [x], hint, axis=1), (int(np.prod(shape)),)
    if kind is image_layers.Reshape:
        target = tuple(int(d) for d in layer.shape)
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
        doc_string="Digit Recognizer network exported by the kit (kit/onnx/graph.py)",
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
