"""kit/core/blas.py: the one fixed BLAS thread rule."""

from __future__ import annotations

from kit.core.blas import threads_per_job, usable_cores


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
