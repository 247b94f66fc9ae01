"""kit/config.py: every field declared once, with its rules; each becomes a flag, a Make variable,
a README row and a check, and only what was given on the command line reaches a run."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
from pathlib import Path

import pytest

from kit import config
from kit.cli import build_parser, config_from_args, make_help, markdown_table
from kit.core.errors import KitError

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def competition(tmp_path_factory) -> Path:
    from synthetic import write_competition

    return write_competition(tmp_path_factory.mktemp("data"), n_train=200, n_test=20)


def parse(*argv: str, environ=None) -> config.Config:
    """`kit train ...` as the Makefile calls it: --make-vars names every variable in `environ`."""
    environ = environ or {}
    names = ["--make-vars", " ".join(environ)] if environ else []
    return config_from_args(build_parser().parse_args(["train", *names, *argv]), environ=environ)


def test_every_field_has_a_help_line_a_flag_and_a_make_variable():
    flags, variables = set(), set()
    for name, field in config.CONFIG_FIELDS.items():
        assert field.metadata["help"], name
        flags.add(config.flag(name))
        variables.add(config.make_variable(name))
    assert len(flags) == len(variables) == len(dataclasses.fields(config.Config))  # no two fields share one


@pytest.mark.parametrize("name", list(config.CONFIG_FIELDS))
def test_each_field_is_set_by_its_flag_and_by_its_make_variable(name):
    """A value unlike the preset's, typed as a user would type it, reaches the Config both ways."""
    kind = config.field_type(name)
    value = {
        "preset": "best",
        "arch": "cnn",
        "activation": "tanh",
        "optimizer": "nesterov",
        "schedule": "cosine",
    }.get(name)
    default = getattr(config.make_config("default"), name)
    if value is None:
        value = {bool: "0" if default else "1", tuple: "12,6", int: "3", float: "0.25"}[kind]
    expected = config.parse_value(name, value)
    from_flag = parse(config.flag(name), value)
    from_make = parse(environ={config.make_variable(name): value})
    assert getattr(from_flag, name) == getattr(from_make, name) == expected
    assert expected != default


def test_flags_win_over_make_variables_which_win_over_the_preset():
    env = {"LR": "0.5", "HIDDEN": "8,4", "PRESET": "reference", "EPOCHS": ""}
    assert parse(environ=env).lr == 0.5
    assert parse("--lr", "0.25", environ=env).lr == 0.25
    made = parse(environ=env)
    assert (made.preset, made.hidden, made.epochs) == ("reference", (8, 4), 20)  # empty = the preset's


def test_a_variable_only_exported_in_the_shell_changes_nothing():
    """Only the names make says were on its command line are read: an `export SEED=3` left in the
    shell is in the environment too, and must not reach the run."""
    args = build_parser().parse_args(["train", "--make-vars", "LR"])
    made = config_from_args(args, environ={"LR": "0.5", "SEED": "3", "EPOCHS": "2"})
    assert (made.lr, made.seed, made.epochs) == (0.5, 0, 30)


@pytest.mark.parametrize(
    "env, fragment",
    [
        ({"LR": "fast"}, "LR='fast': give a number"),
        ({"AUGMENT": "maybe"}, "AUGMENT='maybe': give 1 or 0"),
        ({"HIDDEN": "12,x"}, "HIDDEN='12,x': give integers"),
        ({"OPTIMIZER": "adamm"}, "OPTIMIZER=adamm: choose one of sgd, momentum"),
        ({"PRESET": "fastest"}, "unknown preset 'fastest'"),
        ({"MOMENTUM": "1.5"}, "MOMENTUM=1.5: must be in [0, 1)"),
        ({"SEED": "-1"}, "SEED=-1: must be at least 0"),
        ({"MAX_WARP": "-1"}, "MAX_WARP=-1.0: must be at least 0"),
        ({"MAX_SHIFT": "inf"}, "MAX_SHIFT=inf: give a finite number"),
        ({"LR": "nan"}, "LR=nan: give a finite number"),
        ({"LR": "0"}, "LR=0.0: must be above 0"),
        ({"HIDDEN": "16,0"}, "HIDDEN=16,0: each size must be at least 1"),
        ({"HIDDEN": ""}, None),  # empty: the preset's value
        ({"ARCH": "mlp", "HIDDEN": ","}, "HIDDEN: an mlp needs at least one hidden layer size"),
    ],
)
def test_a_bad_make_variable_is_one_line_naming_it(env, fragment):
    if fragment is None:
        assert parse(environ=env).hidden == (512, 256)
        return
    with pytest.raises(KitError) as error:
        parse(environ=env)
    assert fragment in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize(
    "name",
    [
        n
        for n, f in config.CONFIG_FIELDS.items()
        if f.metadata["at_least"] is not None
        or f.metadata["above"] is not None
        or f.metadata["below"] is not None
    ],
)
def test_every_declared_bound_is_enforced_at_its_edge(name):
    """The bounds on the field are the check: a value just inside passes, just outside fails."""
    meta, kind = config.CONFIG_FIELDS[name].metadata, config.field_type(name)
    base = {"arch": "cnn"} if name in ("conv_channels", "convs_per_block") else {}

    def made(value):
        value = (value,) if kind is tuple else value
        return config.make_config("default", **base, **{name: value})

    step = 1 if kind in (int, tuple) else 1e-9
    if meta["at_least"] is not None:
        made(meta["at_least"])
        with pytest.raises(KitError, match=config.make_variable(name)):
            made(meta["at_least"] - step)
    if meta["above"] is not None:
        made(meta["above"] + step)
        with pytest.raises(KitError, match="must be above"):
            made(meta["above"])
    if meta["below"] is not None:
        made(meta["below"] - step)
        with pytest.raises(KitError, match=r"must be in \["):
            made(meta["below"])


def test_a_setting_that_does_nothing_is_named(capsys):
    """MAX_WARP needs AUGMENT=1, CHANNELS needs ARCH=cnn: said in one line each, the run goes on."""
    made = parse(environ={"PRESET": "reference", "MAX_WARP": "2", "CHANNELS": "8,16", "MOMENTUM": "0.5"})
    out = capsys.readouterr().out
    assert made.max_warp == 2.0
    assert "note: MAX_WARP=2.0 does nothing without AUGMENT=1" in out
    assert "note: CHANNELS=8,16 does nothing without ARCH=cnn" in out
    assert "note: MOMENTUM=0.5 does nothing without OPTIMIZER other than sgd" in out
    parse(environ={"PRESET": "best", "MAX_WARP": "2", "CHANNELS": "8,16"})
    assert "does nothing" not in capsys.readouterr().out  # the best preset augments and is a CNN


def test_a_config_file_with_wrong_types_is_one_line_naming_the_field():
    values = config.make_config("default").to_dict()
    assert config.Config.from_dict(json.loads(json.dumps(values))) == config.make_config("default")
    for field, bad, fragment in [
        ("lr", "fast", "config.json, lr: 'fast' is str; expected a number"),
        ("epochs", 2.5, "epochs: 2.5 is float"),
        ("hidden", [8, "x"], "hidden: [8, 'x'] is not a list of whole numbers"),
        ("augment", "maybe", "augment: 'maybe' is str; expected true or false"),
    ]:
        with pytest.raises(KitError, match=fragment.replace("[", r"\[")):
            config.Config.from_dict({**values, field: bad}, where="models/x/config.json")
    assert config.Config.from_dict({**values, "a_newer_field": 1}).lr == values["lr"]  # ignored, not refused


@pytest.mark.parametrize("preset", list(config.PRESETS))
def test_every_value_reads_back_as_it_is_written(preset):
    made = config.make_config(preset)
    for name in config.CONFIG_FIELDS:
        value = getattr(made, name)
        assert config.parse_value(name, config.format_value(value)) == value, name


def test_describe_says_what_the_network_is():
    assert config.describe(config.make_config("reference"), network_only=True) == "784-128-64-10"
    best = config.make_config("best", ensemble=2, convs_per_block=2)
    assert config.describe(best, network_only=True) == "cnn conv 32,64,128 x2 dense 256 x2 members"
    assert config.describe(config.make_config("reference")).startswith(
        "784-128-64-10, sgd lr 0.01 (constant)"
    )
    assert math.isclose(config.make_config("best").lr, 2e-3)


def test_readme_table_is_the_generated_one():
    readme = (ROOT / "README.md").read_text()
    start = readme.index("<!-- config-table")
    body = readme[readme.index("\n", start) + 1 : readme.index("<!-- /config-table -->")]
    assert body == markdown_table(), "README's table is stale: paste `kit config --markdown` into it"


def test_make_help_lists_every_variable():
    text = make_help()
    for name in config.CONFIG_FIELDS:
        assert f"  {config.make_variable(name)}=" in text


def make(target: str, *variables: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """`make <target>` of the checkout's Makefile in `cwd`, with the checkout's .venv; -o: the
    environment counts as up to date, so make never reinstalls it from there."""
    venv = ROOT / ".venv"
    if not (venv / "bin" / "python").exists():
        pytest.skip("no .venv in the checkout")
    command = [
        "make",
        "-s",
        "-f",
        str(ROOT / "Makefile"),
        "-o",
        f"{venv}/.installed",
        target,
        f"VENV={venv}",
        f"STAMP={venv}/.installed",
        *variables,
    ]
    return subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, timeout=300, env=env or dict(os.environ)
    )


def saved_config(run_dir: Path) -> config.Config:
    return config.Config.from_dict(json.loads((run_dir / "config.json").read_text()))


@pytest.mark.slow
def test_make_train_takes_the_command_line_and_not_the_shell(tmp_path, competition):
    """Variables no Makefile line names reach the run's config; the same names merely exported
    in the shell (EPOCHS, SEED, LR) do not."""
    variables = [
        f"TRAIN={competition / 'train.csv'}",
        "PRESET=reference",
        "EPOCHS=2",
        "HIDDEN=16",
        "GRAD_CLIP=2.5",
        "MAX_ROTATE=3",
        "ACTIVATION=tanh",
        "VAL_FRACTION=0.2",
        "REPORT=0",
    ]
    shell = {**os.environ, "EPOCHS": "7", "SEED": "3", "LR": "0.5"}
    result = make("train", *variables, cwd=tmp_path, env=shell)
    assert result.returncode == 0, result.stderr
    saved = saved_config(tmp_path / "models" / "latest")
    assert (saved.epochs, saved.hidden, saved.grad_clip, saved.max_rotate, saved.activation) == (
        2,
        (16,),
        2.5,
        3.0,
        "tanh",
    )
    assert (saved.seed, saved.lr) == (0, 0.01)  # the shell's SEED and LR: not on the command line


@pytest.mark.slow
def test_make_demo_takes_every_training_variable(tmp_path):
    result = make("demo", "PRESET=reference", "EPOCHS=1", "HIDDEN=16", "SEED=2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    saved = saved_config(tmp_path / "models" / "demo" / "latest")
    assert (saved.preset, saved.epochs, saved.hidden, saved.seed) == ("reference", 1, (16,), 2)
    assert (tmp_path / "submissions" / "demo" / "submission.csv").is_file()
