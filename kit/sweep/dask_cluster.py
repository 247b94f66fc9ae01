"""Training runs on a Dask cluster: kit.run.parallel.run_each for machines this one does not share
a filesystem with. `make sweep` uses it when DASK_SCHEDULER is set (kit/sweep/runner.py).

    for index, result in run_each_on_dask(configs, load_train("data/train.csv"), "data/train.csv",
                                          "tcp://scheduler:8786"):
        result["files"]  # {"model.npz": bytes, "config.json": ..., "history.csv": ..., "metrics.json": ...}

How data and results travel, and why:
- The client loads train.csv once and scatters its uint8 arrays to every worker (broadcast):
  workers need the kit installed (the same version) and nothing else, no data files and no
  shared filesystem; a worker that joins later fetches them from a peer once.
- Each run trains on a worker into a temporary folder there (kit.run.train.finish_run writes it as
  for `make train`), and the task returns the folder's files as bytes (a few MB). The client
  writes them into its own models/, so a run exists only where `make sweep` was typed, and a
  worker that dies takes no half-written file with it.
- A worker that dies mid-run loses that run's progress only: the scheduler gives the task to
  another worker (up to distributed.scheduler.allowed-failures times). A finished result lost
  with its worker before the client fetched it is computed again. If every worker holding the
  scattered arrays dies (the scheduler keeps as few copies as pending tasks need), the runs
  waiting on them are cancelled; they are scattered again and those runs submitted again.
- BLAS threads: `threads` per run, else cores // the worker's --nthreads (kit.core.blas rule). A
  worker started by a nanny (`dask worker`, LocalCluster) gets OPENBLAS_NUM_THREADS=1 from
  Dask, which the rule respects: one BLAS thread per run, so give `--nthreads <cores>`.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from kit.config import Config
from kit.core.console import log
from kit.core.errors import KitError

CONNECT_SECONDS = 15
WORKER_WAIT_SECONDS = 120
RETRIES = 5  # times one run may be lost (its result or its input) before the sweep gives up


@dataclass
class TrainArrays:
    """train.csv as the client loaded it, scattered once to every worker."""

    x: np.ndarray  # (n, 784) uint8
    y: np.ndarray  # (n,) uint8
    path: str  # the client's train.csv, recorded in each run's metrics.json


# --------------------------------------------------------------------------- on the worker


class _PerThreadStdout:
    """sys.stdout for a worker process whose task threads each print into their own buffer
    (contextlib.redirect_stdout swaps the one sys.stdout, which concurrent tasks would tangle)."""

    def __init__(self, original) -> None:
        self.original, self.local = original, threading.local()

    def write(self, text: str) -> int:
        return (getattr(self.local, "buffer", None) or self.original).write(text)

    def __getattr__(self, name: str):
        return getattr(self.original, name)

    @contextlib.contextmanager
    def capture(self) -> Iterator[io.StringIO]:
        self.local.buffer = buffer = io.StringIO()
        try:
            yield buffer
        finally:
            self.local.buffer = None


_STDOUT_LOCK = threading.Lock()


def _captured_stdout() -> contextlib.AbstractContextManager:
    """A context in which this thread's prints go to a StringIO (a run's epoch log stays off the
    worker's terminal; it comes back in the result)."""
    with _STDOUT_LOCK:
        if not isinstance(sys.stdout, _PerThreadStdout):
            sys.stdout = _PerThreadStdout(sys.stdout)
        return sys.stdout.capture()


def train_on_worker(config: Config, arrays: TrainArrays, threads: int | None) -> dict:
    """A Dask task: train one config on the scattered arrays exactly as `make train` does on the
    file (kit.run.parallel.train_one, the local processes' worker too), into a temporary folder on
    the worker, and return that run folder's files: {"files": {name: bytes}, "run_id", "seconds",
    "worker" (host:pid), "error", "log"}. A KitError (a learning rate that diverges) is returned
    as "error": it fails this run only."""
    from kit.core.blas import threads_per_job
    from kit.run.parallel import train_one

    try:
        from distributed import get_worker

        worker = get_worker()
        slots, scratch = worker.state.nthreads, worker.local_directory
    except (ImportError, ValueError, AttributeError):  # called outside a worker (a test, a debugger)
        slots, scratch = 1, None
    with tempfile.TemporaryDirectory(prefix="kit-run-", dir=scratch) as tmp:
        # the rows arrive scattered, not from a file: the same split, the same run as `make train`;
        # the task's prints go to its own buffer (concurrent tasks share one sys.stdout)
        outcome = train_one(
            config,
            arrays.path,
            tmp,
            threads or threads_per_job(slots),
            rows=(arrays.x, arrays.y),
            capture=_captured_stdout,
        )
        files = (
            {p.name: p.read_bytes() for p in outcome.run_dir.iterdir() if p.is_file()}
            if outcome.run_dir
            else {}
        )
    return {
        "files": files,
        "run_id": outcome.run_dir.name if outcome.run_dir else None,
        "worker": outcome.worker,
        "error": outcome.error,
        "seconds": outcome.seconds,
        "log": outcome.log,
    }


# --------------------------------------------------------------------------- on the client


def connect(scheduler: str):
    """A dask.distributed Client on `scheduler` with at least one worker, or a one-line KitError."""
    try:
        from distributed import Client
    except ImportError:
        raise KitError(
            "DASK_SCHEDULER is set but dask.distributed is not installed; run `make venv`"
        ) from None
    try:
        client = Client(scheduler, timeout=CONNECT_SECONDS)
    except (OSError, TimeoutError, ValueError) as error:
        raise KitError(
            f"cannot reach the Dask scheduler at {scheduler} ({type(error).__name__}: {error}); "
            f"start one with `dask scheduler` or fix DASK_SCHEDULER"
        ) from None
    try:
        client.wait_for_workers(1, timeout=WORKER_WAIT_SECONDS)
    except TimeoutError:
        client.close()
        raise KitError(
            f"the Dask scheduler at {scheduler} has no workers after {WORKER_WAIT_SECONDS} s; "
            f"start some with `dask worker {scheduler}`"
        ) from None
    return client


def local_cluster(n_workers: int = 2):
    """A Dask LocalCluster of n_workers processes on 127.0.0.1, one thread each and no dashboard:
    a real cluster on this machine, for the bench and the tests (use it as a context manager)."""
    from distributed import LocalCluster

    return LocalCluster(
        n_workers=n_workers, processes=True, threads_per_worker=1, host="127.0.0.1", dashboard_address=None
    )


def run_each_on_dask(
    configs: list[Config],
    dataset,
    train_path: str | os.PathLike,
    scheduler: str,
    threads: int | None = None,
    key_prefix: str = "kit-run",
    labels: list[str] | None = None,
) -> Iterator[tuple[int, dict]]:
    """Train every config on the workers of the Dask scheduler at `scheduler`; yield
    (index into configs, train_on_worker's result) as each run finishes, in the order they
    finish. dataset: kit.data.Dataset of train_path (x (n, 784) uint8, y (n,)). labels name the
    runs in messages. A run that fails for another reason than a KitError (the kit missing on
    a worker, a run lost RETRIES times) stops the iteration with one KitError line; closing the
    iterator (Ctrl-C) cancels the runs not yet finished."""
    from distributed import as_completed

    labels = labels or [f"run {i + 1}" for i in range(len(configs))]
    client = connect(scheduler)
    futures: dict = {}  # future -> index into configs
    try:
        n_workers = len(client.scheduler_info(n_workers=-1)["workers"])
        log(
            f"dask: {n_workers} workers at {scheduler}; sending train.csv ({dataset.x.nbytes / 1e6:.1f} MB) "
            f"to each of them once"
        )

        def scatter():
            return client.scatter(
                TrainArrays(dataset.x, dataset.y, str(train_path)), broadcast=True, hash=False
            )

        arrays = scatter()
        attempt_tag = os.urandom(3).hex()  # fresh keys: tasks of an earlier, interrupted sweep are not reused
        attempts = [0] * len(configs)

        def submit(index: int):
            future = client.submit(
                train_on_worker,
                configs[index],
                arrays,
                threads,
                pure=False,
                key=f"{key_prefix}-{labels[index].replace(' ', '-')}-{attempt_tag}-{attempts[index]}",
            )
            futures[future] = index
            return future

        finished = as_completed([submit(i) for i in range(len(configs))])
        for future in finished:
            index = futures[future]
            try:
                result = future.result()
            except Exception as error:  # noqa: BLE001  (the task's own exception, or the cluster's)
                if future.status == "error" or attempts[index] >= RETRIES:
                    raise KitError(
                        f"{labels[index]} failed on the Dask cluster ({type(error).__name__}: {error}); "
                        f"is the kit (and its dependencies) installed on every worker?"
                    ) from None
                attempts[index] += 1
                if future.status == "cancelled":
                    # its input died with the last workers that held it: send it again
                    if arrays.status != "finished":
                        log("dask: the workers holding train.csv are gone; sending it again")
                        arrays = scatter()
                    log(f"{labels[index]}: lost on the cluster; submitted again")
                    finished.add(submit(index))
                else:
                    # the worker holding the finished result died before it was fetched: the
                    # scheduler computes it again; a moment lets its "lost" reach this future
                    log(f"{labels[index]}: its result was lost with its worker; Dask trains it again")
                    time.sleep(0.5)
                    finished.add(future)
                continue
            future.release()  # the run's bytes are not needed on the cluster any more
            yield index, result
    finally:
        client.cancel(list(futures))
        client.close()
