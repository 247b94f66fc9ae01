"""Where one training epoch's time goes, part by part: batch gather, each layer's forward and
backward, the loss, the optimiser. For work on the speed of the training step (issues 4, 12).

    .venv/bin/python tools/profile_step.py                      # reference preset, BLAS as set
    OPENBLAS_NUM_THREADS=1 .venv/bin/python tools/profile_step.py
    .venv/bin/python tools/profile_step.py --preset default --epochs 3
    .venv/bin/python tools/profile_step.py --preset best --rows 6400 --epochs 2   # the CNN, < 1 min
    .venv/bin/python tools/profile_step.py --preset best --rows 6400 --threads 1 --clock cpu
    .venv/bin/python tools/profile_step.py --preset best --rows 3200 --batch 64 --threads 1   # one replica

The parts are those of one network on the whole batch; with two or more BLAS threads a CNN
trains as replicas (kit.nn.replicas), each one thread on a part of the batch, which the last
line (Trainer.train_epoch) includes.

Prints milliseconds per epoch for each part (the minimum over --epochs epochs after one warm-up
epoch), the same per step, and, for comparison, the same epoch through Trainer.train_epoch.
--rows takes the first rows of the training split only (a CNN epoch of all 37,800 rows takes
most of a minute); augmentation is always off. The timers add about a microsecond per part
and step.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

from kit.config import make_config
from kit.core.blas import limit_blas
from kit.data.load import load_train
from kit.data.split import split_rows
from kit.run.trainer import Trainer


def profile_epoch(
    trainer: Trainer, x: np.ndarray, y: np.ndarray, rng: np.random.Generator, clock=time.perf_counter
) -> dict[str, float]:
    """Seconds per part over one epoch of the trainer's step, without augmentation."""
    network, optimizer, batch = trainer.network, trainer.optimizer, trainer.config.batch_size
    parts: dict[str, float] = {}
    order = rng.permutation(len(x))
    y_order = y[order]
    buffer = np.empty((batch, x.shape[1]), dtype=np.float32)
    for start in range(0, len(x) - batch + 1, batch):
        t0 = clock()
        h = np.take(x, order[start : start + batch], axis=0, out=buffer, mode="clip")
        parts["gather batch"] = parts.get("gather batch", 0.0) + clock() - t0
        for i, layer in enumerate(network.layers):
            t0 = clock()
            h = layer.forward(h, True)
            key = f"forward {i} {type(layer).__name__}"
            parts[key] = parts.get(key, 0.0) + clock() - t0
        t0 = clock()
        network.loss_fn.forward(h, y_order[start : start + batch])
        grad = network.loss_fn.backward()
        parts["loss forward+backward"] = parts.get("loss forward+backward", 0.0) + clock() - t0
        for i in reversed(range(len(network.layers))):
            layer = network.layers[i]
            t0 = clock()
            grad = layer.backward(grad)
            key = f"backward {i} {type(layer).__name__}"
            parts[key] = parts.get(key, 0.0) + clock() - t0
            if grad is None:
                break
        t0 = clock()
        optimizer.step(trainer.config.lr)
        parts["optimiser step"] = parts.get("optimiser step", 0.0) + clock() - t0
    return parts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", default="data/train.csv")
    parser.add_argument("--preset", default="reference")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rows", type=int, default=0, help="use only this many training rows (0: all)")
    parser.add_argument("--threads", type=int, default=0, help="BLAS threads (0: as the process is set)")
    parser.add_argument(
        "--batch",
        type=int,
        default=0,
        help="batch size instead of the preset's (a CNN replica's part: --batch 64 --threads 1)",
    )
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="cpu: this process's CPU time, which other processes' load barely changes "
        "(meaningful with --threads 1 only: BLAS threads that spin count too)",
    )
    args = parser.parse_args()
    config = make_config(args.preset, augment=False, batch_size=args.batch or None)
    dataset = load_train(args.train)
    x, y, *_ = split_rows(dataset.x, dataset.y, config.val_fraction, seed=0)
    if args.rows:
        x, y = x[: args.rows], y[: args.rows]
    with limit_blas(args.threads):
        trainer = Trainer(config, x.shape[1], config.epochs, np.random.default_rng(0))
        rng = np.random.default_rng(1)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            clock = time.process_time if args.clock == "cpu" else time.perf_counter
            profile_epoch(trainer, x, y, rng, clock)  # warm-up: buffers allocated, caches filled
            runs = [profile_epoch(trainer, x, y, rng, clock) for _ in range(args.epochs)]
            whole = []
            for _ in range(args.epochs):
                started = clock()
                trainer.train_epoch(2, x, y)
                whole.append(clock() - started)
    steps = len(x) // config.batch_size
    print(
        f"{args.preset}: {len(x)} rows, batch {config.batch_size}, {steps} steps; "
        f"min of {args.epochs} epochs, {args.clock} clock: ms per epoch, ms per step"
    )
    for key in runs[0]:
        best = min(r[key] for r in runs) * 1e3
        print(f"  {key:<28} {best:8.1f} {best / steps:8.3f}")
    total = min(sum(r.values()) for r in runs) * 1e3
    print(f"  {'sum of parts':<28} {total:8.1f} {total / steps:8.3f}")
    epoch = min(whole) * 1e3
    print(f"  {'Trainer.train_epoch':<28} {epoch:8.1f} {epoch / math.ceil(len(x) / config.batch_size):8.3f}")


if __name__ == "__main__":
    main()
