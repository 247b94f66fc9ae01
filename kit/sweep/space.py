"""A sweep's search space: the file `make sweep SPACE=` reads, checked whole before any trial
starts, and the trials it plans.

    # sweeps/default-mlp.toml
    method = "random"                  # "random" (the default) or "grid"
    trials = 8                         # trials to run (TRIALS= overrides); a grid: all its points

    [fixed]                            # the same in every trial, on top of PRESET=
    epochs = 10

    [space]                            # one entry per swept field of kit.config.Config
    lr = { log_uniform = [5e-4, 5e-3] }
    dropout = [0.0, 0.1, 0.2]          # a list: the values to choose among
    hidden = [[256, 128], [512, 256]]  # a tuple field: a list of lists
    weight_decay = { uniform = [0.0, 0.05] }

A list is a choice (grid: every value; random: one drawn uniformly). `{uniform = [low, high]}`
and `{log_uniform = [low, high]}` are ranges of a number field (random only; whole numbers
for an int field; a float drawn is rounded to 3 significant digits, so it reads well in the
results and on a `make train` line). JSON works too: {"method": ..., "fixed": {...}, "space": {...}}.

Random trials are drawn one after another from np.random.default_rng(seed) (the base config's
seed), so trial n is the same whatever TRIALS= says: a longer sweep extends a shorter one.
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import json
import math
import os
import tomllib
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kit.config import Config, make_config, parse_int_tuple
from kit.core.errors import KitError

METHODS = ("random", "grid")
RANGES = ("uniform", "log_uniform")
TOP_LEVEL = ("method", "trials", "fixed", "space")

# Fields a sweep may not vary, and why (they may still be set in [fixed] or on the command line).
NOT_SWEPT = {
    "preset": "the base is PRESET=, not a swept value",
    "tta": "test-time augmentation does not change the validation accuracy a sweep ranks by",
    "refit": "a refit does not change the validation accuracy a sweep ranks by (it is scored before)",
    "blas_threads": "BLAS threads change speed, not results",
    "eval_batch_size": "the evaluation batch changes speed, not results",
}

# Fields that only act when another field has a certain value: (that field, test, what it needs).
ONLY_WHEN = {
    "conv_channels": ("arch", lambda v: v == "cnn", 'arch = "cnn"'),
    "max_shift": ("augment", bool, "augment = true"),
    "max_rotate": ("augment", bool, "augment = true"),
    "max_scale": ("augment", bool, "augment = true"),
    "warmup_epochs": ("schedule", lambda v: v == "warmup_cosine", 'schedule = "warmup_cosine"'),
    "momentum": ("optimizer", lambda v: v != "sgd", "an optimizer other than sgd"),
}


@dataclass
class Dimension:
    """One swept field: a choice among `values`, or a range (low, high) drawn uniformly or log-uniformly."""

    name: str
    kind: str  # "choice", "uniform" or "log_uniform"
    values: tuple

    def extremes(self, hint) -> tuple:
        """Every value a choice may take, or the ends of a range (whole numbers for an int field)."""
        if self.kind == "choice":
            return self.values
        low, high = self.values
        return (math.ceil(low), math.floor(high)) if hint is int else (low, high)


@dataclass
class Space:
    path: Path
    text: bytes  # the file as given, copied into the sweep folder
    method: str
    trials: int | None  # the file's trial count (None: a grid's size; random: 8)
    fixed: dict[str, Any]
    dims: list[Dimension]

    def grid_size(self) -> int:
        return math.prod(len(d.values) for d in self.dims)

    def default_trials(self) -> int:
        if self.trials:
            return self.trials
        return self.grid_size() if self.method == "grid" else 8

    def distinct_trials(self) -> int | None:
        """How many different trials the space holds: its grid size when every entry is a list
        (random draws then never repeat one), None when a range makes it unbounded."""
        return self.grid_size() if all(d.kind == "choice" for d in self.dims) else None

    def plan(self, n_trials: int, seed: int) -> list[dict[str, Any]]:
        """The swept values of trials 1..n_trials, in order (a grid: its first n points; random:
        draws in sequence, a repeat of an earlier trial drawn again, so at most distinct_trials())."""
        if self.method == "grid":
            points = itertools.product(*(d.values for d in self.dims))
            return [
                dict(zip((d.name for d in self.dims), point)) for point in itertools.islice(points, n_trials)
            ]
        rng = np.random.default_rng(seed)
        hints = field_types()
        n_trials = min(n_trials, self.distinct_trials() or n_trials)
        trials: list[dict[str, Any]] = []
        seen = set()
        for _ in range(n_trials * 1000):  # a rounded range can run out of new values: stop somewhere
            if len(trials) == n_trials:
                break
            values = {d.name: _draw(d, hints[d.name], rng) for d in self.dims}
            key = tuple(format_value(v) for v in values.values())
            if key not in seen:
                seen.add(key)
                trials.append(values)
        return trials


def _draw(dim: Dimension, hint, rng: np.random.Generator) -> Any:
    if dim.kind == "choice":
        return dim.values[int(rng.integers(len(dim.values)))]
    low, high = dim.values
    if dim.kind == "log_uniform":
        value = math.exp(rng.uniform(math.log(low), math.log(high)))
    else:
        value = rng.uniform(low, high)
    if hint is int:
        return int(min(max(round(value), math.ceil(low)), math.floor(high)))
    return min(max(float(f"{value:.3g}"), low), high)


def field_types() -> dict[str, Any]:
    """Config's fields and their types: {"lr": float, "hidden": tuple[int, ...], ...}."""
    hints = typing.get_type_hints(Config)
    return {f.name: hints[f.name] for f in dataclasses.fields(Config)}


def format_value(value: Any) -> str:
    """A value as results.csv and a Make variable write it: tuples as 512,256, bools as 0/1."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return repr(value) if isinstance(value, float) else str(value)


# --------------------------------------------------------------------------- reading and checking


def read_space(path: str | os.PathLike) -> Space:
    """Parse a space file (.toml or .json) and check its form and types; one-line KitError
    naming the file and entry otherwise. The values against a preset: check_space."""
    path = Path(path)
    if not path.is_file():
        raise KitError(f"{path}: space file not found; the shipped example is sweeps/default-mlp.toml")
    text = path.read_bytes()
    if path.suffix == ".toml":
        try:
            document = tomllib.loads(text.decode("utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
            raise KitError(f"{path}: not valid TOML: {error}") from None
    elif path.suffix == ".json":
        try:
            document = json.loads(text.decode("utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            where = (
                f"line {error.lineno}, column {error.colno}: "
                if isinstance(error, json.JSONDecodeError)
                else ""
            )
            raise KitError(f"{path}: not valid JSON: {where}{getattr(error, 'msg', error)}") from None
    else:
        raise KitError(f"{path}: a space file is .toml or .json")
    if not isinstance(document, dict):
        raise KitError(f"{path}: expected a table with [space] (and optionally method, trials, [fixed])")
    for key in document:
        if key not in TOP_LEVEL:
            raise KitError(f"{path}, {key}: unknown entry; a space file has {', '.join(TOP_LEVEL)}")
    method = document.get("method", "random")
    if method not in METHODS:
        raise KitError(f"{path}, method: {method!r}; choose random or grid")
    trials = document.get("trials")
    if trials is not None and (isinstance(trials, bool) or not isinstance(trials, int) or trials < 1):
        raise KitError(f"{path}, trials: {trials!r}; give a whole number of at least 1")
    fixed_table = document.get("fixed", {})
    space_table = document.get("space", {})
    for section, table in (("fixed", fixed_table), ("space", space_table)):
        if not isinstance(table, dict):
            raise KitError(f"{path}, {section}: expected a table of settings, e.g. [{section}] lr = ...")
    if not space_table:
        raise KitError(f"{path}, space: no settings to sweep; add e.g. lr = [0.001, 0.003] under [space]")
    types = field_types()
    fixed = {}
    for name, value in fixed_table.items():
        _check_name(path, "fixed", name, types)
        if name == "preset":
            raise KitError(f"{path}, fixed.preset: the base is PRESET=, not an entry of the space file")
        fixed[name] = convert(value, types[name], f"{path}, fixed.{name}")
    dims = []
    for name, spec in space_table.items():
        _check_name(path, "space", name, types)
        where = f"{path}, space.{name}"
        if name in NOT_SWEPT:
            raise KitError(f"{where}: not swept: {NOT_SWEPT[name]}")
        if name in fixed:
            raise KitError(f"{where}: also in [fixed]; keep it in one of the two")
        dims.append(_dimension(name, spec, types[name], where, method))
    return Space(path, text, method, trials, fixed, dims)


def _check_name(path: Path, section: str, name: str, types: dict) -> None:
    if name not in types:
        close = difflib.get_close_matches(name, list(types), n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        raise KitError(
            f"{path}, {section}.{name}: no such setting; {hint}settings are kit.config.Config's "
            f"fields: {', '.join(types)}"
        )


def _dimension(name: str, spec: Any, hint, where: str, method: str) -> Dimension:
    if isinstance(spec, list):
        if not spec:
            raise KitError(f"{where}: an empty list; give at least one value")
        return Dimension(
            name, "choice", tuple(convert(value, hint, f"{where}[{i}]") for i, value in enumerate(spec))
        )
    if isinstance(spec, dict):
        if len(spec) != 1 or next(iter(spec)) not in RANGES:
            raise KitError(
                f"{where}: a range is {{uniform = [low, high]}} or {{log_uniform = [low, high]}}, "
                f"not {spec!r}"
            )
        kind, bounds = next(iter(spec.items()))
        if hint not in (int, float):
            raise KitError(f"{where}: {kind} needs a number setting; give {name} a list of values")
        if method == "grid":
            raise KitError(
                f'{where}: a range cannot be a grid axis; give a list of values or use method = "random"'
            )
        if (
            not isinstance(bounds, list)
            or len(bounds) != 2
            or not all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in bounds)
        ):
            raise KitError(f"{where}: {kind} needs [low, high], two numbers; got {bounds!r}")
        low, high = (float(b) for b in bounds)
        if not (math.isfinite(low) and math.isfinite(high)) or low > high:
            raise KitError(f"{where}: an empty range [{bounds[0]}, {bounds[1]}]; low must not exceed high")
        if kind == "log_uniform" and low <= 0:
            raise KitError(f"{where}: log_uniform needs low > 0; got {bounds[0]}")
        if hint is int and math.ceil(low) > math.floor(high):
            raise KitError(f"{where}: an empty range [{bounds[0]}, {bounds[1]}]: no whole number in it")
        return Dimension(name, kind, (low, high))
    raise KitError(
        f"{where}: give a list of values or a range ({{uniform = [low, high]}}); "
        f"a single value belongs in [fixed]"
    )


def convert(value: Any, hint, where: str) -> Any:
    """One value for a Config field of type `hint`, converted (list -> tuple); KitError otherwise."""
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if hint is bool and isinstance(value, bool):
        return value
    if hint is bool and value in (0, 1) and not isinstance(value, float):
        return bool(value)
    if hint is str and isinstance(value, str):
        return value
    if typing.get_origin(hint) is tuple:
        if isinstance(value, str):
            return parse_int_tuple(value, where)
        if (
            isinstance(value, list)
            and value
            and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        ):
            return tuple(value)
        raise KitError(f"{where}: {value!r} is not a list of whole numbers, e.g. [256, 128]")
    wanted = {float: "a number", int: "a whole number", bool: "true or false", str: "a string"}.get(
        hint, str(hint)
    )
    raise KitError(f"{where}: {value!r} is {type(value).__name__}; expected {wanted}")


def check_space(space: Space, preset: str, overrides: dict[str, Any]) -> None:
    """Check every value against the base config (PRESET= and the command line's `overrides`)
    before any trial starts: each fixed value and each choice (or range end) must make a valid
    config, no swept field may also come from the command line, and a swept field that only acts
    with another setting (CNN channels on an MLP) must be able to act in some trial."""
    from kit.config import make_variable

    base = {**space.fixed, **overrides}
    for name, value in space.fixed.items():
        _try_config(preset, {**base, name: value}, f"{space.path}, fixed.{name}")
    for dim in space.dims:
        where = f"{space.path}, space.{dim.name}"
        if dim.name in overrides:
            raise KitError(
                f"{where}: swept here and set on the command line "
                f"({make_variable(dim.name)}={format_value(overrides[dim.name])}); drop one"
            )
        for value in dim.extremes(field_types()[dim.name]):
            _try_config(preset, {**base, dim.name: value}, f"{where} = {format_value(value)}")
    base_config = make_config(preset, **base)
    swept = {dim.name: dim for dim in space.dims}
    entries = [("fixed", name) for name in space.fixed] + [("space", dim.name) for dim in space.dims]
    for section, name in entries:
        if name not in ONLY_WHEN:
            continue
        other, acts, needs = ONLY_WHEN[name]
        if other in swept and swept[other].kind == "choice":
            possible = swept[other].values
        else:
            possible = (getattr(base_config, other),)
        if not any(acts(value) for value in possible):
            raise KitError(
                f"{space.path}, {section}.{name}: only used with {needs}, and every trial has "
                f"{other} = {format_value(possible[0])} (PRESET={preset}); set {other} in [fixed] "
                f"or choose another PRESET"
            )


def _try_config(preset: str, values: dict[str, Any], where: str) -> None:
    try:
        make_config(preset, **values)
    except KitError as error:
        raise KitError(f"{where}: {error}") from None
    except (TypeError, ValueError) as error:
        raise KitError(f"{where}: {error}") from None
