"""The BLAS thread choice: the user's settings win, the measurement picks the faster, the cache keeps it."""

import json

import numpy as np
import pytest

from kit import threads
from kit.config import make_config


@pytest.fixture
def timed(monkeypatch, tmp_path):
    """Two BLAS threads available, a private cache, and step timings the test sets."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    from kit.parallel import THREAD_VARIABLES

    for name in THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(threads, "blas_threads_now", lambda: 2)
    calls = []
    timings = {"one": 1.0, "all": 1.0}

    def fake(config, x, y, n_steps):
        from threadpoolctl import threadpool_info

        one = all(p["num_threads"] == 1 for p in threadpool_info() if p.get("user_api") == "blas")
        calls.append("one" if one else "all")
        return timings[calls[-1]]

    monkeypatch.setattr(threads, "_seconds_per_step", fake)
    x = np.zeros((256, 784), dtype=np.float32)
    y = np.arange(256) % 10
    return timings, calls, x, y


@pytest.mark.parametrize("one, all_, expected", [(0.5, 1.0, 1), (0.97, 1.0, 2), (1.0, 0.5, 2)])
def test_one_thread_only_when_clearly_faster(timed, one, all_, expected):
    timings, calls, x, y = timed
    timings.update(one=one, all=all_)
    assert threads.choose_blas_threads(make_config("reference"), x, y, log=lambda m: None) == expected
    assert sorted(calls) == ["all", "one"]


def test_choice_is_kept_and_reused(timed):
    timings, calls, x, y = timed
    timings.update(one=0.5, all=1.0)
    config = make_config("reference")
    assert threads.choose_blas_threads(config, x, y, log=lambda m: None) == 1
    timings.update(one=1.0, all=0.5)  # the machine changed its mind: the stored answer still holds
    assert threads.choose_blas_threads(config, x, y, log=lambda m: None) == 1
    assert len(calls) == 2
    assert list(json.loads(threads.cache_path().read_text()).values()) == [1]
    # another network shape is measured on its own
    assert threads.choose_blas_threads(make_config("reference", hidden=(32,)), x, y, log=lambda m: None) == 2


def test_flag_and_environment_win_over_the_measurement(timed, monkeypatch):
    timings, calls, x, y = timed
    assert threads.choose_blas_threads(make_config("reference", blas_threads=2), x, y, log=lambda m: None) == 2
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "2")
    assert threads.choose_blas_threads(make_config("reference"), x, y, log=lambda m: None) is None
    assert calls == []


def test_real_step_timing_runs():
    x = np.random.default_rng(0).random((64, 784), dtype=np.float32)
    y = np.arange(64) % 10
    seconds = threads._seconds_per_step(make_config("reference"), x, y, n_steps=2)
    assert 0 < seconds < 10
