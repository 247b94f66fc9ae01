"""kit/sweep/space.py: a space file is read and checked against the config before any trial
(every mistake one line naming the entry), and its random trials never repeat and extend in
order."""

from __future__ import annotations

from pathlib import Path

import pytest

from kit.cli import main
from kit.sweep.space import read_space
from sweep_files import sweep_args, write_space
from synthetic import write_train


@pytest.fixture(scope="module")
def train_csv(tmp_path_factory) -> Path:
    return write_train(tmp_path_factory.mktemp("space-data") / "train.csv", n=100)


BAD_SPACES = [
    ("[space]\nlrr = [0.1]\n", "space.lrr: no such setting; did you mean lr?"),
    ("[space]\nlr = ['fast']\n", "space.lr[0]: 'fast' is str; expected a number"),
    ("[space]\nepochs = [2.5]\n", "space.epochs[0]: 2.5 is float; expected a whole number"),
    ("[space]\nhidden = [128, 64]\n", "space.hidden[0]: 128 is int; expected a list of whole numbers"),
    ("[space]\nlr = { uniform = [0.1, 0.01] }\n", "space.lr: an empty range [0.1, 0.01]"),
    ("[space]\nlr = { log_uniform = [0, 0.1] }\n", "space.lr: log_uniform needs low > 0"),
    ("[space]\ndropout = []\n", "space.dropout: an empty list"),
    ("[space]\nconv_channels = [[8], [16]]\n", 'space.conv_channels: only used with arch = "cnn"'),
    ("[space]\nmomentum = [0.5, 0.9]\n", 'space.momentum: only used with optimizer other than "sgd"'),
    ("[space]\ndropout = [0.1, 1.5]\n", "space.dropout = 1.5: must be in [0, 1)"),
    ("[space]\noptimizer = ['sgd', 'lion']\n", "space.optimizer = lion: choose one of sgd, momentum"),
    ("[space]\nmax_warp = [-1.0, 1.0]\n", "space.max_warp = -1.0: must be at least 0"),
    (
        "[fixed]\naugment = false\n[space]\nmax_warp = [1.0, 2.0]\n",
        "space.max_warp: only used with augment = true",
    ),
    ("[space]\nconvs_per_block = [1, 2]\n", 'space.convs_per_block: only used with arch = "cnn"'),
    ("[space]\neval_batch_size = [64, 128]\n", "space.eval_batch_size: not swept: it changes speed"),
    ("method = 'grid'\n[space]\nlr = { uniform = [0.01, 0.1] }\n", "space.lr: a range cannot be a grid axis"),
    ("[space]\nlr = 0.1\n", "space.lr: give a list of values or a range"),
    ("[space]\ntta = [true, false]\n", "space.tta: not swept"),
    ("[fixed]\nlr = 0.1\n[space]\nlr = [0.1]\n", "space.lr: also in [fixed]"),
    ("[fixed]\nepochs = -1\n[space]\nlr = [0.1]\n", "fixed.epochs = -1: must be at least 1"),
    ("[space]\nepochs = [2, 3]\n", "space.epochs: swept here and set on the command line (EPOCHS=2)"),
    ("method = 'bayes'\n[space]\nlr = [0.1]\n", "method: 'bayes'; choose random or grid"),
    ("trails = 3\n[space]\nlr = [0.1]\n", "trails: unknown entry"),
    ("[fixed]\nepochs = 2\n", "space: no settings to sweep"),
    ("[space]\nlr = [0.1\n", "not valid TOML"),
]


@pytest.mark.parametrize("text,message", BAD_SPACES, ids=[m.split(":")[0] for _, m in BAD_SPACES])
def test_bad_space_files_stop_before_any_trial(text, message, train_csv, tmp_path, capsys):
    space = write_space(tmp_path, text, name="bad.toml")
    assert main(sweep_args(space, train_csv, tmp_path, "--epochs", "2")) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {space}") and message in lines[0], lines
    assert not (tmp_path / "models").exists() and not (tmp_path / "sweeps").exists()


def test_missing_space_file_and_missing_data(train_csv, tmp_path, capsys):
    assert main(sweep_args(tmp_path / "nope.toml", train_csv, tmp_path)) == 2
    assert "space file not found" in capsys.readouterr().err
    assert main(sweep_args(write_space(tmp_path), tmp_path / "missing.csv", tmp_path)) == 2
    assert "missing.csv: file not found" in capsys.readouterr().err
    assert not (tmp_path / "models").exists()


def test_random_draws_never_repeat_a_trial_and_extend_in_order(tmp_path):
    finite = read_space(
        write_space(tmp_path, "[space]\nlr = [0.01, 0.1]\ndropout = [0.0, 0.5]\n", name="f.toml")
    )
    drawn = finite.plan(8, seed=3)
    assert len(drawn) == 4 and len({(t["lr"], t["dropout"]) for t in drawn}) == 4  # all four, once each
    ranged = read_space(write_space(tmp_path))
    assert ranged.distinct_trials() is None
    assert ranged.plan(6, seed=0)[:4] == ranged.plan(4, seed=0)  # TRIALS=6 extends TRIALS=4
    assert ranged.plan(4, seed=1) != ranged.plan(4, seed=0)  # the base seed draws them


def test_the_shipped_example_space_is_valid():
    from kit.sweep.space import check_space

    example = Path(__file__).resolve().parent.parent / "sweeps" / "default-mlp.toml"
    space = read_space(example)
    check_space(space, "default", {})
    trials = space.plan(space.default_trials(), seed=0)
    assert len(trials) == 8 and {"lr", "dropout", "hidden", "weight_decay"} <= set(trials[0])
