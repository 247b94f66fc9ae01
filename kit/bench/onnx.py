"""`make bench PART=onnx`: a run exported to ONNX (float and int8), side by side with the NumPy model.

For each run (MODEL=, default the latest; several separated by commas): file sizes, validation
accuracy of NumPy / onnxruntime float / onnxruntime int8 on the run's own validation rows, how
many of the prediction rows each ONNX model labels like NumPy, and the seconds to predict them
(28,000 rows: test.csv next to train.csv, else train.csv's rows repeated to that count).
The three engines are timed in interleaved rounds (NumPy, float, int8, NumPy, ...), so machine
load drifts hit all three alike; each figure is the median with its min-max range.
Results go to bench/onnx.md and bench/onnx.json; the exported files go to a temporary folder.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path

import numpy as np

from kit.core.console import log

PREDICT_ROWS = 28000


def prediction_rows(train_path: Path, n_rows: int = PREDICT_ROWS) -> tuple[np.ndarray, str]:
    """(uint8 rows (n_rows, 784), where they came from)."""
    from kit.data.load import load_test, load_train

    test_path = train_path.with_name("test.csv")
    if test_path.is_file():
        x, source = load_test(test_path).x, str(test_path)
    else:
        x, source = load_train(train_path).x, f"{train_path} rows repeated (no test.csv next to it)"
    if len(x) != n_rows:
        x = x[np.arange(n_rows) % len(x)]
        source += f", {n_rows} rows"
    return x, source


def bench_run(model_path: str | os.PathLike, train_path: Path, x: np.ndarray, rounds: int, say=log) -> dict:
    """Export one run (float and int8) into a temporary folder and measure the three engines."""
    from kit.core.blas import blas_threads_now
    from kit.data.split import to_float
    from kit.onnx.export import export_run, recorded_train_path, run_rows
    from kit.onnx.predict import OnnxModel
    from kit.run.folders import resolve_model
    from kit.run.model import Model

    model_file = resolve_model(model_path)
    model = Model.load(model_file)
    with tempfile.TemporaryDirectory() as tmp:
        own = recorded_train_path(model_file)
        rows_from = (
            None if own and Path(own).is_file() else train_path
        )  # the run's own file, else the bench's
        exported = export_run(model_file, Path(tmp) / "model.onnx", quantize=True, train_path=rows_from)
        _, x_val, y_val = run_rows(model_file, model, rows_from)
        numpy_val_accuracy = None
        if len(y_val):
            numpy_val_accuracy = float(np.mean(model.predict(to_float(x_val.astype(np.uint8))) == y_val))
        engines = {
            "onnxruntime float": OnnxModel(exported["onnx"]),
            "onnxruntime int8": OnnxModel(exported["int8"]),
        }
        predict = {"NumPy": lambda: model.predict(to_float(x))}
        predict.update({name: (lambda m=m: m.predict(x)) for name, m in engines.items()})
        labels = {name: fn() for name, fn in predict.items()}  # also the warm-up
        seconds: dict[str, list[float]] = {name: [] for name in predict}
        say(f"onnx: {model.meta.get('run_id')}: {rounds} interleaved rounds of {len(x)} rows ...")
        for _ in range(rounds):
            for name, fn in predict.items():
                started = time.perf_counter()
                fn()
                seconds[name].append(time.perf_counter() - started)
    numpy_labels = labels["NumPy"]
    return {
        "run_id": model.meta.get("run_id"),
        "preset": model.config.preset,
        "arch": model.config.arch,
        "members": len(model.members),
        "tta": bool(model.config.tta),
        "bytes": {
            "npz": model_file.stat().st_size,
            "onnx float": exported["bytes"],
            "onnx int8": exported["int8_bytes"],
        },
        "n_val": exported.get("n_val"),
        "val_accuracy": {
            "NumPy": numpy_val_accuracy,
            "onnxruntime float": exported.get("val_accuracy"),
            "onnxruntime int8": exported.get("int8_val_accuracy"),
        },
        "same_labels_as_numpy": {name: int(np.sum(labels[name] == numpy_labels)) for name in engines},
        "seconds": seconds,
        "threads": {
            "NumPy BLAS": blas_threads_now(),
            "onnxruntime intra-op": engines["onnxruntime float"]
            .session.get_session_options()
            .intra_op_num_threads,
        },
    }


def onnx_bench(train_path: str | os.PathLike, model_paths: list[str], rounds: int = 5, say=log) -> dict:
    """Every measurement of the onnx part, as one dict (what onnx.json holds)."""
    from kit.core.blas import cap_blas_threads
    from kit.core.machine import load_average, machine_info
    from kit.onnx.predict import runtime_version

    cap_blas_threads()
    train_path = Path(train_path)
    x, source = prediction_rows(train_path)
    result = {
        "date": datetime.now().isoformat(timespec="seconds"),
        "machine": machine_info(),
        "onnxruntime": runtime_version(),
        "load_average_before": load_average(),
        "rows": len(x),
        "rows_source": source,
        "rounds": rounds,
        "runs": [],
    }
    for model_path in model_paths:
        result["runs"].append(bench_run(model_path, train_path, x, rounds, say))
    result["load_average_after"] = load_average()
    return result


def onnx_markdown(result: dict) -> str:
    from kit.bench.measure import spread
    from kit.core.machine import describe_machine

    lines = [
        f"# ONNX export: NumPy vs onnxruntime float vs onnxruntime int8 ({result['date']})",
        "",
        *describe_machine(result["machine"]),
        f"- onnxruntime {result['onnxruntime']}",
        f"- load average before / after: {result['load_average_before']} / {result['load_average_after']}",
        f"- prediction rows: {result['rows_source']}; {result['rounds']} interleaved rounds",
        "",
    ]
    for run in result["runs"]:
        sizes, acc, secs = run["bytes"], run["val_accuracy"], run["seconds"]
        lines += [
            f"## {run['run_id']} ({run['preset']}, {run['arch']}, {run['members']} member(s)"
            f"{', TTA' if run['tta'] else ''})",
            "",
            f"threads: {', '.join(f'{k} {v}' for k, v in run['threads'].items())}",
            "",
            f"| engine | file | validation accuracy ({run['n_val']} rows) | same labels as NumPy "
            f"({result['rows']} rows) | seconds for {result['rows']} rows | vs NumPy |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        base = statistics.median(secs["NumPy"])
        files = {
            "NumPy": f"model.npz {sizes['npz'] / 1024:.0f} KiB",
            "onnxruntime float": f"model.onnx {sizes['onnx float'] / 1024:.0f} KiB",
            "onnxruntime int8": f"model.int8.onnx {sizes['onnx int8'] / 1024:.0f} KiB "
            f"({100 * sizes['onnx int8'] / sizes['onnx float']:.1f}% of float)",
        }
        for name in secs:
            accuracy = "n/a" if acc[name] is None else f"{acc[name]:.4f}"
            same = "—" if name == "NumPy" else f"{run['same_labels_as_numpy'][name]}"
            lines.append(
                f"| {name} | {files[name]} | {accuracy} | {same} | {spread(secs[name])} | "
                f"{statistics.median(secs[name]) / base:.2f}x |"
            )
        if acc["onnxruntime float"] is not None:
            lines += [
                "",
                f"int8 minus float: {100 * (acc['onnxruntime int8'] - acc['onnxruntime float']):+.2f} "
                "validation accuracy points (target: within 0.1).",
            ]
        lines.append("")
    return "\n".join(lines)


def run_onnx_bench(train_path: Path, model_arg: str, out: Path, rounds: int = 5) -> dict:
    """The onnx part: export and measure each run of MODEL= (comma-separated), publish."""
    from kit.bench.measure import publish

    paths = [p.strip() for p in str(model_arg).split(",") if p.strip()] or ["models"]
    result = onnx_bench(train_path, paths, rounds)
    publish(out, "onnx", result, onnx_markdown(result))
    return result
