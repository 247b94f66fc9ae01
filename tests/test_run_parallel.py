"""kit/run/parallel.py: several runs at once in processes, each held to its share of the cores,
landing in models/ as `make train` leaves them, with the weights a run alone gives."""

from __future__ import annotations

import numpy as np
import pytest

from kit.config import make_config
from kit.core.blas import threads_per_job
from kit.run.model import Model
from kit.run.parallel import run_many
from synthetic import write_competition


@pytest.fixture(scope="module")
def competition(tmp_path_factory):
    return write_competition(tmp_path_factory.mktemp("parallel-data"), n_train=200, n_test=40)


@pytest.mark.slow
def test_run_many_trains_two_configs_in_parallel(competition, tmp_path):
    # the same preset and seed: the two runs would get the same name in the same second
    configs = [
        make_config("reference", hidden=(16,), epochs=2, seed=3),
        make_config("reference", hidden=(16,), epochs=2, seed=3, lr=0.05),
    ]
    outcomes = run_many(configs, competition / "train.csv", tmp_path / "models", n_jobs=2)
    run_dirs = [o.run_dir for o in outcomes]
    assert len(set(run_dirs)) == 2
    for config, outcome in zip(configs, outcomes):
        assert outcome.run_dir.parent == tmp_path / "models"
        assert outcome.blas_threads == [threads_per_job(2)]  # each process held to its share of the cores
        model = Model.load(outcome.run_dir / "model.npz")
        assert model.config.lr == config.lr
        assert model.meta["run_id"] == outcome.run_dir.name
        assert "validation accuracy" in outcome.log
    assert (tmp_path / "models" / "latest").resolve() == run_dirs[-1].resolve()
    assert not list((tmp_path / "models").glob(".parallel-*"))  # private folders cleaned up

    # in order, and a parallel run gives the weights a run alone gives
    alone = run_many([configs[1]], competition / "train.csv", tmp_path / "alone", n_jobs=1)
    a = Model.load(alone[0].run_dir / "model.npz").members[0].state()
    b = Model.load(run_dirs[1] / "model.npz").members[0].state()
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=1e-5, atol=1e-6)
