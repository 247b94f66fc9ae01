"""kit/bench: `make bench` on tiny generated data. The FLOP floor counts what it says, the parts
write their tables and JSON with the numbers behind them, bad arguments are one line. No timing
is asserted: speed targets live in the bench, not in a suite that must pass under any load."""

from __future__ import annotations

import json
import math
import statistics

import numpy as np
import pytest

from kit.bench.floor import step_products
from kit.bench.parts import run_bench
from kit.bench.speed import PEER_RECORD, SpeedSizes, time_epochs
from kit.config import make_config
from kit.core.errors import KitError
from synthetic import write_competition

TINY = SpeedSizes(epochs=2, gemm_side=32, repeats=2, parse_repeats=1, rss_epochs=1)


@pytest.fixture(scope="module")
def competition(tmp_path_factory):
    return write_competition(tmp_path_factory.mktemp("bench-data"), n_train=200, n_test=40)


def flops(config, batch=1) -> float:
    return step_products(config, batch, np.random.default_rng(0))[1]


def test_the_floor_of_the_reference_network():
    """784-128-64-10: forward and weight gradient of every layer, input gradient of all but the
    first; about 17 GFLOP per epoch of 37,800 rows."""
    pairs = [(784, 128), (128, 64), (64, 10)]
    expected = sum(4 * a * b for a, b in pairs) + sum(2 * a * b for a, b in pairs[1:])
    assert flops(make_config("reference")) == expected
    assert flops(make_config("reference")) * 37800 == pytest.approx(17.2e9, rel=0.01)
    assert flops(make_config("reference"), batch=64) == 64 * expected


def test_the_cnn_floor_counts_every_convolution_of_a_block():
    one = flops(make_config("best", conv_channels=(4, 8)), 2)
    two = flops(make_config("best", conv_channels=(4, 8), convs_per_block=2), 2)
    # per image: conv 1->4 and 4->8 (+ 4->4 at 28x28 and 8->8 at 14x14 with two per block), dense 392->256->10
    dense = 6.0 * (8 * 49 * 256 + 256 * 10)
    first, second = 4.0 * 4 * 9 * 784, 6.0 * 8 * 36 * 196
    assert one / 2 == pytest.approx(first + second + dense)
    assert two / 2 == pytest.approx(first + 6.0 * 4 * 36 * 784 + second + 6.0 * 8 * 72 * 196 + dense)


def test_the_floor_does_the_products_it_counts():
    """Every product the step function runs is counted: the step of the reference network at
    batch 8 writes outputs of exactly the counted shapes."""
    step, counted = step_products(make_config("reference", hidden=(16,)), 8, np.random.default_rng(0))
    shapes = [(left.shape, right.shape) for left, right, _ in step.calls]
    assert shapes == [
        ((8, 784), (784, 16)),
        ((784, 8), (8, 16)),
        ((8, 16), (16, 10)),
        ((16, 8), (8, 10)),
        ((8, 10), (10, 16)),
    ]
    assert counted == 2.0 * (2 * 8 * 784 * 16 + 3 * 8 * 16 * 10)
    step()
    assert all(
        np.isfinite(out).all() and out.shape == (left.shape[0], right.shape[1])
        for left, right, out in step.calls
    )


def test_time_epochs_reports_the_ratio_of_what_it_measured(competition):
    from kit.data.load import load_train
    from kit.data.split import to_float

    dataset = load_train(competition / "train.csv")
    x, y = to_float(dataset.x), dataset.y.astype(np.int64)
    config = make_config("reference", hidden=(16,), batch_size=32)
    result = time_epochs(config, x, y, epochs=2)
    assert len(result["epoch_seconds"]) == 2 and len(result["floor_seconds"]) == 2
    assert result["n_batches"] == math.ceil(len(x) / 32)
    assert result["flops_per_epoch"] == flops(config, 32) * result["n_batches"]
    medians = statistics.median(result["epoch_seconds"]), statistics.median(result["floor_seconds"])
    assert result["ratio"] == pytest.approx(medians[0] / medians[1])
    assert time_epochs(config, x, y, epochs=1, threads=1)["blas_threads"] == 1


@pytest.mark.slow
def test_speed_part_writes_its_table(competition, tmp_path, capsys):
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / PEER_RECORD).write_text(
        json.dumps(
            {  # as tools/cnn_race.py --record writes it
                "measured": "2026-11-29T03:00:00+00:00",
                "machine": {"cpu": "Some CPU"},
                "rows": 6400,
                "torch": "2.13.0+cpu",
                "torch_threads": 2,
                "rounds": [{}, {}, {}],
                "median_kit_over_torch": 1.23,
                "median_kit_over_floor": 2.5,
            }
        )
    )
    speed = run_bench("speed", competition / "train.csv", tmp_path / "bench", speed_sizes=TINY)["speed"]
    text = (tmp_path / "bench" / "speed.md").read_text()
    assert text in capsys.readouterr().out
    for fragment in (
        "CPU:",
        "BLAS",
        "kernel",
        "float32 GEMM",
        "× floor",
        "cache",
        "rows/s",
        "peak RSS",
        "first batch",
        "PyTorch 2.13.0+cpu",
        "on 2026-11-29, Some CPU",
        "kit/PyTorch **1.23×**",
    ):
        assert fragment in text, fragment
    stored = json.loads((tmp_path / "bench" / "speed.json").read_text())
    assert [run["label"] for run in stored["epochs"]] == [run["label"] for run in speed["epochs"]]
    for run in stored["epochs"]:  # every epoch row of the table is the JSON's own median and ratio
        assert (
            f"{statistics.median(run['epoch_seconds']):.3f} (" in text
            and f"{run['ratio']:.2f}× floor" in text
        )
    footprint = speed["footprint"]
    assert 30 < footprint["peak_rss_mb"] < 4000  # a real process's peak, not 0 or NaN
    assert 0 < footprint["first_batch_seconds"] < footprint["wall_seconds"]
    assert speed["predict"]["runs"][0]["rows"] == 40  # test.csv next to train.csv


@pytest.mark.slow
def test_accuracy_part_writes_its_table(competition, tmp_path):
    results = run_bench(
        "accuracy",
        competition / "train.csv",
        tmp_path / "bench",
        seeds=3,
        presets="reference,default,best",
        accuracy_epochs=1,
    )
    runs = results["accuracy"]["runs"]
    assert [(r["preset"], r["seed"]) for r in runs] == [
        ("reference", 0),
        ("default", 0),
        ("default", 1),
        ("default", 2),
        ("best", 0),
        ("best", 1),
    ]
    assert all(r["best_epoch"] == 1 and r["epochs"] == 1 for r in runs)
    text = (tmp_path / "bench" / "accuracy.md").read_text()
    default = [r["val_accuracy"] for r in runs if r["preset"] == "default"]
    assert f"{statistics.mean(default):.4f} ± {statistics.stdev(default):.4f}" in text and "3 seeds" in text
    assert "| reference | 1 |" in text and f"{runs[0]['val_accuracy']:.4f} (seed 0)" in text
    # one epoch on 200 rows is far from the target, and the table says so
    assert "mean ≥ 0.996 over 2 seeds, each ≤ 900 s: **not met**" in text


def test_bench_refuses_a_missing_file_a_part_and_a_preset_in_one_line(tmp_path, competition):
    with pytest.raises(KitError, match="nope.csv: file not found; run `make data` first"):
        run_bench("speed", tmp_path / "nope.csv", tmp_path)
    with pytest.raises(KitError, match="PART=fast: choose one of speed, accuracy"):
        run_bench("fast", competition / "train.csv", tmp_path)
    with pytest.raises(KitError, match="unknown preset 'nonsense'"):
        run_bench("accuracy", competition / "train.csv", tmp_path, seeds=1, presets="reference,nonsense")
    assert not (tmp_path / "accuracy.md").exists()  # refused before an hour of training
