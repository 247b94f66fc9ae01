"""Several training runs at once: seeds of an ensemble, presets, a small hyperparameter sweep.

    from kit.config import make_config
    from kit.run.parallel import run_many

    configs = [make_config("default", seed=s) for s in range(4)]
    run_dirs = [outcome.run_dir for outcome in run_many(configs, "data/train.csv", "models", n_jobs=2)]

Each config is trained by kit.run.train.train_run in its own process (joblib), with its BLAS
limited so that all processes together use no more threads than the machine has cores: one
thread each when there are as many jobs as cores. A sweep of small networks gains almost the
whole factor n_jobs this way, because one batch-64 run cannot keep more than one core busy
(its matrix products are too small to split well).

Runs land in `model_dir` exactly as `make train` leaves them (one folder per run, `latest`
pointing at the last config's run). Each process first writes into a private folder
`model_dir/.parallel-*`, and the parent moves the finished runs into place, so two runs that
would get the same name (same preset and seed in the same second) cannot overwrite each other.

Thread settings: a limit the user set (OPENBLAS_NUM_THREADS, OMP_NUM_THREADS, MKL_NUM_THREADS,
...) is kept as an upper bound; without one, each process gets cores // n_jobs BLAS threads.
`cores` is joblib's count, which honours CPU affinity and container (cgroup) quotas.

run_each is the same one run at a time: it yields each outcome as that run finishes, which
`make sweep` (kit/sweep/runner.py) records at once, so an interrupted sweep keeps every finished trial.

On a cluster: kit/sweep/dask_cluster.py (run_each_on_dask) trains configs on a Dask scheduler's workers
with no shared filesystem: the client scatters train.csv's arrays to the workers once and each
run's files come back to the client's models/ (`DASK_SCHEDULER=tcp://host:8786 make sweep`).
joblib's own backends (`backend="dask"` once a dask Client exists, `backend="ray"` after
ray.util.joblib.register_ray()) would also run run_many's processes remotely, but then every
worker must see train.csv and model_dir at the same paths (a shared filesystem); the Ray route
is not tested here.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from kit.core.blas import threads_per_job, usable_cores
from kit.run.folders import new_run_id, point_latest
from kit.run.model import Model
from kit.run.train import train_run


@dataclass
class RunOutcome:
    """What one process sends back: its run folder, the log it printed, and its wall time."""

    run_dir: Path | None  # None when the run failed (see error)
    log: str
    seconds: float
    blas_threads: list | None = None  # the BLAS pools' thread counts while it trained
    worker: str = ""  # host:pid of the process that trained it
    error: str | None = None  # the one-line KitError of a run that failed (e.g. it diverged)


def train_one(
    config,
    train_path,
    model_dir,
    threads: int,
    quiet: bool = True,
    rows=None,
    capture: Callable[[], contextlib.AbstractContextManager] | None = None,
) -> RunOutcome:
    """One training run (kit.run.train.train_run into model_dir, from train_path or from `rows`
    already in memory), its BLAS limited to `threads`, its printed log captured unless not
    `quiet` (by `capture()`, a context yielding a StringIO: default, redirect this process's
    stdout). The worker of local processes and of Dask trials alike. A KitError (a learning
    rate that diverges) fails this run only: it comes back as the outcome's `error`."""
    import socket

    from threadpoolctl import threadpool_info, threadpool_limits

    from kit.core.errors import KitError

    started = time.perf_counter()
    if not quiet:
        output = contextlib.nullcontext(io.StringIO())  # the log stays on the terminal
    else:
        output = capture() if capture is not None else contextlib.redirect_stdout(io.StringIO())
    run_dir, error = None, None
    with threadpool_limits(limits=threads, user_api="blas"), output as log:
        pools = [pool["num_threads"] for pool in threadpool_info() if pool.get("user_api") == "blas"]
        try:
            run_dir = Path(train_run(config, train_path, model_dir, rows=rows))
        except KitError as failure:
            error = str(failure)
    worker = f"{socket.gethostname()}:{os.getpid()}"
    return RunOutcome(run_dir, log.getvalue(), time.perf_counter() - started, pools, worker, error)


def _train_indexed(
    index: int, config, train_path: str, private_dir: str, threads: int, quiet: bool
) -> tuple[int, RunOutcome]:
    """train_one in a joblib process; (index, outcome), so that results arriving in any order
    find their config again."""
    return index, train_one(config, train_path, private_dir, threads, quiet)


def run_many(
    configs: list,
    train_path: str | os.PathLike,
    model_dir: str | os.PathLike = "models",
    n_jobs: int | None = None,
    backend: str | None = None,
    threads: int | None = None,
    quiet: bool = True,
) -> list[RunOutcome]:
    """Train every config (kit.run.train.train_run) in parallel processes; return, in the order of
    `configs`, each run's outcome: its folder (`.run_dir`), captured log and wall seconds.
    A run that fails with a KitError raises it here (the runs that finished are kept).

    n_jobs: processes at once (None: one per config, at most one per core; -1: all cores).
    backend: a joblib backend name ("loky", the default; "dask" or "ray" once registered).
    threads: BLAS threads per process (None: threads_per_job(n_jobs)).
    quiet: keep each run's epoch log out of the terminal (it is in each outcome's `.log`).
    """
    from kit.core.errors import KitError

    configs = list(configs)
    placed: list[RunOutcome | None] = [None] * len(configs)
    for index, outcome in run_each(configs, train_path, model_dir, n_jobs, backend, threads, quiet):
        if outcome.error:
            raise KitError(outcome.error)
        placed[index] = outcome
    if placed:
        point_latest(Path(model_dir), placed[-1].run_dir.name)
    return placed


def run_each(
    configs: list,
    train_path: str | os.PathLike,
    model_dir: str | os.PathLike = "models",
    n_jobs: int | None = None,
    backend: str | None = None,
    threads: int | None = None,
    quiet: bool = True,
) -> Iterator[tuple[int, RunOutcome]]:
    """run_many one run at a time: yield (index into configs, outcome) as each run finishes, in
    the order they finish, its folder already moved into model_dir (`latest` points at it).
    A run that fails with a KitError is yielded with `.error` set and no folder; the others go
    on. A caller that records each result as it arrives (kit/sweep/runner.py) loses nothing finished
    when the rest is interrupted. Arguments as run_many."""
    from joblib import Parallel, delayed

    configs = list(configs)
    if not configs:
        return
    cores = usable_cores()
    if n_jobs is None:
        n_jobs = min(len(configs), cores)
    elif n_jobs < 0:
        n_jobs = max(1, cores + 1 + n_jobs)  # joblib's convention: -1 is all cores
    n_jobs = max(1, min(n_jobs, len(configs)))
    threads = threads or threads_per_job(n_jobs)
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    private = [tempfile.mkdtemp(prefix=f".parallel-{i}-", dir=model_dir) for i in range(len(configs))]
    try:
        jobs = (
            delayed(_train_indexed)(i, config, str(train_path), folder, threads, quiet)
            for i, (config, folder) in enumerate(zip(configs, private))
        )
        if n_jobs == 1 and backend is None:
            finished = (function(*args, **kwargs) for function, args, kwargs in jobs)  # no worker processes
        else:
            finished = Parallel(n_jobs=n_jobs, backend=backend, return_as="generator_unordered")(jobs)
        for index, outcome in finished:
            if outcome.run_dir is not None:
                outcome.run_dir = place_run(outcome.run_dir, configs[index], model_dir)
                point_latest(model_dir, outcome.run_dir.name)
            yield index, outcome
    except BaseException:
        # Ctrl-C or a failed run: every run that finished (or saved its best epoch) is kept
        for config, folder in zip(configs, private):
            for run_dir in sorted(Path(folder).iterdir()) if Path(folder).is_dir() else []:
                if not run_dir.is_symlink() and (run_dir / "model.npz").is_file():
                    place_run(run_dir, config, model_dir)
        raise
    finally:
        for folder in private:
            shutil.rmtree(folder, ignore_errors=True)


def place_run(run_dir: Path, config, model_dir: Path) -> Path:
    """Move a finished run folder into model_dir, under a fresh name if its own is taken."""
    run_id = run_dir.name
    if (model_dir / run_id).exists():
        run_id = new_run_id(config, model_dir)
        _rename_run(run_dir, run_id)
    os.replace(run_dir, model_dir / run_id)
    return model_dir / run_id


def _rename_run(run_dir: Path, run_id: str) -> None:
    """Keep the run id stored in model.npz equal to the folder name it is moved to."""
    model = Model.load(run_dir / "model.npz")
    model.meta["run_id"] = run_id
    model.save(run_dir / "model.npz")
