"""kit/nn/network.py and kit/nn/replicas.py, through whole networks as the presets build them:
the gradient of every parameter against central differences in float64, the loss at
initialisation ~ ln 10, the plain step memorising one small batch, learning a task only hidden
layers can solve, the parameters in one flat store, and the data-parallel step equal to the
plain one."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kit.config import PRESETS, make_config
from kit.nn.optim import OPTIMIZERS
from kit.nn.replicas import Replicas
from kit.run.model import Model, build_network
from kit.run.trainer import fit

SMALL = dict(hidden=(6,), conv_channels=(2, 3))  # every layer kind of the preset, few parameters


def small_network(preset: str, dtype=np.float64, **overrides):
    config = make_config(preset, **{**SMALL, **overrides})
    return config, build_network(config, np.random.default_rng(3), dtype=dtype)


def reseed_dropout(network) -> None:
    """Every forward draws the same dropout masks, so the loss is a function of the parameters."""
    for layer in network.layers:
        if hasattr(layer, "rng"):
            layer.rng = np.random.default_rng(11)


def loss_of(network, x, y) -> float:
    reseed_dropout(network)
    return network.loss_fn.forward(network.forward(x, training=True), y)


@pytest.mark.parametrize(
    "preset, overrides", [(name, {}) for name in PRESETS] + [("best", {"convs_per_block": 2})]
)
def test_whole_network_gradient_matches_central_differences(preset, overrides):
    """d loss / d every parameter array of the preset's network (dense, conv, batch norm, dropout,
    label smoothing included), checked at up to 12 entries of each array."""
    config, network = small_network(preset, **overrides)
    rng = np.random.default_rng(0)
    x = rng.random((6, 784))
    y = np.arange(6) % 10
    store = network.parameters
    store.values[store.n_decayed :] += (
        rng.standard_normal(store.values.size - store.n_decayed) * 0.1
    )  # biases off 0
    reseed_dropout(network)
    network.gradients(x, y)
    analytic = store.grads.copy()
    checked = 0
    for key, (start, stop, _) in store.index.items():
        for i in rng.choice(np.arange(start, stop), size=min(12, stop - start), replace=False):
            saved = store.values[i]
            store.values[i] = saved + 1e-6
            up = loss_of(network, x, y)
            store.values[i] = saved - 1e-6
            down = loss_of(network, x, y)
            store.values[i] = saved
            numeric = (up - down) / 2e-6
            assert abs(numeric - analytic[i]) <= 1e-5 * max(1.0, abs(numeric)), (
                preset,
                key,
                i,
                numeric,
                analytic[i],
            )
            checked += 1
    assert checked > 12 * 2 and np.abs(analytic).max() > 1e-3


@pytest.mark.parametrize("preset", list(PRESETS))
def test_loss_at_initialisation_is_about_ln_10(preset):
    _, network = small_network(preset, dtype=np.float32, hidden=(64,), conv_channels=(8, 16))
    x = np.random.default_rng(1).random((256, 784), dtype=np.float32) * 0.3
    loss = network.loss_fn.forward(network.forward(x, training=False), np.arange(256) % 10)
    assert abs(loss - math.log(10)) < 0.5, loss


def test_memorises_one_small_batch():
    """32 rows with arbitrary labels: a working forward/backward/update drives the loss to ~0."""
    config = make_config("reference", hidden=(64,))
    network = build_network(config, np.random.default_rng(0))
    optimizer = OPTIMIZERS["adam"](network.parameters, momentum=0.9)
    rng = np.random.default_rng(2)
    x, y = rng.random((32, 784), dtype=np.float32), rng.integers(0, 10, 32)
    first = network.train_step(x, y, optimizer, 3e-3)
    for _ in range(149):
        network.train_step(x, y, optimizer, 3e-3)
    predicted = np.empty(32, dtype=np.intp)
    last = network.loss_fn.forward(network.forward(x, training=False), y, predicted)
    assert last < 0.05 < first and np.array_equal(predicted, y)


def checkerboard(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Image row 10 carries a uniform value a, row 18 a value b; the label is (a > 0.5) XOR
    (b > 0.5). The other pixels are faint noise. No linear function of the pixels does better
    than chance."""
    rng = np.random.default_rng(seed)
    x = rng.random((n, 784), dtype=np.float32) * 0.05
    a, b = rng.random(n), rng.random(n)
    x[:, 280:308], x[:, 504:532] = a[:, None], b[:, None]
    return x, ((a > 0.5) ^ (b > 0.5)).astype(np.int64)


def test_learns_what_only_hidden_layers_can_learn():
    x_train, y_train = checkerboard(3000, 0)
    x_val, y_val = checkerboard(600, 1)
    config = make_config("reference", hidden=(32, 16), optimizer="adam", lr=3e-3, epochs=15, batch_size=32)
    result = fit(config, x_train, y_train, x_val, y_val, np.random.default_rng(0))
    accuracy = float(np.mean(result.network.predict_proba(x_val).argmax(axis=1) == y_val))
    assert accuracy >= 0.9, accuracy
    from sklearn.linear_model import LogisticRegression  # the same data without hidden layers

    linear = LogisticRegression(max_iter=500).fit(x_train, y_train).score(x_val, y_val)
    assert linear < 0.65, linear


def test_a_replica_computes_with_the_same_weights_and_its_parts_sum_to_the_whole_gradient():
    """kit.nn.replicas' data-parallel step: the batch's gradient equals the sum of its parts'
    gradients, each part's mean taken over the whole batch (without batch norm, which
    normalises each part by itself)."""
    _, network = small_network("best", batch_norm=False, dropout=0.0)
    twin = network.replica()
    rng = np.random.default_rng(4)
    x, y = rng.random((12, 784)), rng.integers(0, 10, 12)
    network.gradients(x, y)
    whole = network.parameters.grads.copy()
    network.gradients(x[:5], y[:5], rows=12)
    twin.gradients(x[5:], y[5:], rows=12)
    assert np.abs(twin.parameters.grads).max() > 1e-3
    np.testing.assert_allclose(network.parameters.grads + twin.parameters.grads, whole, rtol=1e-9, atol=1e-12)
    network.parameters.values *= 0.5  # an optimiser step on the network is one on the replica
    np.testing.assert_array_equal(network.forward(x, training=False), twin.forward(x, training=False))


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_the_replicas_step_is_the_networks_step_on_the_whole_batch(optimizer):
    """Replicas.train_step (two networks, each on half the batch in its own thread, gradients
    summed, one update in two shares) moves the weights as Network.train_step on the whole batch
    does (no batch norm: it normalises each part by itself; no dropout: each replica draws its own
    masks)."""
    config, one = small_network("best", batch_norm=False, dropout=0.0)
    _, two = small_network("best", batch_norm=False, dropout=0.0)
    replicas = Replicas(two, 2)
    rng = np.random.default_rng(6)
    try:
        steppers = [
            OPTIMIZERS[optimizer](net.parameters, weight_decay=0.01, grad_clip=5.0) for net in (one, two)
        ]
        for _ in range(3):
            x, y = rng.random((20, 784)), rng.integers(0, 10, 20)
            predicted_whole, predicted_parts = np.full(20, -1, dtype=np.intp), np.full(20, -1, dtype=np.intp)
            whole = one.train_step(x, y, steppers[0], 0.01, predicted_whole)
            parts = replicas.train_step(x, y, steppers[1], 0.01, predicted_parts)
            assert parts == pytest.approx(whole, rel=1e-12)
            np.testing.assert_array_equal(predicted_parts, predicted_whole)
        before = small_network("best", batch_norm=False)[1].parameters.values
        assert np.abs(one.parameters.values - before).max() > 1e-4  # the steps moved the weights
        np.testing.assert_allclose(two.parameters.values, one.parameters.values, rtol=1e-9, atol=1e-12)
    finally:
        replicas.close()


@pytest.mark.parametrize("rows, parts", [(40, 2), (12, 1), (16, 2), (1, 1)])
def test_replicas_predict_each_part_of_the_rows_as_the_network_predicts_the_whole(rows, parts):
    """Prediction data-parallel over threads (Model, Trainer): the rows cut in parts, never one
    under min_part_rows, each predicted by its own network; the same probabilities as one
    network on all the rows."""
    config, network = small_network("best", dtype=np.float32)
    x = np.random.default_rng(5).random((rows, 784)).astype(np.float32)
    expected = network.predict_proba(x, 16)
    replicas = Replicas(network, 2)
    try:
        assert len(replicas.parts(rows)) == parts
        assert all(
            part.stop - part.start >= min(rows, Replicas.min_part_rows) for part in replicas.parts(rows)
        )
        np.testing.assert_allclose(replicas.predict_proba(x, 16), expected, rtol=1e-5, atol=1e-6)
        model = Model(config, [network])
        np.testing.assert_allclose(model.predict_proba(x, tta=False), expected, rtol=1e-5, atol=1e-6)
    finally:
        replicas.close()


def test_a_model_saved_before_pooling_moved_into_the_convolution_still_loads(tmp_path, monkeypatch):
    """Format 1 had a MaxPool2D layer after a conv block's batch norm; format 2 fuses the pooling
    into the convolution, ahead of batch norm. A format-1 file builds its own order."""
    import kit.run.model as network_module
    from kit.core.errors import KitError
    from kit.run.model import Model

    config = make_config("best", **SMALL, ensemble=1)
    old = build_network(config, np.random.default_rng(3), model_format=1)
    kinds = [type(layer).__name__ for layer in old.layers]
    assert kinds[1:5] == ["Conv2D", "BatchNorm", "MaxPool2D", "ReLU"]
    new = build_network(config, np.random.default_rng(3)).layers
    assert [type(layer).__name__ for layer in new][1:4] == ["Conv2D", "BatchNorm", "ReLU"] and new[
        1
    ].pool == 2
    assert old.layers[1].pool == 1
    x = np.random.default_rng(5).random((40, 784), dtype=np.float32)
    for _ in range(3):  # running averages away from their initial values
        old.forward(x, training=True)
    monkeypatch.setattr(network_module, "MODEL_FORMAT", 1)
    Model(config, [old]).save(tmp_path / "old.npz")
    monkeypatch.undo()
    np.testing.assert_array_equal(
        Model.load(tmp_path / "old.npz").predict_proba(x), Model(config, [old]).predict_proba(x)
    )
    monkeypatch.setattr(network_module, "MODEL_FORMAT", 99)
    Model(config, [old]).save(tmp_path / "new.npz")
    monkeypatch.undo()
    with pytest.raises(KitError, match="model format 99 comes from a newer kit"):
        Model.load(tmp_path / "new.npz")


def test_a_replica_reads_but_never_moves_the_running_averages():
    """Batch norm's running averages come from the first part of each batch only (two threads
    updating one array would race); in evaluation a replica uses them, so it predicts as the
    network does (kit.run.trainer.Trainer.validate splits the validation rows that way)."""
    _, network = small_network("best")
    twin = network.replica()
    x = np.random.default_rng(6).random((10, 784))
    running = {k: v.copy() for k, v in network.state().items() if "running" in k}
    assert running
    twin.forward(x, training=True)
    for key, value in running.items():
        np.testing.assert_array_equal(network.state()[key], value, err_msg=key)
    network.forward(x, training=True)
    assert any(not np.array_equal(network.state()[k], v) for k, v in running.items())
    np.testing.assert_array_equal(twin.forward(x, training=False), network.forward(x, training=False))


def test_flat_parameters_keep_values_and_a_step_moves_every_layer():
    """The network's parameters live in one flat vector (decayed weights first); one SGD step
    through the network must move each layer's own arrays by -lr * its own gradient."""
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


@pytest.mark.parametrize("preset", ["reference", "default", "best"])
def test_layers_keep_writing_into_the_packed_buffers(preset):
    """Packing gives the layers views into two flat buffers; a layer that rebinds params[...] or
    grads[...] to a new array would silently stop training. One step of every preset's layer
    kinds (dense, batch norm, conv) must leave every array inside the optimiser's buffers."""
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
