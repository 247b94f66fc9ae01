"""Optimisers against straightforward reference updates written from the papers' formulas, and
every learning-rate schedule at its landmarks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kit.nn.optim import OPTIMIZERS, FlatParameters
from kit.nn.schedules import SCHEDULES

LRS = [0.1, 0.05, 0.02, 0.08]  # a different rate every step, as a schedule would give
WD = 0.1
MU = 0.9


def reference_sgd(params, grads, decays, lr, state):
    for p, g, d in zip(params, grads, decays):
        p -= lr * (g + WD * p * d)


def reference_momentum(params, grads, decays, lr, state, nesterov=False):
    vs = state.setdefault("v", [np.zeros_like(p) for p in params])
    for p, g, d, v in zip(params, grads, decays, vs):
        g = g + WD * p * d
        v[...] = MU * v + g
        p -= lr * (g + MU * v) if nesterov else lr * v


def reference_nesterov(params, grads, decays, lr, state):
    reference_momentum(params, grads, decays, lr, state, nesterov=True)


def reference_adam(params, grads, decays, lr, state, decoupled=False):
    b1, b2, eps = MU, 0.999, 1e-8
    state["t"] = t = state.get("t", 0) + 1
    ms = state.setdefault("m", [np.zeros_like(p) for p in params])
    vs = state.setdefault("v", [np.zeros_like(p) for p in params])
    for p, g, d, m, v in zip(params, grads, decays, ms, vs):
        if decoupled:
            p *= 1 - lr * WD * d  # AdamW: decay the weights directly, not through the gradient
        else:
            g = g + WD * p * d
        m[...] = b1 * m + (1 - b1) * g
        v[...] = b2 * v + (1 - b2) * g * g
        m_hat = m / (1 - b1**t)
        v_hat = v / (1 - b2**t)
        p -= lr * m_hat / (np.sqrt(v_hat) + eps)


def reference_adamw(params, grads, decays, lr, state):
    reference_adam(params, grads, decays, lr, state, decoupled=True)


REFERENCES = {
    "sgd": reference_sgd,
    "momentum": reference_momentum,
    "nesterov": reference_nesterov,
    "adam": reference_adam,
    "adamw": reference_adamw,
}


def test_every_optimizer_has_a_reference():
    assert set(OPTIMIZERS) == set(REFERENCES)


def flat(params, decays):
    """A FlatParameters of these arrays -> (store, value views, grad views) in the given order."""
    store = FlatParameters([(str(i), p, d) for i, (p, d) in enumerate(zip(params, decays))])
    keys = [str(i) for i in range(len(params))]
    return store, [store.value(k) for k in keys], [store.grad(k) for k in keys]


def make_problem(seed=0):
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal((3, 4)), rng.standard_normal(4), rng.standard_normal((2, 2))]
    decays = [True, False, True]
    grad_steps = [[rng.standard_normal(p.shape) for p in params] for _ in LRS]
    return params, decays, grad_steps


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_optimizer_matches_reference(name):
    params, decays, grad_steps = make_problem()
    store, ours, grads = flat(params, decays)  # decayed arrays move first in memory; results must not care
    opt = OPTIMIZERS[name](store, weight_decay=WD, momentum=MU)
    ref = [p.copy() for p in params]
    state: dict = {}
    for lr, step_grads in zip(LRS, grad_steps):
        for g, new in zip(grads, step_grads):
            g[...] = new  # the optimiser may scribble on its gradients; the network refills them
        opt.step(lr)
        REFERENCES[name](ref, step_grads, decays, lr, state)
        for a, b in zip(ours, ref):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    # and it really moved
    assert not np.allclose(ours[0], params[0])


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_no_decay_slots_are_not_decayed(name):
    """With zero gradients only weight decay moves a parameter: decay=True slots shrink, decay=False stay."""
    store, (b, w), _ = flat([np.ones(3), np.ones((2, 3))], [False, True])
    opt = OPTIMIZERS[name](store, weight_decay=0.5, momentum=MU)
    for _ in range(3):
        store.grads[...] = 0
        opt.step(0.1)
    np.testing.assert_array_equal(b, 1.0)
    assert np.all(w < 1.0)


def test_adamw_decay_is_decoupled_from_the_gradient_scale():
    """AdamW: one step with zero gradient shrinks weights by exactly (1 - lr wd); Adam's coupled
    L2 instead goes through the normalisation and moves them by about lr."""
    store, (w,), _ = flat([np.full(3, 2.0)], [True])
    opt = OPTIMIZERS["adamw"](store, weight_decay=0.01, momentum=MU)
    opt.step(0.1)
    np.testing.assert_allclose(w, 2.0 * (1 - 0.1 * 0.01))
    store, (w2,), _ = flat([np.full(3, 2.0)], [True])
    opt = OPTIMIZERS["adam"](store, weight_decay=0.01, momentum=MU)
    opt.step(0.1)
    np.testing.assert_allclose(w2, 2.0 - 0.1, rtol=1e-6)


def test_nesterov_differs_from_momentum():
    params, decays, grad_steps = make_problem(1)
    finals = {}
    for name in ("momentum", "nesterov"):
        store, ps, gs = flat(params, decays)
        opt = OPTIMIZERS[name](store, weight_decay=0.0, momentum=MU)
        for lr, step_grads in zip(LRS, grad_steps):
            for g, new in zip(gs, step_grads):
                g[...] = new
            opt.step(lr)
        finals[name] = ps[0]
    assert not np.allclose(finals["momentum"], finals["nesterov"])


def test_gradient_clipping_limits_the_global_norm():
    rng = np.random.default_rng(2)
    store, (a, b), (grad_a, grad_b) = flat([np.zeros((3, 3)), np.zeros(5)], [True, False])
    ga, gb = rng.standard_normal((3, 3)) * 10, rng.standard_normal(5) * 10
    grad_a[...], grad_b[...] = ga, gb
    norm = math.sqrt(float((ga**2).sum() + (gb**2).sum()))
    opt = OPTIMIZERS["sgd"](store, grad_clip=1.0)
    opt.step(1.0)
    step_norm = math.sqrt(float((a**2).sum() + (b**2).sum()))
    assert step_norm == pytest.approx(1.0, rel=1e-12)
    np.testing.assert_allclose(a, -ga / norm, rtol=1e-12)  # the direction is kept
    # below the threshold nothing changes
    store, (a2,), (g2,) = flat([np.zeros(2)], [True])
    g2[...] = [0.3, 0.4]
    opt = OPTIMIZERS["sgd"](store, grad_clip=1.0)
    opt.step(1.0)
    np.testing.assert_allclose(a2, [-0.3, -0.4])


# --------------------------------------------------------------------------- schedules

BASE, EPOCHS = 0.1, 10


def test_every_schedule_has_a_test_of_its_own():
    """A schedule added to the registry without a test_<name> function below fails here."""
    untested = [name for name in SCHEDULES if not any(n.startswith(f"test_{name}") for n in globals())]
    assert not untested


def test_constant():
    s = SCHEDULES["constant"](BASE, EPOCHS)
    assert [s.lr(p) for p in (0, 5, 10)] == [BASE] * 3


def test_step():
    s = SCHEDULES["step"](BASE, EPOCHS)
    assert s.lr(0) == BASE
    assert s.lr(4.99) == BASE
    assert s.lr(5) == pytest.approx(BASE * 0.1)
    assert s.lr(7.5) == pytest.approx(BASE * 0.01)
    assert s.lr(10) == pytest.approx(BASE * 0.01)


def test_cosine():
    s = SCHEDULES["cosine"](BASE, EPOCHS)
    assert s.lr(0) == pytest.approx(BASE)
    assert s.lr(5) == pytest.approx(BASE / 2)
    assert s.lr(10) == pytest.approx(0, abs=1e-15)
    values = [s.lr(p) for p in np.linspace(0, 10, 41)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_warmup_cosine():
    s = SCHEDULES["warmup_cosine"](BASE, EPOCHS, warmup_epochs=2)
    assert s.lr(0) == 0
    assert s.lr(1) == pytest.approx(BASE / 2)  # linear ramp
    assert s.lr(0.5) == pytest.approx(BASE / 4)
    assert s.lr(2) == pytest.approx(BASE)  # peak at the end of warm-up
    assert s.lr(6) == pytest.approx(BASE / 2)  # half-way through the cosine
    assert s.lr(10) == pytest.approx(0, abs=1e-15)
    # without warm-up it is the plain cosine
    plain, cosine = SCHEDULES["warmup_cosine"](BASE, EPOCHS), SCHEDULES["cosine"](BASE, EPOCHS)
    for p in (0, 2.5, 7):
        assert plain.lr(p) == pytest.approx(cosine.lr(p))


def test_onecycle():
    s = SCHEDULES["onecycle"](BASE, EPOCHS)
    assert s.lr(0) == pytest.approx(BASE / 25)
    assert s.lr(3) == pytest.approx(BASE)  # the peak, at 30%
    assert s.lr(10) == pytest.approx(BASE / 1e4)
    grid = np.linspace(0, 10, 201)
    values = [s.lr(p) for p in grid]
    assert grid[int(np.argmax(values))] == pytest.approx(3, abs=0.05)
    assert max(values) <= BASE * (1 + 1e-12)
    rising, falling = values[:60], values[61:]
    assert all(a <= b for a, b in zip(rising, rising[1:]))
    assert all(a >= b for a, b in zip(falling, falling[1:]))


def test_plateau_halves_after_patience():
    s = SCHEDULES["plateau"](BASE, EPOCHS)
    for loss in (1.0, 0.9, 0.8):  # improving: unchanged
        s.end_epoch(loss)
        assert s.lr(0) == BASE
    # patience is 2: two epochs without a lower loss are tolerated, the third halves the rate
    s.end_epoch(0.85)
    s.end_epoch(0.80005)  # not lower by more than 1e-4: counts as no improvement
    assert s.lr(0) == BASE
    s.end_epoch(0.9)
    assert s.lr(0) == pytest.approx(BASE / 2)
    # the count starts again after a reduction
    s.end_epoch(0.9)
    s.end_epoch(0.9)
    assert s.lr(0) == pytest.approx(BASE / 2)
    s.end_epoch(0.9)
    assert s.lr(0) == pytest.approx(BASE / 4)
    # an improvement resets the count
    s.end_epoch(0.5)
    s.end_epoch(0.6)
    s.end_epoch(0.6)
    assert s.lr(0) == pytest.approx(BASE / 4)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_a_step_in_slices_equals_the_whole_step(name):
    """kit.nn.replicas' threads update shares of the flat vector at once, in any order: the same
    numbers as one whole step."""

    def run(parts):
        rng = np.random.default_rng(0)
        params = FlatParameters(
            [("0.w", rng.standard_normal((5, 7)), True), ("0.b", rng.standard_normal(7), False)]
        )
        optimizer = OPTIMIZERS[name](params, weight_decay=0.1, momentum=0.9, grad_clip=1.0)
        for _ in range(3):
            params.grads[...] = rng.standard_normal(params.grads.shape)
            if parts == 1:
                optimizer.step(0.01)
            else:
                optimizer.start_step(0.01)
                for k in reversed(range(parts)):
                    optimizer.update_share(0.01, k, parts)
        return params.values

    np.testing.assert_array_equal(run(1), run(3))
