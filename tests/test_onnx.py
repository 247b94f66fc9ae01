"""`kit export`: the ONNX graph is valid (onnx.checker, full check), onnxruntime gives the kit's
own probabilities and labels, the int8 model keeps the accuracy, unknown layers are refused,
and `kit submit --onnx` writes the NumPy submission exactly."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import numpy as np
import onnx
import pytest

from kit.cli import main
from kit.config import make_config
from kit.core.errors import KitError
from kit.data.split import to_float
from kit.nn import layers as L
from kit.onnx.export import export_run
from kit.onnx.graph import IR_VERSION, OPSET, build_onnx
from kit.onnx.predict import OnnxModel
from kit.run.model import Model
from kit.run.train import train_run
from synthetic import make_images, write_competition

N_ROWS = 3000  # rows the engines are compared on

QUICK = dict(epochs=1, batch_size=32, augment=False)
CONFIGS = {
    # default preset: dropout between the dense layers
    "mlp": lambda: make_config("default", hidden=(32, 16), **QUICK),
    # conv blocks with batch norm (per channel), then a dense layer with batch norm (per feature)
    "cnn_bn": lambda: make_config("best", conv_channels=(4, 8), hidden=(16,), ensemble=1, **QUICK),
    "ensemble": lambda: make_config("reference", hidden=(16,), ensemble=3, **QUICK),
    "tta": lambda: make_config("reference", hidden=(16,), tta=True, **QUICK),
    **{
        f"act_{name}": (lambda name=name: make_config("reference", hidden=(24, 12), activation=name, **QUICK))
        for name in L.ACTIVATIONS
    },
}


@pytest.fixture(scope="module")
def competition(tmp_path_factory) -> Path:
    return write_competition(tmp_path_factory.mktemp("data"), n_train=400, n_test=150)


@pytest.fixture(scope="module")
def rows() -> np.ndarray:
    """A few thousand raw uint8 rows (n, 784)."""
    return make_images(N_ROWS, seed=3)[0]


@pytest.fixture(scope="module")
def runs(competition, tmp_path_factory):
    """Each config trained briefly once (on first use) and exported: name -> (run folder, model.onnx)."""
    root, done = tmp_path_factory.mktemp("models"), {}

    def get(name: str) -> tuple[Path, Path]:
        if name not in done:
            run_dir = train_run(CONFIGS[name](), competition / "train.csv", root / name)
            done[name] = run_dir, export_run(run_dir)["onnx"]
        return done[name]

    return get


@pytest.mark.parametrize("name", ["mlp", "cnn_bn", "ensemble"])
def test_exported_model_passes_the_full_onnx_check(runs, name):
    run_dir, path = runs(name)
    assert path == run_dir / "model.onnx"
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    assert model.ir_version == IR_VERSION and model.opset_import[0].version == OPSET
    graph = model.graph
    assert [i.name for i in graph.input] == ["pixels"] and [o.name for o in graph.output] == [
        "probabilities",
        "label",
    ]
    dims = [
        [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
        for v in (*graph.input, *graph.output)
    ]
    assert dims == [["N", 784], ["N", 10], ["N"]]
    assert graph.output[1].type.tensor_type.elem_type == onnx.TensorProto.INT64
    props = {p.key: p.value for p in model.metadata_props}
    meta = Model.load(run_dir / "model.npz").meta
    assert props["run_id"] == run_dir.name == meta["run_id"] and props["preset"] == meta["preset"]
    assert float(props["val_accuracy"]) == pytest.approx(meta["val_accuracy"], abs=1e-6)
    assert props["kit_version"] and "0..255" in props["input"]
    ops = {node.op_type for node in graph.node}
    assert "Dropout" not in ops and {"Mul", "Softmax", "ArgMax", "Gemm"} <= ops
    if name == "cnn_bn":
        assert {"Conv", "MaxPool", "BatchNormalization", "Reshape", "Flatten"} <= ops
        assert sum(node.op_type == "BatchNormalization" for node in graph.node) == 3
    if name == "ensemble":
        assert sum(node.op_type == "Softmax" for node in graph.node) == 3


@pytest.mark.parametrize("name", list(CONFIGS))
def test_onnxruntime_gives_the_kits_probabilities_and_labels(runs, rows, name):
    run_dir, path = runs(name)
    model = Model.load(run_dir / "model.npz")
    if name == "cnn_bn":  # the saved running statistics are really used: they are not the initial ones
        bn = [layer for layer in model.members[0].layers if isinstance(layer, L.BatchNorm)]
        assert len(bn) == 3 and all(np.abs(b.buffers["running_mean"]).max() > 1e-3 for b in bn)
    expected = model.predict_proba(to_float(rows))
    session = OnnxModel(path)
    probs = session.predict_proba(rows)
    assert np.abs(probs - expected).max() <= 1e-5
    assert np.array_equal(session.predict(rows), expected.argmax(axis=1))
    # the batch dimension is dynamic: one row, and an odd-sized batch in one run
    one = session.session.run(None, {"pixels": rows[:1].astype(np.float32)})
    assert one[0].shape == (1, 10) and one[1].shape == (1,) and one[1].dtype == np.int64
    assert np.abs(session.predict_proba(rows[:37], batch_rows=37) - expected[:37]).max() <= 1e-5


def test_quantized_model_keeps_the_accuracy(tmp_path, capsys):
    competition = write_competition(tmp_path / "data", n_train=3000, n_test=10)
    config = make_config("reference", hidden=(64,), epochs=3, lr=0.05, batch_size=32, val_fraction=0.2)
    run_dir = train_run(config, competition / "train.csv", tmp_path / "models")
    capsys.readouterr()
    result = export_run(run_dir, quantize=True)
    out = capsys.readouterr().out
    assert result["int8"] == run_dir / "model.int8.onnx" and result["int8"].is_file()
    assert f"{result['int8_bytes'] / 1024:.1f} KiB" in out and "validation accuracy on 600 rows" in out
    assert result["int8_bytes"] <= 0.30 * result["bytes"]
    int8 = OnnxModel(result["int8"])
    assert {node.op_type for node in onnx.load(result["int8"]).graph.node} >= {
        "QuantizeLinear",
        "DequantizeLinear",
    }
    assert result["val_accuracy"] > 0.9  # the set is learnable, so the comparison means something
    assert abs(result["val_accuracy"] - result["int8_val_accuracy"]) <= 0.001  # 0.1 points
    # row by row, on all 3,000 rows of train.csv, the int8 model labels (nearly) like the float one
    x, _ = make_images(3000, seed=0)
    assert np.mean(int8.predict(x) == OnnxModel(result["onnx"]).predict(x)) >= 0.995


class Swish(L.Layer):
    def forward(self, x, training):
        return x / (1 + np.exp(-x))


def test_an_unknown_layer_stops_the_export_and_writes_nothing(runs, monkeypatch, tmp_path, capsys):
    run_dir, _ = runs("mlp")
    model = Model.load(run_dir / "model.npz")
    model.members[0].layers.insert(2, Swish())
    with pytest.raises(KitError, match=r"member 0 layer 2 \(Swish\)"):
        build_onnx(model)
    monkeypatch.setattr(Model, "load", classmethod(lambda cls, path: model))
    out = tmp_path / "out" / "model.onnx"
    assert main(["export", "--model", str(run_dir), "--out", str(out), "--quantize", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: cannot export member 0 layer 2 (Swish)") and "\n" not in err
    assert not out.parent.exists() or not any(out.parent.iterdir())


def test_submit_through_onnxruntime_writes_the_numpy_submission(runs, competition, tmp_path, capsys):
    run_dir, path = runs("cnn_bn")
    common = [
        "--model",
        str(run_dir),
        "--test",
        str(competition / "test.csv"),
        "--sample",
        str(competition / "sample_submission.csv"),
    ]
    numpy_file, onnx_file = (tmp_path / d / "submission.csv" for d in ("numpy", "onnx"))
    assert main(["submit", *common, "--out", str(numpy_file)]) == 0
    assert main(["submit", *common, "--out", str(onnx_file), "--onnx", str(path)]) == 0
    assert onnx_file.read_text() == numpy_file.read_text()
    described = json.loads(onnx_file.with_suffix(".json").read_text())
    assert described["run_id"] == run_dir.name and described["engine"] == "onnxruntime"
    assert described["model"] == str(path) and described["rows"] == 150
    capsys.readouterr()
    # a missing file, and a TTA the graph does not have: one line each
    assert (
        main(["submit", *common, "--out", str(tmp_path / "x.csv"), "--onnx", str(tmp_path / "none.onnx")])
        == 2
    )
    assert main(["submit", *common, "--out", str(tmp_path / "x.csv"), "--onnx", str(path), "--tta", "1"]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert "run `make export` first" in errors[0] and "TTA=1" in errors[1] and len(errors) == 2
    assert not (tmp_path / "x.csv").exists()


def test_export_defaults_to_the_latest_runs_folder_and_checks_its_arguments(competition, tmp_path, capsys):
    models = tmp_path / "models"
    run_dir = train_run(CONFIGS["mlp"](), competition / "train.csv", models)
    assert main(["export", "--model", str(models)]) == 0
    assert (run_dir / "model.onnx").is_file() and not (run_dir / "model.int8.onnx").exists()
    assert f"wrote {run_dir / 'model.onnx'}" in capsys.readouterr().out
    assert main(["export", "--model", str(models), "--out", str(tmp_path / "model.csv")]) == 2
    assert "must end in .onnx" in capsys.readouterr().err
    # quantizing needs the run's training rows: a moved train.csv is one line, and nothing is written
    metrics = json.loads((run_dir / "metrics.json").read_text())
    (run_dir / "metrics.json").write_text(json.dumps({**metrics, "train_path": str(tmp_path / "gone.csv")}))
    out = tmp_path / "q" / "model.onnx"
    assert main(["export", "--model", str(run_dir), "--out", str(out), "--quantize", "1"]) == 2
    assert "gone.csv: the run's training file is not there; give TRAIN=" in capsys.readouterr().err
    assert not out.exists() and not out.with_name("model.int8.onnx").exists()
    assert (
        main(
            [
                "export",
                "--model",
                str(run_dir),
                "--out",
                str(out),
                "--quantize",
                "1",
                "--train",
                str(competition / "train.csv"),
            ]
        )
        == 0
    )
    assert out.is_file() and out.with_name("model.int8.onnx").is_file()
    assert sorted(p.name for p in out.parent.iterdir()) == [
        "model.int8.onnx",
        "model.onnx",
    ]  # no temporaries left


@pytest.mark.slow  # times 28,000 rows through three engines five times
def test_bench_onnx_part_measures_three_engines_side_by_side(runs, competition, tmp_path, capsys):
    from kit.bench.parts import run_bench

    run_dir, _ = runs("ensemble")
    result = run_bench("onnx", competition / "train.csv", tmp_path / "bench", model=str(run_dir))["onnx"]
    run = result["runs"][0]
    # test.csv sits next to train.csv: its 150 rows, repeated to 28,000
    assert result["rows"] == 28000 and "test.csv" in result["rows_source"]
    assert set(run["seconds"]) == {"NumPy", "onnxruntime float", "onnxruntime int8"}
    assert all(len(times) == 5 for times in run["seconds"].values())
    assert run["same_labels_as_numpy"]["onnxruntime float"] == 28000
    assert run["val_accuracy"]["NumPy"] == run["val_accuracy"]["onnxruntime float"]
    assert 0 < run["bytes"]["onnx int8"] < run["bytes"]["onnx float"]
    text = (tmp_path / "bench" / "onnx.md").read_text()
    assert "| onnxruntime int8 | model.int8.onnx" in text and run_dir.name in text
    ratio = statistics.median(run["seconds"]["onnxruntime float"]) / statistics.median(
        run["seconds"]["NumPy"]
    )
    assert f"| {ratio:.2f}x |" in text  # the table's "vs NumPy" column is the JSON's own medians
    assert json.loads((tmp_path / "bench" / "onnx.json").read_text())["runs"][0]["run_id"] == run_dir.name


def test_after_make_demo_alone_export_takes_the_demos_run(competition, tmp_path, capsys):
    models = tmp_path / "models"
    run_dir = train_run(
        CONFIGS["mlp"](), competition / "train.csv", models / "demo"
    )  # as `make demo` saves it
    assert main(["export", "--model", str(models), "--quantize", "1"]) == 0
    assert (run_dir / "model.onnx").is_file() and (run_dir / "model.int8.onnx").is_file()
    assert "using the demo's latest run" in capsys.readouterr().out
    assert main(["export", "--model", str(tmp_path / "empty")]) == 2
    assert "no trained model there" in capsys.readouterr().err
