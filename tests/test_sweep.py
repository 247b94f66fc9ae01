"""`make sweep` on generated data: the trials, results.csv, the run folders, the ranking and the
resume; the space file's checks; and the Dask path on a real LocalCluster (separate worker
processes on 127.0.0.1): same results as local processes, trials in the workers, and a worker
killed mid-sweep costing nothing."""

from __future__ import annotations

import csv
import json
import os
import signal
from pathlib import Path

import pytest

from kit.cli import main
from kit.config import format_value
from kit.sweep.plan import plan_sweep
from kit.sweep.runner import run_sweep
from kit.sweep.space import read_space
from sweep_files import TINY_SPACE, sweep_args, write_space
from synthetic import write_train


@pytest.fixture(scope="module")
def train_csv(tmp_path_factory) -> Path:
    return write_train(tmp_path_factory.mktemp("sweep-data") / "train.csv", n=400)


def read_rows(sweep_folder: Path) -> list[dict]:
    with open(sweep_folder / "results.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def run_folders(models: Path) -> list[Path]:
    return sorted(p for p in models.iterdir() if p.is_dir() and not p.is_symlink()) if models.is_dir() else []


def test_four_trials_recorded_ranked_and_resumed(train_csv, tmp_path, capsys):
    space = write_space(tmp_path)
    assert main(sweep_args(space, train_csv, tmp_path)) == 0
    out = capsys.readouterr().out

    folders = list((tmp_path / "sweeps").iterdir())
    assert len(folders) == 1 and folders[0].name.startswith("tiny-reference-")
    sweep_folder = folders[0]
    assert (sweep_folder / "space.toml").read_text() == TINY_SPACE
    rows = read_rows(sweep_folder)
    assert [r["trial"] for r in rows] == ["1", "2", "3", "4"]
    assert list(rows[0]) == [
        "trial",
        "lr",
        "dropout",
        "best_epoch",
        "val_accuracy",
        "val_loss",
        "seconds",
        "run_id",
        "worker",
        "error",
    ]

    # the values are the seeded draws, and each run folder was trained with its row's values
    planned = read_space(space).plan(4, seed=0)
    assert len({r["lr"] for r in rows}) == 4
    runs = run_folders(tmp_path / "models")
    assert sorted(r["run_id"] for r in rows) == [p.name for p in runs]
    for row, values in zip(rows, planned):
        assert row["lr"] == format_value(values["lr"]) and row["dropout"] == format_value(values["dropout"])
        assert 0.005 <= float(row["lr"]) <= 0.05 and row["dropout"] in ("0.0", "0.2")
        run = tmp_path / "models" / row["run_id"]
        config = json.loads((run / "config.json").read_text())
        assert config["lr"] == values["lr"] and config["dropout"] == values["dropout"]
        assert config["epochs"] == 2 and config["hidden"] == [16] and config["preset"] == "reference"
        metrics = json.loads((run / "metrics.json").read_text())
        assert metrics["sweep"] == sweep_folder.name and metrics["trial"] == int(row["trial"])
        assert float(row["val_accuracy"]) == pytest.approx(metrics["val_accuracy"], abs=1e-6)
        assert int(row["best_epoch"]) == metrics["best_epoch"] and row["error"] == ""

    # the ranking: best validation accuracy first, then the best trial's make line
    ranking = out[out.index("ranked by validation accuracy") :].splitlines()
    ranked_trials = [line.split()[1] for line in ranking[2:6]]
    best_first = sorted(rows, key=lambda r: (-float(r["val_accuracy"]), float(r["val_loss"])))
    assert ranked_trials == [r["trial"] for r in best_first]
    best = best_first[0]
    assert (
        f"make train PRESET=reference TRAIN={train_csv} EPOCHS=2 HIDDEN=16 BATCH=32 "
        f"LR={best['lr']} DROPOUT={best['dropout']}"
    ) in out

    # the same command again trains nothing and leaves results.csv as it was
    before = (sweep_folder / "results.csv").read_text()
    assert main(sweep_args(space, train_csv, tmp_path)) == 0
    assert "4 already done; 0 to train" in capsys.readouterr().out
    assert run_folders(tmp_path / "models") == runs
    assert (sweep_folder / "results.csv").read_text() == before


def test_interrupted_sweep_keeps_finished_trials_and_resumes(train_csv, tmp_path):
    space = write_space(tmp_path)
    seen = []

    def stop_after_two(row):
        seen.append(row["trial"])
        if len(seen) == 2:
            raise KeyboardInterrupt

    arguments = dict(
        space_path=space,
        preset="reference",
        train_path=train_csv,
        model_dir=tmp_path / "models",
        sweep_dir=tmp_path / "sweeps",
    )
    with pytest.raises(KeyboardInterrupt):
        run_sweep(**arguments, on_result=stop_after_two)
    sweep = plan_sweep(space, "reference", {}, train_csv, tmp_path / "sweeps")
    assert sorted(sweep.rows) == [1, 2] and len(run_folders(tmp_path / "models")) == 2

    trained = []
    run_sweep(**arguments, on_result=lambda row: trained.append(row["trial"]))
    assert sorted(trained) == ["3", "4"]  # only the missing ones
    assert [r["trial"] for r in read_rows(sweep.folder)] == ["1", "2", "3", "4"]
    # TRIALS=6 extends the same sweep: trials 1-4 keep their values, two more are drawn
    run_sweep(**arguments, n_trials=6, on_result=lambda row: trained.append(row["trial"]))
    assert sorted(trained) == ["3", "4", "5", "6"]
    assert len(run_folders(tmp_path / "models")) == 6


def test_grid_from_json_and_a_diverging_trial(train_csv, tmp_path, capsys):
    space = write_space(
        tmp_path,
        json.dumps(
            {
                "method": "grid",
                "fixed": {"epochs": 1, "augment": False},
                "space": {"lr": [0.01, 1e30], "hidden": [[16], "8,8"]},
            }
        ),
        name="grid.json",
    )
    planned = read_space(space).plan(10, seed=0)
    assert planned == [
        {"lr": 0.01, "hidden": (16,)},
        {"lr": 0.01, "hidden": (8, 8)},
        {"lr": 1e30, "hidden": (16,)},
        {"lr": 1e30, "hidden": (8, 8)},
    ]
    assert main(sweep_args(space, train_csv, tmp_path, "--trials", "9")) == 0
    out = capsys.readouterr().out
    assert "the space holds 4 different trials" in out
    rows = read_rows(next((tmp_path / "sweeps").iterdir()))
    assert [(r["lr"], r["hidden"]) for r in rows] == [
        ("0.01", "16"),
        ("0.01", "8,8"),
        ("1e+30", "16"),
        ("1e+30", "8,8"),
    ]
    # a learning rate that diverges fails its own trial with its message; the others rank
    assert [bool(r["error"]) for r in rows] == [False, False, True, True]
    assert "diverged" in rows[2]["error"] and rows[2]["run_id"] == ""
    assert len(run_folders(tmp_path / "models")) == 2
    assert "make train PRESET=reference" in out and "LR=0.01 HIDDEN=" in out


# --------------------------------------------------------------------------- the Dask cluster

DASK_SPACE = """
trials = 6

[fixed]
epochs = 40
hidden = [64]
batch_size = 32

[space]
lr = { log_uniform = [0.005, 0.05] }
dropout = [0.0, 0.1, 0.2]
"""


def start_cluster():
    from dask.distributed import LocalCluster

    return LocalCluster(
        n_workers=2, processes=True, threads_per_worker=1, host="127.0.0.1", dashboard_address=None
    )


def scores(rows: list[dict]) -> dict[str, tuple]:
    return {
        r["trial"]: (r["lr"], r["dropout"], r["best_epoch"], r["val_accuracy"], r["val_loss"]) for r in rows
    }


@pytest.fixture(scope="module")
def local_reference(train_csv, tmp_path_factory):
    """The Dask space swept with two local processes (one BLAS thread each): the results to match."""
    folder = tmp_path_factory.mktemp("local-reference")
    space = write_space(folder, DASK_SPACE, name="cluster.toml")
    sweep = run_sweep(
        space, "reference", {}, train_csv, folder / "models", folder / "sweeps", n_jobs=2, threads=1
    )
    rows = read_rows(sweep.folder)
    assert len(rows) == 6 and not any(r["error"] for r in rows)
    assert {r["worker"].split(":")[-1] for r in rows} - {str(os.getpid())}  # the processes trained them
    return space, rows


@pytest.mark.slow
def test_dask_cluster_trains_the_trials_in_its_workers(
    train_csv, tmp_path, local_reference, monkeypatch, capsys
):
    from dask.distributed import Client

    space, local_rows = local_reference
    with start_cluster() as cluster, Client(cluster.scheduler_address) as client:
        worker_pids = set(client.run(os.getpid).values())
        # as `DASK_SCHEDULER=... make sweep` runs it: the scheduler comes from the environment
        monkeypatch.setenv("DASK_SCHEDULER", cluster.scheduler_address)
        assert main(sweep_args(space, train_csv, tmp_path)) == 0
    assert f"on the Dask scheduler {cluster.scheduler_address}" in capsys.readouterr().out
    sweep = plan_sweep(space, "reference", {}, train_csv, tmp_path / "sweeps")
    rows = read_rows(sweep.folder)
    pids = {int(r["worker"].split(":")[-1]) for r in rows}
    assert os.getpid() not in pids and pids <= worker_pids and len(worker_pids) == 2
    # the same trials, seeds and split: the same validation scores as in local processes
    assert scores(rows) == scores(local_rows)
    # the runs were written on this side, complete and tagged, as ordinary run folders
    assert sorted(r["run_id"] for r in rows) == [p.name for p in run_folders(tmp_path / "models")]
    for row in rows:
        run = tmp_path / "models" / row["run_id"]
        assert {p.name for p in run.iterdir()} == {"model.npz", "config.json", "history.csv", "metrics.json"}
        metrics = json.loads((run / "metrics.json").read_text())
        assert metrics["sweep"] == sweep.id and metrics["trial"] == int(row["trial"])
        assert metrics["train_path"] == str(train_csv)


@pytest.mark.slow
def test_a_worker_killed_mid_sweep_loses_nothing(train_csv, tmp_path, local_reference):
    from dask.distributed import Client

    space, local_rows = local_reference
    killed = {}
    with start_cluster() as cluster, Client(cluster.scheduler_address) as client:
        pids = client.run(os.getpid)

        def kill_the_worker_of_the_first_result(row):
            if killed:
                return
            pid = int(row["worker"].split(":")[-1])
            address = next(a for a, p in pids.items() if p == pid)
            # the trials whose work dies with it: the one it has just started (and any it finished unfetched)
            keys = set(client.processing(workers=[address])[address])
            keys |= {key for key, holders in client.who_has().items() if holders == (address,)}
            killed.update(
                pid=pid,
                trials={int(key.split("-trial-")[1].split("-")[0]) for key in keys if "-trial-" in key}
                - {int(row["trial"])},
            )
            os.kill(pid, signal.SIGKILL)

        sweep = run_sweep(
            space,
            "reference",
            {},
            train_csv,
            tmp_path / "models",
            tmp_path / "sweeps",
            scheduler=cluster.scheduler_address,
            on_result=kill_the_worker_of_the_first_result,
        )
    rows = read_rows(sweep.folder)
    assert killed["trials"], "the killed worker had no trial"
    # every trial finished, those that died with the worker on another one, with the same scores
    assert scores(rows) == scores(local_rows) and not any(r["error"] for r in rows)
    for row in rows:
        if int(row["trial"]) in killed["trials"]:
            assert int(row["worker"].split(":")[-1]) != killed["pid"]
    assert len(run_folders(tmp_path / "models")) == 6


@pytest.mark.slow
def test_sweep_bench_measures_the_three_backends(train_csv):
    from kit.bench.sweep import MODES, sweep_bench, sweep_markdown

    result = sweep_bench(train_csv, trials=2, epochs=1, rounds=1, say=lambda text: None)
    measured = result["rounds"][0]
    assert list(measured) == list(MODES)
    for mode in MODES:
        assert len(measured[mode]["val_accuracy"]) == 2
    alone = measured["one by one"]
    assert alone["wall_seconds"] >= alone["trial_seconds"]  # one trial after the other: the wall covers both
    assert measured["2 processes"]["val_accuracy"] == measured["dask 2 workers"]["val_accuracy"]
    assert str(os.getpid()) not in {w.split(":")[-1] for w in measured["dask 2 workers"]["workers"]}
    text = sweep_markdown(result)
    assert "| 1 | dask 2 workers |" in text and "vs 2 processes" in text and "identical" in text
