"""`make bench` and parallel training, on tiny generated data: the functions run, the tables and
files come out, the numbers are well-formed. No timing is asserted (timings belong to the
bench, not to a test suite that must pass on any machine under any load)."""

from __future__ import annotations

import argparse
import json
import math

import numpy as np
import pytest

from kit.bench import speed as bench
from kit.config import make_config
from kit.core.blas import threads_per_job, usable_cores
from kit.nn.optim import OPTIMIZERS
from kit.run.model import Model
from kit.run.parallel import run_many
from synthetic import write_competition

TINY = bench.SpeedSizes(epochs=2, gemm_side=32, repeats=2, parse_repeats=1, rss_epochs=1)


@pytest.fixture(scope="module")
def competition(tmp_path_factory):
    return write_competition(tmp_path_factory.mktemp("bench-data"), n_train=200, n_test=40)


def test_step_flops_of_the_reference_network():
    # 784-128-64-10 at 37,800 rows: about 17 GFLOP per epoch
    per_epoch = bench.step_flops([784, 128, 64, 10], 1) * 37800
    assert per_epoch == pytest.approx(17.2e9, rel=0.01)
    assert bench.layer_sizes(make_config("reference")) == [784, 128, 64, 10]
    assert bench.layer_sizes(make_config("best")) is None  # a CNN: no floor


@pytest.mark.slow
def test_the_cnn_floor_counts_every_convolution_of_a_block():
    one = bench.cnn_products(make_config("best", conv_channels=(4, 8)), 2, np.random.default_rng(0))[1]
    two = bench.cnn_products(
        make_config("best", conv_channels=(4, 8), convs_per_block=2), 2, np.random.default_rng(0)
    )[1]
    # per image: conv 1->4 and 4->8 (+ 4->4 at 28x28 and 8->8 at 14x14 with two per block), dense 392->256->10
    dense = 6.0 * (8 * 49 * 256 + 256 * 10)
    first, second = 4.0 * 4 * 9 * 784, 6.0 * 8 * 36 * 196
    assert one / 2 == pytest.approx(first + second + dense)
    assert two / 2 == pytest.approx(first + 6.0 * 4 * 36 * 784 + second + 6.0 * 8 * 72 * 196 + dense)


def test_time_epochs_reports_a_ratio(competition):
    from kit.data.load import load_train
    from kit.data.split import to_float

    dataset = load_train(competition / "train.csv")
    x, y = to_float(dataset.x), dataset.y.astype(np.int64)
    result = bench.time_epochs(make_config("reference", hidden=(16,), batch_size=32), x, y, epochs=2)
    assert len(result["epoch_seconds"]) == 2 and len(result["floor_seconds"]) == 2
    assert result["n_batches"] == math.ceil(len(x) / 32)
    assert result["ratio"] > 0
    one_thread = bench.time_epochs(
        make_config("reference", hidden=(16,), batch_size=32), x, y, epochs=1, threads=1
    )
    assert one_thread["blas_threads"] == 1


@pytest.mark.slow
def test_speed_part_writes_its_table(competition, tmp_path, capsys):
    args = argparse.Namespace(
        train=str(competition / "train.csv"),
        part="speed",
        seeds=1,
        presets="reference",
        out=str(tmp_path / "bench"),
    )
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / bench.PEER_RECORD).write_text(
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
    results = bench.run_bench(args, TINY)
    speed = results["speed"]
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
    assert stored["load"]["speedup"] > 0
    assert [run["label"] for run in stored["epochs"]] == [run["label"] for run in speed["epochs"]]
    footprint = speed["footprint"]
    assert footprint["peak_rss_mb"] > 10 and footprint["first_batch_seconds"] > 0
    assert speed["predict"]["runs"][0]["rows"] == 40  # test.csv next to train.csv


@pytest.mark.slow
def test_accuracy_part_writes_its_table(competition, tmp_path):
    args = argparse.Namespace(
        train=str(competition / "train.csv"),
        part="accuracy",
        seeds=3,
        presets="reference,default,best",
        out=str(tmp_path / "bench"),
    )
    results = bench.run_bench(args, accuracy_epochs=1)
    runs = results["accuracy"]["runs"]
    assert [(r["preset"], r["seed"]) for r in runs] == [
        ("reference", 0),
        ("default", 0),
        ("default", 1),
        ("default", 2),
        ("best", 0),
        ("best", 1),
    ]
    assert all(0 <= r["val_accuracy"] <= 1 and r["best_epoch"] == 1 for r in runs)
    text = (tmp_path / "bench" / "accuracy.md").read_text()
    assert "| reference | 1 |" in text and "3 seeds" in text and "±" in text
    # one epoch on 200 rows is far from the target, and the table says so
    assert "mean ≥ 0.996 over 2 seeds, each ≤ 900 s: **not met**" in text


def test_bench_refuses_a_missing_file_and_an_unknown_preset(tmp_path, competition):
    from kit.core.errors import KitError

    with pytest.raises(KitError, match="make data"):
        bench.run_bench(
            argparse.Namespace(
                train=str(tmp_path / "nope.csv"),
                part="speed",
                seeds=1,
                presets="reference",
                out=str(tmp_path),
            )
        )
    with pytest.raises(KitError, match="unknown preset"):
        bench.run_bench(
            argparse.Namespace(
                train=str(competition / "train.csv"),
                part="accuracy",
                seeds=1,
                presets="reference,nonsense",
                out=str(tmp_path),
            )
        )


@pytest.mark.slow
def test_run_many_trains_two_configs_in_parallel(competition, tmp_path):
    # the same preset and seed: the two runs would get the same name in the same second
    configs = [
        make_config("reference", hidden=(16,), epochs=2, seed=3),
        make_config("reference", hidden=(16,), epochs=2, seed=3, lr=0.05),
    ]
    outcomes = run_many(configs, competition / "train.csv", tmp_path / "models", n_jobs=2)
    run_dirs = [o.run_dir for o in outcomes]
    assert len(set(run_dirs)) == 2
    for config, outcome in zip(configs, outcomes):
        assert outcome.run_dir.parent == tmp_path / "models"
        assert outcome.blas_threads == [threads_per_job(2)]  # each process held to its share of the cores
        model = Model.load(outcome.run_dir / "model.npz")
        assert model.config.lr == config.lr
        assert model.meta["run_id"] == outcome.run_dir.name
        assert "validation accuracy" in outcome.log
    assert (tmp_path / "models" / "latest").resolve() == run_dirs[-1].resolve()
    assert not list((tmp_path / "models").glob(".parallel-*"))  # private folders cleaned up

    # in order, and a parallel run gives the weights a run alone gives
    alone = run_many([configs[1]], competition / "train.csv", tmp_path / "alone", n_jobs=1)
    a = Model.load(alone[0].run_dir / "model.npz").members[0].state()
    b = Model.load(run_dirs[1] / "model.npz").members[0].state()
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=1e-5, atol=1e-6)


def test_thread_shares_never_exceed_the_cores(monkeypatch):
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    cores = usable_cores()
    assert threads_per_job(1) == cores
    assert threads_per_job(cores) == 1
    assert threads_per_job(10 * cores) == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert threads_per_job(1) == 1  # the user's own limit is kept


def test_flat_parameters_keep_values_and_a_step_moves_every_layer():
    """The network's parameters live in one flat vector (decayed weights first); one SGD step
    through the network must move each layer's own arrays by -lr * its own gradient."""
    from kit.run.model import build_network

    config = make_config("reference", hidden=(16, 8))
    network = build_network(config, np.random.default_rng(5))
    store = network.parameters
    assert (
        store.n_decayed == 784 * 16 + 16 * 8 + 8 * 10 and store.values.size == store.n_decayed + 16 + 8 + 10
    )
    # the same draws as an unpacked network: flattening moves values, it does not change them
    rng = np.random.default_rng(5)
    np.testing.assert_array_equal(
        network.layers[0].params["w"],
        (rng.standard_normal((784, 16)) * np.sqrt(2.0 / 784)).astype(np.float32),
    )
    before = [{k: v.copy() for k, v in layer.params.items()} for layer in network.layers]
    x = np.random.default_rng(1).random((8, 784), dtype=np.float32)
    network.gradients(x, np.arange(8) % 10)
    grads = [{k: v.copy() for k, v in layer.grads.items()} for layer in network.layers]
    OPTIMIZERS["sgd"](store).step(0.5)
    for layer, old, grad in zip(network.layers, before, grads):
        for name in layer.params:
            assert np.any(grad[name] != 0), (layer, name)
            np.testing.assert_allclose(layer.params[name], old[name] - 0.5 * grad[name], rtol=1e-6, atol=1e-7)


def test_loss_hands_out_the_predictions_it_computes():
    from kit.nn.losses import SoftmaxCrossEntropy

    rng = np.random.default_rng(1)
    logits = rng.standard_normal((7, 10)).astype(np.float32)
    labels = rng.integers(0, 10, 7)
    predicted = np.full(7, -1, dtype=np.intp)
    loss_fn = SoftmaxCrossEntropy()
    with_out = loss_fn.forward(logits, labels, predicted)
    np.testing.assert_array_equal(predicted, logits.argmax(axis=1))
    assert with_out == SoftmaxCrossEntropy().forward(logits, labels)
    # a NaN logit still gives a NaN loss (the divergence check relies on it)
    logits[2, 4] = np.nan
    with np.errstate(invalid="ignore"):
        assert np.isnan(loss_fn.forward(logits, labels))


@pytest.mark.parametrize("preset", ["reference", "default", "best"])
def test_layers_keep_writing_into_the_packed_buffers(preset):
    """Packing gives the layers views into two flat buffers; a layer that rebinds params[...] or
    grads[...] to a new array would silently stop training. One step of every preset's layer
    kinds (dense, batch norm, conv) must leave every array inside the optimiser's buffers."""
    from kit.run.model import build_network

    config = make_config(preset, hidden=(16,), conv_channels=(4, 8))
    network = build_network(config, np.random.default_rng(0))
    groups = network.parameters.groups()
    x = np.random.default_rng(1).random((8, 784), dtype=np.float32)
    network.gradients(x, np.arange(8) % 10)
    for layer in network.layers:
        for name in layer.params:
            assert any(np.shares_memory(layer.params[name], p) for p, _, _ in groups), (layer, name)
            assert any(np.shares_memory(layer.grads[name], g) for _, g, _ in groups), (layer, name)
    assert any(np.abs(g).max() > 0 for _, g, _ in groups)
