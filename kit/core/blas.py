"""How many BLAS threads the kit's processes use. Imports nothing else of the kit.

The rule, fixed and the same on every machine:
- a thread variable the user set (OPENBLAS_NUM_THREADS, OMP_NUM_THREADS, ...) is respected;
- otherwise one training run uses every core the process may use (CPU affinity and cgroup
  quotas included), never more (`cap_blas_threads`);
- `THREADS=` (`--threads`) sets the count of one run;
- n runs in parallel processes get cores // n each (`threads_per_job`).

Why no per-machine measurement: on a 2-core VM the faster choice for the reference MLP swung
between 1 and 2 threads from one hour to the next, so a cached answer was often the slower one
and made results depend on a file the user never saw. `tools/thread_rule.py` measures the rule
against one thread and a plain NumPy loop, interleaved (docs/performance.md has the numbers):
all cores is the rule that is never far off; THREADS=1 is there for the smallest networks.
"""

from __future__ import annotations

import contextlib
import os

THREAD_VARIABLES = (
    "OPENBLAS_NUM_THREADS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)


def usable_cores() -> int:
    """Cores this process may use (CPU affinity and cgroup quotas included)."""
    from joblib import cpu_count

    return max(1, int(cpu_count()))


def user_thread_limit() -> int | None:
    """The smallest positive thread count the user set in the environment, or None."""
    values = []
    for name in THREAD_VARIABLES:
        text = os.environ.get(name, "").strip()
        if text.isdigit() and int(text) > 0:
            values.append(int(text))
    return min(values) if values else None


def threads_per_job(n_jobs: int) -> int:
    """BLAS threads for each of n_jobs processes: cores // n_jobs, at most the user's own limit."""
    threads = max(1, usable_cores() // max(1, n_jobs))
    user = user_thread_limit()
    return min(threads, user) if user else threads


def blas_threads_now() -> int:
    """The largest thread count of the BLAS pools NumPy uses (1 when none is seen)."""
    from threadpoolctl import threadpool_info

    counts = [pool.get("num_threads", 1) for pool in threadpool_info() if pool.get("user_api") == "blas"]
    return max(counts, default=1)


def cap_blas_threads():
    """Keep this process's BLAS from using more threads than it has cores (a container with a
    CPU quota on a big host would otherwise start one thread per host core). Does nothing when
    the user set a thread variable or when the pools are already within the cores. Returns the
    threadpoolctl limiter (call .restore_original_limits() to undo) or None."""
    from threadpoolctl import threadpool_info, threadpool_limits

    if user_thread_limit() is not None:
        return None
    cores = usable_cores()
    if all(pool.get("num_threads", 1) <= cores for pool in threadpool_info()):
        return None
    return threadpool_limits(limits=cores)


def limit_blas(threads: int):
    """A context in which BLAS uses `threads` threads (0: leave it as the rule above set it)."""
    if not threads:
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=threads, user_api="blas")
