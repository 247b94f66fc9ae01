"""`make bench PART=speed` (bench/speed.md, .json): how fast the kit trains and predicts here.

  * float32 matrix-product throughput: one large product, and one batch's first layer;
  * seconds per epoch of the reference network (batch 64, 256, one BLAS thread), the default
    preset and the best preset's CNN, each the median of several epochs, against its FLOP floor
    (kit.bench.floor), measured right before every timed epoch under the same load;
  * train.csv parsed from CSV against loaded from the binary cache;
  * prediction over test.csv (rows per second);
  * peak memory (RSS) of a `kit train` process, and how soon it starts its first batch.
The PyTorch row comes from bench/cnn_peer.json (tools/cnn_race.py --record): PyTorch is never
in the kit.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import time
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from kit.bench.floor import floor_epoch, gemm_gflops, step_products
from kit.bench.footprint import training_footprint
from kit.bench.measure import publish, repeat_timing, spread
from kit.config import Config, describe, make_config
from kit.core.console import log
from kit.core.machine import describe_machine, load_average, machine_info
from kit.core.mnist import N_PIXELS
from kit.data.load import load_test, load_train, parse_csv
from kit.data.split import run_split, to_float

FLOOR_TARGET = 1.5  # reference at batch 64: seconds per epoch / FLOP floor
CACHE_TARGET = 20.0  # cached load at least this many times faster than parsing the CSV
PREDICT_TARGET = 0.2  # seconds to predict the 28,000 test rows (reference network)
RSS_TARGET_MB = 500.0  # peak RSS of `make train`
FIRST_BATCH_TARGET = 1.0  # seconds from starting `kit train` (cached data) to its first batch
CNN_LABEL = "best preset's CNN, no augmentation"
TORCH_TARGET = 1.0  # the best preset's CNN epoch / PyTorch's on the same network (tools/cnn_race.py)
PEER_RECORD = "cnn_peer.json"  # in bench/: what tools/cnn_race.py --record measured


@dataclass
class SpeedSizes:
    """How much the speed part measures; the defaults are `make bench`, tests pass tiny ones."""

    epochs: int = 5  # timed epochs per configuration (after one untimed warm-up epoch)
    gemm_side: int = 2048  # the large product: side x side @ side x side
    repeats: int = 7  # repetitions of the short measurements (products, loads, predictions)
    parse_repeats: int = 2  # CSV parses of train.csv (each takes seconds)
    rss_preset: str = "default"  # the `kit train` run measured for peak memory
    rss_epochs: int = 1  # its epochs: memory peaks in the first, later ones allocate nothing new
    rss: bool = True  # measure the subprocess at all
    cnn_epochs: int = 3  # timed epochs of the best preset's network (each takes tens of seconds)
    cnn_rows: int = 0  # rows for the CNN epochs (0: the whole 90% training split)


def time_epochs(
    config: Config, x: np.ndarray, y: np.ndarray, epochs: int, seed: int = 0, threads: int | None = None
) -> dict:
    """Seconds per epoch of a config's training step on (x float32, y), median of `epochs` timed
    epochs after one warm-up, each preceded by one epoch's worth of the network's matrix
    products alone (the floor, measured under the same load). Validation is not included.
    `threads` limits BLAS for this measurement (None: as the process is set)."""
    from kit.core.blas import limit_blas
    from kit.run.trainer import Trainer

    n_batches = math.ceil(len(x) / config.batch_size)
    with limit_blas(threads or 0):
        trainer = Trainer(config, x.shape[1], epochs + 1, np.random.default_rng(seed))
        step, flops = step_products(config, config.batch_size, np.random.default_rng(seed))
        epoch_times, floor_times = [], []
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            trainer.train_epoch(1, x, y)
            floor_epoch(step, min(n_batches, 20))
            for epoch in range(2, epochs + 2):
                floor_times.append(floor_epoch(step, n_batches))
                started = time.perf_counter()
                trainer.train_epoch(epoch, x, y)
                epoch_times.append(time.perf_counter() - started)
        trainer.close()
    result = {
        "epoch_seconds": epoch_times,
        "n_rows": len(x),
        "batch": config.batch_size,
        "n_batches": n_batches,
        "floor_seconds": floor_times,
        "flops_per_epoch": flops * n_batches,
        "floor_gflops": flops * n_batches / statistics.median(floor_times) / 1e9,
        "ratio": statistics.median(epoch_times) / statistics.median(floor_times),
    }
    if threads:
        result["blas_threads"] = threads
    return result


# --------------------------------------------------------------------------- data, prediction, memory


def load_times(train_path: Path, parse_repeats: int, repeats: int) -> dict:
    """Seconds to parse train.csv (pandas C parser and every check) against loading the cache."""
    load_train(train_path)  # make sure the cache exists and is current
    parse = []
    for _ in range(parse_repeats):
        started = time.perf_counter()
        parse_csv(train_path, has_label=True)
        parse.append(time.perf_counter() - started)
    cached = []
    for _ in range(repeats):
        started = time.perf_counter()
        load_train(train_path)
        cached.append(time.perf_counter() - started)
    return {
        "parse_seconds": parse,
        "cached_seconds": cached,
        "speedup": statistics.median(parse) / statistics.median(cached),
    }


def predict_times(preset: str, x: np.ndarray, repeats: int, seed: int = 0) -> dict:
    """Seconds for a freshly initialised network of a preset to predict every row of x
    (Model.predict: large evaluation batches, softmax, argmax). Weights do not change the time."""
    from kit.run.model import Model, build_network

    config = make_config(preset)
    model = Model(config, [build_network(config, np.random.default_rng(seed))])
    times = repeat_timing(lambda: model.predict(x), repeats, min_seconds=0.0)
    return {
        "preset": preset,
        "rows": len(x),
        "seconds": times,
        "rows_per_second": len(x) / statistics.median(times),
    }


# --------------------------------------------------------------------------- the part


def speed_bench(train_path: str | os.PathLike, sizes: SpeedSizes | None = None, say=log) -> dict:
    """Every speed measurement of the part, as one dict (what speed.json holds)."""
    from kit.core.blas import cap_blas_threads

    sizes = sizes or SpeedSizes()
    train_path = Path(train_path)
    cap_blas_threads()
    rng = np.random.default_rng(0)
    result: dict = {
        "date": datetime.now().isoformat(timespec="seconds"),
        "machine": machine_info(),
        "load_average_before": load_average(),
        "sizes": asdict(sizes),
    }

    if sizes.rss:
        # first, while this process is small: Linux starts a child's peak RSS (ru_maxrss) at its
        # parent's size when it forks, so after the CNN epochs below it would report those
        say(f"speed: peak memory of `kit train --preset {sizes.rss_preset} --epochs {sizes.rss_epochs}` ...")
        result["footprint"] = training_footprint(train_path, sizes.rss_preset, sizes.rss_epochs)

    say("speed: float32 matrix products ...")
    side = sizes.gemm_side
    result["gemm_large"] = {
        "shape": [side, side, side],
        "gflops": gemm_gflops(side, side, side, sizes.repeats, rng),
    }
    result["gemm_batch"] = {
        "shape": [64, N_PIXELS, 128],
        "gflops": gemm_gflops(64, N_PIXELS, 128, sizes.repeats, rng),
    }

    say("speed: loading train.csv (CSV parse vs cache) ...")
    result["load"] = load_times(train_path, sizes.parse_repeats, sizes.repeats)

    dataset = load_train(train_path)
    x_all, y_all = to_float(dataset.x), dataset.y.astype(np.int64)
    train_idx, _, _ = run_split(y_all, 0.1, seed=0)
    x, y = x_all[train_idx], y_all[train_idx]
    del x_all

    runs = [
        ("reference, batch 64", make_config("reference", batch_size=64), None),
        ("reference, batch 256", make_config("reference", batch_size=256), None),
        ("default preset", make_config("default"), None),
        # the same step on one core: the ratio without the second core's share of the products,
        # which a busy machine takes away first
        ("reference, batch 64, 1 BLAS thread", make_config("reference", batch_size=64), 1),
    ]
    # the best preset's network (issue 12), without augmentation so the floor counts all its work
    runs.append((CNN_LABEL, make_config("best", augment=False), None))
    result["epochs"] = []
    for label, config, threads in runs:
        rows, n_epochs = (
            (sizes.cnn_rows or len(x), sizes.cnn_epochs) if label == CNN_LABEL else (len(x), sizes.epochs)
        )
        say(f"speed: {label}: {n_epochs} timed epochs on {rows} rows ...")
        timing = time_epochs(config, x[:rows], y[:rows], n_epochs, threads=threads)
        timing.update(
            label=label,
            preset=config.preset,
            network=f"{describe(config, network_only=True)}, batch {config.batch_size}",
        )
        result["epochs"].append(timing)
    del x, y

    test_path = train_path.with_name("test.csv")
    if test_path.is_file():
        x_test, source = to_float(load_test(test_path).x), str(test_path)
    else:
        x_test, source = to_float(dataset.x), f"{train_path} (no test.csv next to it)"
    say(f"speed: predicting {len(x_test)} rows ...")
    result["predict"] = {
        "source": source,
        "runs": [predict_times(p, x_test, sizes.repeats) for p in ("reference", "default")],
    }
    del x_test, dataset

    result["load_average_after"] = load_average()
    return result


def speed_markdown(result: dict) -> str:
    """The speed table (with the machine described) as markdown."""
    rows: list[tuple[str, str, str]] = []
    for key, what in (
        ("gemm_large", "float32 GEMM {}"),
        ("gemm_batch", "float32 GEMM {} (one batch, first layer)"),
    ):
        gemm = result[key]
        rows.append(
            (
                what.format("×".join(map(str, gemm["shape"]))),
                spread(gemm["gflops"], "{:.0f}") + " GFLOP/s",
                "",
            )
        )
    peer = result.get("peer")
    for run in result["epochs"]:
        flops = f"{run['flops_per_epoch'] / 1e9:.1f} GFLOP/epoch"
        rows.append(
            (
                f"{run['label']}: the step's own products ({flops})",
                f"{run['floor_gflops']:.0f} GFLOP/s → floor {spread(run['floor_seconds'])} s/epoch",
                "",
            )
        )
        target = f"≤ {FLOOR_TARGET}× floor" if run["label"] == "reference, batch 64" else ""
        rows.append(
            (
                f"{run['label']}: {run['network']}, {run['n_rows']} rows, {run['n_batches']} batches",
                f"{spread(run['epoch_seconds'])} s/epoch = **{run['ratio']:.2f}× floor**",
                target,
            )
        )
        if peer and run["label"] == CNN_LABEL:
            rows.append(
                (
                    f"the same network in PyTorch {peer['torch']} CPU ({peer['torch_threads']} threads), "
                    f"`tools/cnn_race.py` on {peer['measured'][:10]}, {peer['machine']['cpu']}: "
                    f"{peer['rows']} rows, {len(peer['rounds'])} interleaved rounds",
                    f"kit/PyTorch **{peer['median_kit_over_torch']:.2f}×** (the kit then "
                    f"{peer['median_kit_over_floor']:.2f}× its floor; now {run['ratio']:.2f}×)",
                    f"≤ {TORCH_TARGET:.1f}×",
                )
            )
    load = result["load"]
    rows.append(
        ("train.csv: parse the CSV (pandas C parser + checks)", spread(load["parse_seconds"]) + " s", "")
    )
    rows.append(
        (
            "train.csv: load the binary cache",
            spread(load["cached_seconds"], "{:.4f}") + f" s = **{load['speedup']:.0f}× faster**",
            f"≥ {CACHE_TARGET:.0f}×",
        )
    )
    for run in result["predict"]["runs"]:
        rows.append(
            (
                f"predict {run['rows']} rows ({run['preset']} network)",
                spread(run["seconds"]) + f" s = {run['rows_per_second']:,.0f} rows/s",
                f"< {PREDICT_TARGET} s" if run["preset"] == "reference" else "",
            )
        )
    if "footprint" in result:
        fp = result["footprint"]
        rows.append(
            (
                f"`kit train --preset {fp['preset']} --epochs {fp['epochs']}`: peak RSS",
                f"**{fp['peak_rss_mb']:.0f} MB** (wall {fp['wall_seconds']:.1f} s)",
                f"< {RSS_TARGET_MB:.0f} MB",
            )
        )
        rows.append(
            (
                "same run, cached data: start of the process → first batch",
                f"{fp['first_batch_seconds']:.2f} s",
                f"< {FIRST_BATCH_TARGET:.0f} s",
            )
        )
    lines = [
        "# Speed (`make bench PART=speed`)",
        "",
        f"Measured {result['date']}.",
        "",
        *describe_machine(result["machine"]),
        f"- Load average (1, 5, 15 min) before: {result['load_average_before']}, "
        f"after: {result['load_average_after']}",
        "",
        "| measurement | result: median (min–max, n) | target |",
        "|---|---|---|",
        *(f"| {a} | {b} | {c} |" for a, b, c in rows),
        "",
        "The FLOP floor is the time the training step's own matrix products take alone, at the batch "
        "size's shapes (kit/bench/floor.py), measured right before every timed epoch so both see the same "
        "load; ratios compare across machines, seconds do not. Epochs exclude validation; the default "
        "preset's time includes dropout and augmentation, which its floor does not count. The CNN's floor "
        "is the products of a direct (im2col) convolution; the kit's Winograd convolutions do fewer, so "
        "it can beat that floor. Timings are medians; the spread (min–max) shows how noisy they were.",
    ]
    return "\n".join(lines) + "\n"


def run_speed_bench(train_path: Path, out: Path, sizes: SpeedSizes | None = None) -> dict:
    """The speed part: measure, add the PyTorch peer's record when there is one, publish."""
    result = speed_bench(train_path, sizes)
    peer_file = out / PEER_RECORD  # PyTorch is not in the kit: tools/cnn_race.py --record measured it
    if peer_file.is_file():
        try:
            result["peer"] = json.loads(peer_file.read_text())
        except ValueError as error:
            log(f"warning: {peer_file}: unreadable ({error}); the PyTorch row is left out")
    publish(out, "speed", result, speed_markdown(result))
    return result
