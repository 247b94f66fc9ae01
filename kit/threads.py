"""How many BLAS threads one training run uses.

Splitting a small matrix product over two cores rarely pays: at batch 64 the products of a
784-128-64-10 network take a few microseconds each, and every elementwise step after them (bias,
ReLU, the optimiser's update) must first pull the half of the result the other core wrote into
its own cache. On some machines that costs more than the second core saves; on others it does
not. So the kit measures instead of guessing: before the first epoch it times a few training
steps of the run's own network with one thread and with all of them, on a throwaway copy, and
trains with the faster (all threads unless one thread wins by more than 5%).

The answer is stored per machine and network shape in `~/.cache/digit-kit/blas-threads.json`
(under $XDG_CACHE_HOME when set), so the same command on the same machine always picks the same count; results with 1 and 2 threads can
differ in the last bit, and the same seed must give the same weights. `THREADS=` (`--threads`)
sets the count and skips the measurement; a thread variable in the environment
(OPENBLAS_NUM_THREADS, OMP_NUM_THREADS, ...) is the user's choice and is kept as it is.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from .files import atomic_open
from .parallel import user_thread_limit

MARGIN = 0.95  # one thread must be at least 5% faster to be chosen


def cache_path() -> Path:
    """Where measured choices are kept: $XDG_CACHE_HOME/digit-kit/blas-threads.json (~/.cache by default)."""
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "digit-kit" / "blas-threads.json"


def blas_threads_now() -> int:
    """The largest thread count of the BLAS pools NumPy uses (1 when none is seen)."""
    from threadpoolctl import threadpool_info

    counts = [pool.get("num_threads", 1) for pool in threadpool_info() if pool.get("user_api") == "blas"]
    return max(counts, default=1)


def _shape_key(config, n_features: int, most: int) -> str:
    return json.dumps([platform.processor() or platform.machine(), np.__version__, most, n_features,
                       config.arch, list(config.hidden), list(config.conv_channels), config.batch_size,
                       config.batch_norm, config.optimizer])


def _seconds_per_step(config, x: np.ndarray, y: np.ndarray, n_steps: int) -> float:
    """Best time of one training step (forward, loss, backward, update) of a fresh network."""
    from .train import Trainer

    trainer = Trainer(config, x.shape[1], 1, np.random.default_rng(12345))
    xb, yb = x[:config.batch_size], y[:config.batch_size]
    best = float("inf")
    for i in range(n_steps + 2):  # two warm-up steps allocate the buffers
        started = time.perf_counter()
        trainer.step(xb, yb, config.lr * 1e-3)
        if i >= 2:
            best = min(best, time.perf_counter() - started)
    return best


def choose_blas_threads(config, x: np.ndarray, y: np.ndarray, log=print) -> int | None:
    """The BLAS thread count to train with, or None to leave BLAS as it is.

    x: (n, features) float32 training rows, y: (n,) labels; only the first batch is used."""
    if config.blas_threads:
        return config.blas_threads
    most = blas_threads_now()
    if most <= 1 or user_thread_limit() is not None or len(x) < config.batch_size:
        return None
    path = cache_path()
    key = _shape_key(config, x.shape[1], most)
    try:
        cache = json.loads(path.read_text())
    except (OSError, ValueError):
        cache = {}
    if isinstance(cache, dict) and isinstance(cache.get(key), int):
        return cache[key]
    from threadpoolctl import threadpool_limits

    n_steps = 5 if config.arch == "cnn" else 30
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        with threadpool_limits(limits=1, user_api="blas"):
            one = _seconds_per_step(config, x, y, n_steps)
        all_ = _seconds_per_step(config, x, y, n_steps)
    chosen = 1 if one < MARGIN * all_ else most
    log(f"BLAS threads: {chosen} (one training step {one * 1e3:.2f} ms with 1 thread, "
        f"{all_ * 1e3:.2f} ms with {most}; kept in {path}, THREADS= to override)")
    cache = cache if isinstance(cache, dict) else {}
    cache[key] = chosen
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(path, "w") as handle:
            json.dump(cache, handle, indent=1)
    except OSError:
        pass  # a read-only home only costs the measurement next time
    return chosen
