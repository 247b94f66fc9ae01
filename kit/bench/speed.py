"""`make bench`: how fast the kit trains and predicts on this machine, and how accurate the presets are.

Speed part (bench/speed.md, bench/speed.json):
  * float32 matrix-product throughput: one large product, and the batch-sized products one
    training step of the network really does (forward, weight gradients, input gradients);
  * seconds per epoch of the reference network at batch 64 and 256 and of the default preset,
    each the median of several epochs, against the FLOP floor: the time the network's own
    batch-sized products take on their own. The floor is measured right next to every timed
    epoch, so both see the same machine load, and the ratio is what to compare across machines;
  * train.csv parsed from CSV against loaded from the binary cache;
  * prediction over test.csv (rows per second);
  * peak memory (RSS) of a `kit train` process, and how soon it starts its first batch.

Accuracy part (bench/accuracy.md, bench/accuracy.json): each preset trained on train.csv
(10% stratified validation) through the same code as `make train`; `default` over several
seeds (mean ± standard deviation, and the range), the others with seed 0.

Only the standard library, NumPy and threadpoolctl (which scikit-learn brings) are used for
timing. Wall-clock timings on a shared machine are noisy: every figure is a median, its
min-max range is printed next to it, and the load average before and after is recorded.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from kit.config import Config, make_config
from kit.core.machine import describe_machine, load_average, machine_info, repeat_timing, spread, write
from kit.core.mnist import N_CLASSES, N_PIXELS
from kit.data.load import load_test, load_train, parse_csv
from kit.data.split import run_split, to_float

SPEED_MD, SPEED_JSON = "speed.md", "speed.json"
ACCURACY_MD, ACCURACY_JSON = "accuracy.md", "accuracy.json"
FLOOR_TARGET = 1.5  # reference at batch 64: seconds per epoch / FLOP floor
CACHE_TARGET = 20.0  # cached load at least this many times faster than parsing the CSV
PREDICT_TARGET = 0.2  # seconds to predict the 28,000 test rows (reference network)
RSS_TARGET_MB = 500.0  # peak RSS of `make train`
FIRST_BATCH_TARGET = 1.0  # seconds from starting `kit train` (cached data) to its first batch
BEST_ACCURACY_TARGET = 0.996  # the best preset: mean validation accuracy over BEST_SEEDS seeds ...
BEST_SECONDS_TARGET = 900.0  # ... each run within a quarter of an hour of wall time
BEST_SEEDS = 2
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


def gemm_gflops(m: int, k: int, n: int, repeats: int, rng: np.random.Generator) -> list[float]:
    """GFLOP/s of one float32 product (m, k) @ (k, n) into a preallocated output, per repetition."""
    a = rng.random((m, k), dtype=np.float32)
    b = rng.random((k, n), dtype=np.float32)
    out = np.empty((m, n), dtype=np.float32)
    flops = 2.0 * m * k * n
    return [flops / t / 1e9 for t in repeat_timing(lambda: np.matmul(a, b, out=out), repeats)]


# --------------------------------------------------------------------------- the FLOP floor


def layer_sizes(config: Config) -> list[int] | None:
    """[784, hidden..., 10] of an MLP config; None for a CNN (no floor is computed for it)."""
    if config.arch != "mlp":
        return None
    return [N_PIXELS, *config.hidden, N_CLASSES]


def step_flops(sizes: list[int], batch: int) -> float:
    """FLOPs of one training step's matrix products: forward and weight gradient of every dense
    layer, input gradient of every layer but the first (nobody needs the pixels' gradient)."""
    pairs = list(zip(sizes[:-1], sizes[1:]))
    per_row = sum(4 * a * b for a, b in pairs) + sum(2 * a * b for a, b in pairs[1:])
    return float(per_row * batch)


def step_products(sizes: list[int], batch: int, rng: np.random.Generator) -> Callable[[], None]:
    """A function doing exactly the matrix products of one training step, with the same shapes
    and memory layouts as the Dense layers (x @ w, x.T @ g, g @ w.T), into preallocated outputs."""
    calls = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        x = rng.random((batch, a), dtype=np.float32)
        w = rng.random((a, b), dtype=np.float32)
        y = np.empty((batch, b), dtype=np.float32)
        g = rng.random((batch, b), dtype=np.float32)
        gw = np.empty((a, b), dtype=np.float32)
        calls.append((x, w, y))
        calls.append((x.T, g, gw))
        if i > 0:
            calls.append((g, w.T, np.empty((batch, a), dtype=np.float32)))
    matmul = np.matmul

    def step() -> None:
        for left, right, out in calls:
            matmul(left, right, out=out)

    return step


def floor_epoch(step: Callable[[], None], n_batches: int) -> float:
    """Seconds for one epoch's worth (n_batches steps) of the network's products alone."""
    started = time.perf_counter()
    for _ in range(n_batches):
        step()
    return time.perf_counter() - started


def cnn_products(config: Config, batch: int, rng: np.random.Generator) -> tuple[Callable[[], None], float]:
    """(a function doing one training step's matrix products of a CNN config, their FLOPs).

    Every 3x3 "same" convolution as the products of a direct (im2col) convolution on the true
    output size (n*h*w columns, no padding columns): forward w (c_out, c_in*9) @ columns,
    weight gradient columns @ grad.T, input gradient w.T @ grad (not for the first, whose input
    is the pixels); 2x2 pooling halves the side; then the dense layers as the MLP floor counts
    them, the first with its input gradient (the convolutions need it). CONVS_PER_BLOCK
    convolutions per block, the pooling after the block's last. This is the work of the usual
    algorithm, not of the kit's: its Winograd convolutions multiply 2.25x less and skip the
    outputs the pooling drops, so its epoch can take less than this floor."""
    from kit.core.mnist import IMAGE_SIDE

    calls, flops = [], 0.0
    side, c_in = IMAGE_SIDE, 1
    f32 = np.float32
    for c_out in config.conv_channels:
        for _ in range(config.convs_per_block):
            k, cols = c_in * 9, batch * side * side
            w = rng.random((c_out, k), dtype=f32)
            x_cols = rng.random((k, cols), dtype=f32)
            g = rng.random((c_out, cols), dtype=f32)
            calls.append((w, x_cols, np.empty((c_out, cols), f32)))
            calls.append((x_cols, g.T, np.empty((k, c_out), f32)))
            flops += 4.0 * c_out * k * cols
            if c_in > 1:
                calls.append((w.T, g, np.empty((k, cols), f32)))
                flops += 2.0 * c_out * k * cols
            c_in = c_out
        side //= 2
    sizes = [c_in * side * side, *config.hidden, N_CLASSES]
    for a, b in zip(sizes[:-1], sizes[1:]):
        x = rng.random((batch, a), dtype=f32)
        w = rng.random((a, b), dtype=f32)
        g = rng.random((batch, b), dtype=f32)
        calls += [
            (x, w, np.empty((batch, b), f32)),
            (x.T, g, np.empty((a, b), f32)),
            (g, w.T, np.empty((batch, a), f32)),
        ]
        flops += 6.0 * a * b * batch
    matmul = np.matmul

    def step() -> None:
        for left, right, out in calls:
            matmul(left, right, out=out)

    return step, flops


# --------------------------------------------------------------------------- epochs


def time_epochs(
    config: Config, x: np.ndarray, y: np.ndarray, epochs: int, seed: int = 0, threads: int | None = None
) -> dict:
    """Seconds per epoch of a config's training step on (x float32, y), median of `epochs` timed
    epochs after one warm-up, each preceded by one epoch's worth of the network's matrix
    products alone (the floor, measured under the same load). Validation is not included.
    `threads` limits BLAS for this measurement (None: as the process is set)."""
    if threads:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=threads, user_api="blas"):
            return dict(_time_epochs(config, x, y, epochs, seed), blas_threads=threads)
    return _time_epochs(config, x, y, epochs, seed)


def _time_epochs(config: Config, x: np.ndarray, y: np.ndarray, epochs: int, seed: int) -> dict:
    from kit.run.trainer import Trainer

    n_batches = math.ceil(len(x) / config.batch_size)
    trainer = Trainer(config, x.shape[1], epochs + 1, np.random.default_rng(seed))
    sizes = layer_sizes(config)
    step = step_products(sizes, config.batch_size, np.random.default_rng(seed)) if sizes else None
    if config.arch == "cnn":
        step, cnn_flops = cnn_products(config, config.batch_size, np.random.default_rng(seed))
    epoch_times, floor_times = [], []
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        trainer.train_epoch(1, x, y)
        if step:
            floor_epoch(step, min(n_batches, 20))
        for epoch in range(2, epochs + 2):
            if step:
                floor_times.append(floor_epoch(step, n_batches))
            started = time.perf_counter()
            trainer.train_epoch(epoch, x, y)
            epoch_times.append(time.perf_counter() - started)
    result = {
        "epoch_seconds": epoch_times,
        "n_rows": len(x),
        "batch": config.batch_size,
        "n_batches": n_batches,
    }
    if step:
        flops = (cnn_flops if config.arch == "cnn" else step_flops(sizes, config.batch_size)) * n_batches
        result.update(
            floor_seconds=floor_times,
            flops_per_epoch=flops,
            floor_gflops=flops / statistics.median(floor_times) / 1e9,
            ratio=statistics.median(epoch_times) / statistics.median(floor_times),
        )
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


FIRST_BATCH_PROBE = """
import os, sys, time
started = float(os.environ["KIT_BENCH_T0"])
import kit.run.trainer as train
original = train.Trainer.train_epoch
def probed(self, *args, **kwargs):
    if not getattr(train, "_bench_seen", False):
        train._bench_seen = True
        print(f"KIT_BENCH_FIRST_BATCH {time.time() - started:.4f}", flush=True)
    return original(self, *args, **kwargs)
train.Trainer.train_epoch = probed
from kit.cli import main
sys.exit(main(sys.argv[1:]))
"""


def training_footprint(train_path: Path, preset: str, epochs: int) -> dict:
    """Run `kit train` in a child process: its peak RSS (from the kernel's accounting of that
    child), its wall time, and the seconds from starting it to its first batch. The child is
    `kit train` itself with one probe that prints the time when the first epoch starts."""
    with tempfile.TemporaryDirectory(prefix="kit-bench-") as tmp:
        log_path = Path(tmp) / "train.log"
        command = [
            sys.executable,
            "-c",
            FIRST_BATCH_PROBE,
            "train",
            "--train",
            str(train_path),
            "--preset",
            preset,
            "--epochs",
            str(epochs),
            "--model-dir",
            str(Path(tmp) / "models"),
        ]
        env = dict(os.environ, KIT_BENCH_T0=repr(time.time()))
        started = time.perf_counter()
        with open(log_path, "w") as log:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
            if hasattr(os, "wait4"):
                _, status, usage = os.wait4(process.pid, 0)
                process.returncode = os.waitstatus_to_exitcode(status)
                # ru_maxrss is KiB on Linux, bytes on macOS
                peak = usage.ru_maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024)
            else:  # pragma: no cover - no per-child accounting (Windows)
                process.wait()
                peak = float("nan")
        wall = time.perf_counter() - started
        output = log_path.read_text(errors="replace")
    first = next(
        (float(line.split()[1]) for line in output.splitlines() if line.startswith("KIT_BENCH_FIRST_BATCH")),
        float("nan"),
    )
    if process.returncode != 0:
        tail = "\n".join(output.splitlines()[-5:])
        raise RuntimeError(
            f"`kit train` for the memory measurement failed (exit {process.returncode}):\n{tail}"
        )
    return {
        "preset": preset,
        "epochs": epochs,
        "peak_rss_mb": peak,
        "first_batch_seconds": first,
        "wall_seconds": wall,
    }


# --------------------------------------------------------------------------- the speed part


def speed_bench(train_path: str | os.PathLike, sizes: SpeedSizes | None = None, say=print) -> dict:
    """Every speed measurement of `make bench`, as one dict (also what speed.json holds)."""
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
        timing.update(label=label, preset=config.preset, network=_network_text(config))
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


def _network_text(config: Config) -> str:
    if config.arch == "cnn":
        extras = ["batch norm"] if config.batch_norm else []
        if config.dropout:
            extras.append(f"dropout {config.dropout}")
        return (
            f"conv {','.join(map(str, config.conv_channels))} → dense {','.join(map(str, config.hidden))} "
            f"({', '.join([config.optimizer, *extras])}, batch {config.batch_size})"
        )
    extras = [config.optimizer]
    if config.dropout:
        extras.append("dropout")
    if config.augment:
        extras.append("augmentation")
    return "-".join(str(s) for s in layer_sizes(config)) + f" ({', '.join(extras)})"


def speed_markdown(result: dict) -> str:
    """The speed table (with the machine described) as markdown."""
    rows: list[tuple[str, str, str]] = []
    large, batch = result["gemm_large"], result["gemm_batch"]
    rows.append(
        (
            f"float32 GEMM {'×'.join(map(str, large['shape']))}",
            spread(large["gflops"], "{:.0f}") + " GFLOP/s",
            "",
        )
    )
    rows.append(
        (
            "float32 GEMM 64×784 @ 784×128 (one batch, first layer)",
            spread(batch["gflops"], "{:.0f}") + " GFLOP/s",
            "",
        )
    )
    for run in result["epochs"]:
        what = f"{run['label']}: {run['network']}, {run['n_rows']} rows, {run['n_batches']} batches"
        if "floor_seconds" in run:
            rows.append(
                (
                    f"{run['label']}: the step's own products ({run['flops_per_epoch'] / 1e9:.1f} "
                    "GFLOP/epoch)",
                    f"{run['floor_gflops']:.0f} GFLOP/s → floor {spread(run['floor_seconds'])} s/epoch",
                    "",
                )
            )
        target = f"≤ {FLOOR_TARGET}× floor" if run["label"] == "reference, batch 64" else ""
        value = spread(run["epoch_seconds"]) + " s/epoch"
        if "ratio" in run:
            value += f" = **{run['ratio']:.2f}× floor**"
        rows.append((what, value, target))
        peer = result.get("peer")
        if peer and run["label"] == CNN_LABEL:
            rows.append(
                (
                    f"the same network in PyTorch {peer['torch']} CPU ({peer['torch_threads']} threads), "
                    f"`tools/cnn_race.py` on {peer['measured'][:10]}, {peer['machine']['cpu']}: "
                    f"{peer['rows']} rows, {len(peer['rounds'])} interleaved rounds",
                    f"kit/PyTorch **{peer['median_kit_over_torch']:.2f}×** (the kit then "
                    f"{peer['median_kit_over_floor']:.2f}× its floor; now "
                    f"{run.get('ratio', float('nan')):.2f}×)",
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
    lines = ["# Speed (`make bench`)", "", f"Measured {result['date']}.", ""]
    lines += describe_machine(result["machine"])
    lines += [
        f"- Load average (1, 5, 15 min) before: {result['load_average_before']}, "
        f"after: {result['load_average_after']}",
        "",
    ]
    lines += ["| measurement | result: median (min–max, n) | target |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    lines += [
        "",
        "The FLOP floor is the time the training step's own matrix products take alone, at the batch "
        "size's shapes (forward, weight gradients, input gradients but the first layer's), measured "
        "right before every timed epoch so both see the same load; ratios compare across machines, "
        "seconds do not. Epochs exclude validation; the default preset's time includes dropout and "
        "augmentation, which its floor does not count. The CNN's floor is the products of a direct "
        "(im2col) convolution; the kit's Winograd convolutions do fewer, so it can beat that floor.",
    ]
    if result.get("load_average_before", "n/a") != "n/a":
        lines += [
            "",
            "Timings are medians over repetitions; on a machine shared with other work the spread "
            "(min–max) shows how noisy they were.",
        ]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- the accuracy part


def accuracy_bench(
    train_path: str | os.PathLike,
    presets: list[str],
    seeds: int,
    n_jobs: int = 1,
    epochs: int | None = None,
    say=print,
) -> dict:
    """Train each preset (the default one over `seeds` seeds, the best one over BEST_SEEDS, the
    others with seed 0) as
    `make train` does, in a temporary model folder; collect best epoch, validation accuracy and
    wall seconds. n_jobs > 1 trains them in parallel processes (kit.parallel), which makes
    each run's wall seconds longer than alone."""
    from kit.run.parallel import run_many

    configs, labels = [], []
    seeds_of = {"default": max(1, seeds), "best": BEST_SEEDS}
    for preset in presets:
        for seed in range(seeds_of.get(preset, 1)):
            configs.append(make_config(preset, seed=seed, epochs=epochs))
            labels.append(preset)
    result = {
        "date": datetime.now().isoformat(timespec="seconds"),
        "machine": machine_info(),
        "load_average_before": load_average(),
        "train": str(train_path),
        "n_jobs": n_jobs,
        "runs": [],
    }
    say(f"accuracy: {len(configs)} training runs ({', '.join(presets)}), {n_jobs} at a time ...")
    with tempfile.TemporaryDirectory(prefix="kit-bench-") as tmp:
        outcomes = run_many(configs, train_path, tmp, n_jobs=n_jobs, quiet=n_jobs > 1)
        for config, outcome in zip(configs, outcomes):
            metrics = json.loads((outcome.run_dir / "metrics.json").read_text())
            result["runs"].append(
                {
                    "preset": config.preset,
                    "seed": config.seed,
                    "epochs": config.epochs,
                    "best_epoch": metrics["best_epoch"],
                    "val_accuracy": metrics.get("val_accuracy", float("nan")),
                    "val_loss": metrics.get("val_loss", float("nan")),
                    "member_val_accuracy": [m.get("val_accuracy") for m in metrics["members"]],
                    "blas_threads": metrics.get("blas_threads"),
                    "seconds": outcome.seconds,
                }
            )
    result["load_average_after"] = load_average()
    return result


def accuracy_markdown(result: dict) -> str:
    lines = [
        "# Accuracy (`make bench`)",
        "",
        f"Measured {result['date']} on {result['train']} "
        "(10% stratified validation; a run's seed also draws its split).",
        "",
    ]
    lines += describe_machine(result["machine"])
    lines += [
        f"- Load average before: {result['load_average_before']}, after: {result['load_average_after']}; "
        f"{result['n_jobs']} run(s) at a time",
        "",
    ]
    lines += [
        "| preset | epochs | wall seconds | best epoch | validation accuracy | target |",
        "|---|---|---|---|---|---|",
    ]
    by_preset: dict[str, list[dict]] = {}
    for run in result["runs"]:
        by_preset.setdefault(run["preset"], []).append(run)
    for preset, runs in by_preset.items():
        acc = [r["val_accuracy"] for r in runs]
        secs = [r["seconds"] for r in runs]
        best = ", ".join(str(r["best_epoch"]) for r in runs)
        if len(runs) > 1:
            accuracy = (
                f"{statistics.mean(acc):.4f} ± {statistics.stdev(acc):.4f} "
                f"(range {min(acc):.4f}–{max(acc):.4f}, {len(runs)} seeds)"
            )
            seconds = f"{statistics.mean(secs):.0f} (each, mean)"
        else:
            accuracy, seconds = f"{acc[0]:.4f} (seed {runs[0]['seed']})", f"{secs[0]:.0f}"
            members = runs[0].get("member_val_accuracy") or []
            if len(members) > 1 and None not in members:
                accuracy += f"; members alone: {', '.join(f'{a:.4f}' for a in members)}"
        target = ""
        if preset == "best":
            met = (
                statistics.mean(acc) >= BEST_ACCURACY_TARGET
                and max(secs) <= BEST_SECONDS_TARGET
                and len(runs) >= BEST_SEEDS
            )
            target = (
                f"mean ≥ {BEST_ACCURACY_TARGET} over {BEST_SEEDS} seeds, each ≤ {BEST_SECONDS_TARGET:.0f} s: "
                f"**{'met' if met else 'not met'}**"
            )
            seconds = ", ".join(f"{x:.0f}" for x in secs)
        lines.append(f"| {preset} | {runs[0]['epochs']} | {seconds} | {best} | {accuracy} | {target} |")
    lines += [
        "",
        "± is the standard deviation over seeds (seed changes the split, the initial weights, the "
        "order of batches, dropout and augmentation). Wall seconds cover the whole run: loading, "
        "training, validation after every epoch, saving.",
    ]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- entry point


def run_bench(args, sizes: SpeedSizes | None = None, accuracy_epochs: int | None = None) -> dict:
    """`kit bench`: args.train, args.part (speed, accuracy, all, onnx), args.seeds, args.presets
    (comma-separated), args.out (folder); optional args.jobs (parallel accuracy runs)."""
    from kit.core.errors import KitError

    if args.part == "serve":  # `make serve`'s speed and load (kit/serve_bench.py); needs no train.csv
        from kit.bench.serve import run_serve_bench

        return {"serve": run_serve_bench(Path(getattr(args, "out", "bench") or "bench"))}
    train_path = Path(args.train)
    if not train_path.is_file():
        raise KitError(
            f"{train_path}: file not found; run `make data` first (the bench needs the competition's "
            "train.csv)"
        )
    out = Path(getattr(args, "out", "bench") or "bench")
    results = {}
    if args.part == "onnx":  # the measuring lives in kit/onnx_bench.py
        from kit.bench.onnx import run_onnx_bench

        results["onnx"] = run_onnx_bench(train_path, getattr(args, "model", "models"), out)
    if args.part in ("speed", "all"):
        results["speed"] = speed = speed_bench(train_path, sizes)
        peer_file = out / PEER_RECORD  # PyTorch is not in the kit: tools/cnn_race.py --record measured it
        if peer_file.is_file():
            try:
                speed["peer"] = json.loads(peer_file.read_text())
            except ValueError as error:
                print(f"warning: {peer_file}: unreadable ({error}); the PyTorch row is left out", flush=True)
        text = speed_markdown(speed)
        write(out, SPEED_JSON, json.dumps(speed, indent=2) + "\n")
        print("\n" + text + f"\n(written to {write(out, SPEED_MD, text)})\n", flush=True)
    if args.part in ("accuracy", "all"):
        presets = [p.strip() for p in str(args.presets).split(",") if p.strip()]
        for preset in presets:
            make_config(preset)  # an unknown name fails now, not after an hour of training
        accuracy = accuracy_bench(
            train_path, presets, int(args.seeds), int(getattr(args, "jobs", 1) or 1), epochs=accuracy_epochs
        )
        results["accuracy"] = accuracy
        text = accuracy_markdown(accuracy)
        write(out, ACCURACY_JSON, json.dumps(accuracy, indent=2) + "\n")
        print("\n" + text + f"\n(written to {write(out, ACCURACY_MD, text)})\n", flush=True)
    if args.part == "sweep":  # not part of "all": the backends of `make sweep` (kit/sweep_bench.py)
        from kit.bench.sweep import sweep_bench, sweep_markdown

        results["sweep"] = measured = sweep_bench(train_path, rounds=3)
        text = sweep_markdown(measured)
        write(out, "sweep.json", json.dumps(measured, indent=2) + "\n")
        print("\n" + text + f"\n(written to {write(out, 'sweep.md', text)})\n", flush=True)
    return results
