"""One source of truth: every Config field becomes a flag, a Make variable and a README row."""

from __future__ import annotations

import dataclasses
import os
import subprocess
from pathlib import Path

import pytest

from kit import config
from kit.cli import build_parser, config_from_args
from kit.core.errors import KitError

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def competition(tmp_path_factory) -> Path:
    from synthetic import write_competition

    return write_competition(tmp_path_factory.mktemp("data"), n_train=200, n_test=20)


def parse(*argv: str, environ=None) -> config.Config:
    return config_from_args(build_parser().parse_args(["train", *argv]), environ=environ or {})


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
    from_make = parse("--make-vars", environ={config.make_variable(name): value})
    assert getattr(from_flag, name) == getattr(from_make, name) == expected
    assert expected != default


def test_flags_win_over_make_variables_which_win_over_the_preset():
    env = {"LR": "0.5", "HIDDEN": "8,4", "PRESET": "reference", "EPOCHS": ""}
    assert parse("--make-vars", environ=env).lr == 0.5
    assert parse("--make-vars", "--lr", "0.25", environ=env).lr == 0.25
    made = parse("--make-vars", environ=env)
    assert (made.preset, made.hidden, made.epochs) == ("reference", (8, 4), 20)  # empty = the preset's
    assert parse(environ=env).lr == config.make_config("default").lr  # no --make-vars: environment ignored


@pytest.mark.parametrize(
    "env, fragment",
    [
        ({"LR": "fast"}, "LR='fast': give a number"),
        ({"AUGMENT": "maybe"}, "AUGMENT='maybe': give 1 or 0"),
        ({"HIDDEN": "12,x"}, "HIDDEN '12,x'"),
        ({"OPTIMIZER": "adamm"}, "optimizer 'adamm': choose one of"),
        ({"PRESET": "fastest"}, "unknown preset 'fastest'"),
        ({"MOMENTUM": "1.5"}, "momentum 1.5"),
    ],
)
def test_a_bad_make_variable_is_one_line_naming_it(env, fragment):
    with pytest.raises(KitError) as error:
        parse("--make-vars", environ=env)
    assert fragment in str(error.value) and "\n" not in str(error.value)


def test_readme_table_is_the_generated_one():
    readme = (ROOT / "README.md").read_text()
    start = readme.index("<!-- config-table")
    body = readme[readme.index("\n", start) + 1 : readme.index("<!-- /config-table -->")]
    assert body == config.markdown_table(), "README's table is stale: paste `kit config --markdown` into it"


def test_make_help_lists_every_variable():
    text = config.make_help()
    for name in config.CONFIG_FIELDS:
        assert f"  {config.make_variable(name)}=" in text


@pytest.mark.slow
def test_make_train_passes_any_field_through(tmp_path, competition):
    """`make train` with Make variables that no Makefile line names: they reach the run's config."""
    venv = ROOT / ".venv"
    if not (venv / "bin" / "python").exists():
        pytest.skip("no .venv in the checkout")
    # -o: the virtual environment counts as up to date, so make never reinstalls it from here
    command = [
        "make",
        "-s",
        "-f",
        str(ROOT / "Makefile"),
        "-o",
        f"{venv}/.installed",
        "train",
        f"VENV={venv}",
        f"STAMP={venv}/.installed",
        f"TRAIN={competition / 'train.csv'}",
        "PRESET=reference",
        "EPOCHS=2",
        "HIDDEN=16",
        "GRAD_CLIP=2.5",
        "MAX_ROTATE=3",
        "ACTIVATION=tanh",
        "VAL_FRACTION=0.2",
    ]
    result = subprocess.run(
        command,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={k: v for k, v in os.environ.items() if k not in ("LR", "EPOCHS")},
    )
    assert result.returncode == 0, result.stderr
    saved = config.Config.from_dict(
        __import__("json").loads((tmp_path / "models" / "latest" / "config.json").read_text())
    )
    assert (saved.epochs, saved.hidden, saved.grad_clip, saved.max_rotate, saved.activation) == (
        2,
        (16,),
        2.5,
        3.0,
        "tanh",
    )
