"""The gradient checker the layer tests share: every gradient (input and parameters) against
central finite differences in float64."""

from __future__ import annotations

import numpy as np

from kit.nn import layers as L

F64 = np.float64
EPS = 1e-5
TOL = 1e-7  # relative to the largest gradient entry (float64 central differences: ~1e-10 is typical)


def run_chain(chain: list[L.Layer], x: np.ndarray, before=None) -> np.ndarray:
    """Forward a copy of x through the layers in training mode; return a copy of the output.

    `before` runs first on every call (e.g. to reseed dropout so every evaluation draws the
    same mask). Copies matter: layers work in place on their inputs and reuse output buffers.
    """
    if before:
        before()
    h = x.copy()
    for layer in chain:
        h = layer.forward(h, True)
    return np.array(h, copy=True)


def objective(chain, x, r, before=None) -> float:
    return float(np.sum(run_chain(chain, x, before) * r))


def numeric_grad(f, array: np.ndarray) -> np.ndarray:
    """Central differences of the scalar f() with respect to every entry of `array` (changed in place)."""
    grad = np.zeros_like(array)
    flat, gflat = array.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + EPS
        up = f()
        flat[i] = old - EPS
        down = f()
        flat[i] = old
        gflat[i] = (up - down) / (2 * EPS)
    return grad


def assert_close(analytic: np.ndarray, numeric: np.ndarray, what: str, zero_ok: bool = False) -> None:
    assert analytic.shape == numeric.shape, what
    scale = max(1.0, float(np.abs(numeric).max()))
    err = float(np.abs(analytic - numeric).max()) / scale
    assert err < TOL, f"{what}: relative error {err:.2e}"
    if not zero_ok:
        assert np.abs(numeric).max() > 1e-3, f"{what}: the check saw no gradient at all"


def check_gradients(
    chain: list[L.Layer],
    x: np.ndarray,
    seed: int = 0,
    before=None,
    input_grad: bool = True,
    zero_ok: frozenset = frozenset(),
):
    """Compare backward's input gradient and every parameter gradient of every layer in the
    chain with finite differences of sum(forward(x) * R) for a fixed random R. `zero_ok` names
    (layer index, parameter) pairs whose gradient is legitimately zero."""
    rng = np.random.default_rng(seed)
    out = run_chain(chain, x, before)
    r = rng.standard_normal(out.shape)
    # analytic: one forward, then backward
    run_chain(chain, x, before)
    grad = r.copy()
    for layer in reversed(chain):
        grad = layer.backward(grad)
        if grad is None:
            break
    analytic_in = None if grad is None else np.array(grad, copy=True)
    analytic_params = {(i, k): g.copy() for i, layer in enumerate(chain) for k, g in layer.grads.items()}

    f = lambda: objective(chain, x, r, before)  # noqa: E731
    if input_grad:
        assert analytic_in is not None, "backward returned None where an input gradient was expected"
        x = x.copy()
        f = lambda: objective(chain, x, r, before)  # noqa: E731
        assert_close(analytic_in, numeric_grad(f, x), "input gradient")
    for (i, name), g in analytic_params.items():
        assert_close(
            g,
            numeric_grad(f, chain[i].params[name]),
            f"layer {i} ({type(chain[i]).__name__}) {name}",
            zero_ok=(i, name) in zero_ok,
        )
    return analytic_in


def away_from_zero(rng, shape, margin=0.05) -> np.ndarray:
    """Normal values with |v| >= margin, so no kink (ReLU) lies within a finite-difference step."""
    v = rng.standard_normal(shape)
    return np.where(np.abs(v) < margin, np.sign(v + 1e-12) * margin * 2, v)


def distinct(rng, shape, spacing=0.01) -> np.ndarray:
    """Values all at least `spacing` apart (no max-pool near-ties within a step)."""
    n = int(np.prod(shape))
    return (rng.permutation(n) * spacing - n * spacing / 2).reshape(shape).astype(F64)
