"""kit/run/folders.py: run folders are claimed once even by runs started in the same second,
`models/latest` always names the newest run (a file where links fail), a model is found from a
run folder, its model.npz or models/, and a run folder's config is checked when it is read."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from kit.config import make_config
from kit.core.errors import KitError
from kit.run.folders import load_run_config, point_latest, resolve_model, resolve_run_dir, start_run
from kit.run.model import Model, build_network


def saved_run(models, name: str):
    config = make_config("reference", hidden=(4,))
    run_dir = models / name
    run_dir.mkdir(parents=True)
    Model(config, [build_network(config, np.random.default_rng(0))], {"run_id": name}).save(
        run_dir / "model.npz"
    )
    (run_dir / "config.json").write_text(config.to_json())
    return run_dir


def test_runs_started_in_the_same_second_get_folders_of_their_own(tmp_path):
    config = make_config("reference", seed=4)
    folders = [start_run(config, tmp_path) for _ in range(3)]
    assert len({f.name for f in folders}) == 3 and all(
        f.name.split("-")[2:4] == ["reference", "s4"] for f in folders
    )
    assert all(json.loads((f / "config.json").read_text())["seed"] == 4 for f in folders)


def test_latest_names_the_newest_run_and_a_model_is_found_every_way(tmp_path):
    models = tmp_path / "models"
    first, second = saved_run(models, "run-a"), saved_run(models, "run-b")
    point_latest(models, first.name)
    point_latest(models, second.name)  # swapped, not added
    assert os.readlink(models / "latest") == "run-b"
    assert resolve_model(models) == models / "latest" / "model.npz"
    assert resolve_run_dir(models) == second.resolve()
    assert resolve_model(first) == first / "model.npz" == resolve_model(first / "model.npz")


def test_where_links_fail_latest_is_a_file_naming_the_run(tmp_path):
    models = tmp_path / "models"
    saved_run(models, "run-a")
    (models / "latest").mkdir()  # a real folder where the link belongs: it is never replaced
    point_latest(models, "run-a")
    assert (models / "latest.txt").read_text().strip() == "run-a" and (models / "latest").is_dir()
    (models / "latest").rmdir()
    assert resolve_model(models) == models / "run-a" / "model.npz"


def test_without_a_run_models_falls_back_to_the_demo_only_when_asked(tmp_path, capsys):
    models = tmp_path / "models"
    demo = saved_run(models / "demo", "demo-run")
    point_latest(models / "demo", demo.name)
    with pytest.raises(KitError, match="no trained model there; run `make demo`"):
        resolve_model(models)
    assert resolve_model(models, demo_fallback=True) == models / "demo" / "latest" / "model.npz"
    assert "using the demo's latest run" in capsys.readouterr().out


def test_a_run_folders_config_is_checked_when_it_is_read(tmp_path):
    run_dir = saved_run(tmp_path, "run-a")
    assert load_run_config(run_dir).hidden == (4,)
    values = json.loads((run_dir / "config.json").read_text())
    (run_dir / "config.json").write_text(json.dumps({**values, "lr": -1.0}))
    with pytest.raises(KitError, match="LR=-1.0: must be above 0"):
        load_run_config(run_dir)
    (run_dir / "config.json").write_text(json.dumps({**values, "epochs": "many"}))
    with pytest.raises(KitError, match=r"config.json, epochs: 'many' is str; expected a whole number"):
        load_run_config(run_dir)
    with pytest.raises(KitError, match="not a run folder"):
        load_run_config(tmp_path / "nothing")
