"""The BLAS thread rule, measured: one epoch of the reference network (784-128-64-10, SGD,
batch 64) through the kit's Trainer with 1 and with all BLAS threads, and the same epoch as a
plain float32 NumPy loop (the notebook's, ~40 lines), interleaved so that all see the same load.

    .venv/bin/python tools/thread_rule.py [--rounds 5] [--train data/train.csv] [--preset reference]

Prints seconds per epoch (median and range) and each ratio to the kit with all threads.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from threadpoolctl import threadpool_limits

from kit.config import make_config
from kit.core.blas import usable_cores
from kit.data.load import load_train
from kit.data.split import split_rows
from kit.run.trainer import Trainer


def plain_epoch(
    x: np.ndarray,
    y: np.ndarray,
    params: list[np.ndarray],
    rng: np.random.Generator,
    batch: int = 64,
    lr: float = 0.01,
) -> None:
    """One epoch of the notebook's network written plainly: ReLU MLP, softmax cross-entropy, SGD."""
    w1, b1, w2, b2, w3, b3 = params
    order = rng.permutation(len(x))
    for start in range(0, len(x), batch):
        idx = order[start : start + batch]
        xb, yb = x[idx], y[idx]
        h1 = np.maximum(xb @ w1 + b1, 0)
        h2 = np.maximum(h1 @ w2 + b2, 0)
        logits = h2 @ w3 + b3
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        p[np.arange(len(yb)), yb] -= 1
        g3 = p / len(yb)
        g2 = (g3 @ w3.T) * (h2 > 0)
        g1 = (g2 @ w2.T) * (h1 > 0)
        w3 -= lr * (h2.T @ g3)
        b3 -= lr * g3.sum(axis=0)
        w2 -= lr * (h1.T @ g2)
        b2 -= lr * g2.sum(axis=0)
        w1 -= lr * (xb.T @ g1)
        b1 -= lr * g1.sum(axis=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", default="data/train.csv")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--preset", default="reference", help="the kit's network (the plain loop is always the reference)"
    )
    args = parser.parse_args()
    config = make_config(args.preset)
    dataset = load_train(args.train)
    x, y, *_ = split_rows(dataset.x, dataset.y, config.val_fraction, seed=0)
    rng = np.random.default_rng(1)
    sizes = [784, 128, 64, 10]
    params = []
    for n_in, n_out in zip(sizes, sizes[1:]):
        params += [
            (rng.standard_normal((n_in, n_out)) * np.sqrt(2 / n_in)).astype(np.float32),
            np.zeros(n_out, dtype=np.float32),
        ]
    cores = usable_cores()
    kit_trainers = {t: Trainer(config, x.shape[1], 1000, np.random.default_rng(2)) for t in (1, cores)}
    times: dict[str, list[float]] = {}
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for round_ in range(args.rounds + 1):  # round 0 warms up
            for threads in (1, cores):
                with threadpool_limits(limits=threads, user_api="blas"):
                    started = time.perf_counter()
                    kit_trainers[threads].train_epoch(round_ + 1, x, y)
                    kit_seconds = time.perf_counter() - started
                    started = time.perf_counter()
                    plain_epoch(x, y, params, rng)
                    plain_seconds = time.perf_counter() - started
                if round_:
                    times.setdefault(f"kit {args.preset}, {threads} thread(s)", []).append(kit_seconds)
                    times.setdefault(f"plain loop (reference), {threads} thread(s)", []).append(plain_seconds)
    base = statistics.median(times[f"kit {args.preset}, {cores} thread(s)"])
    print(
        f"{len(x)} rows per epoch, {args.rounds} interleaved rounds, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )
    for name, values in times.items():
        median = statistics.median(values)
        print(
            f"  {name:<34} {median:.3f} s/epoch ({min(values):.3f}-{max(values):.3f})  "
            f"{median / base:.2f}x the kit with {cores} threads"
        )


if __name__ == "__main__":
    main()
