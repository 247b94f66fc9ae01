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

import difflib
import itertools
import json
import math
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kit.config import CONFIG_FIELDS, coerce_value, field_type, format_value, make_config, make_variable
from kit.core.errors import KitError

METHODS = ("random", "grid")
RANGES = ("uniform", "log_uniform")
TOP_LEVEL = ("method", "trials", "fixed", "space")


def not_swept(name: str) -> str | None:
    """Why a sweep may not vary this Config field (None: it may); the field's own rule."""
    meta = CONFIG_FIELDS[name].metadata
    return "it changes speed, not results" if meta["speed_only"] else meta["not_swept"]


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
        n_trials = min(n_trials, self.distinct_trials() or n_trials)
        trials: list[dict[str, Any]] = []
        seen = set()
        for _ in range(n_trials * 1000):  # a rounded range can run out of new values: stop somewhere
            if len(trials) == n_trials:
                break
            values = {d.name: _draw(d, field_type(d.name), rng) for d in self.dims}
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
    fixed = {}
    for name, value in fixed_table.items():
        _check_name(path, "fixed", name)
        if name == "preset":
            raise KitError(f"{path}, fixed.preset: the base is PRESET=, not an entry of the space file")
        fixed[name] = coerce_value(name, value, f"{path}, fixed.{name}")
    dims = []
    for name, spec in space_table.items():
        _check_name(path, "space", name)
        where = f"{path}, space.{name}"
        if not_swept(name):
            raise KitError(f"{where}: not swept: {not_swept(name)}")
        if name in fixed:
            raise KitError(f"{where}: also in [fixed]; keep it in one of the two")
        dims.append(_dimension(name, spec, where, method))
    return Space(path, text, method, trials, fixed, dims)


def _check_name(path: Path, section: str, name: str) -> None:
    if name not in CONFIG_FIELDS:
        close = difflib.get_close_matches(name, list(CONFIG_FIELDS), n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        raise KitError(
            f"{path}, {section}.{name}: no such setting; {hint}settings are kit.config.Config's "
            f"fields: {', '.join(CONFIG_FIELDS)}"
        )


def _dimension(name: str, spec: Any, where: str, method: str) -> Dimension:
    hint = field_type(name)
    if isinstance(spec, list):
        if not spec:
            raise KitError(f"{where}: an empty list; give at least one value")
        return Dimension(
            name, "choice", tuple(coerce_value(name, value, f"{where}[{i}]") for i, value in enumerate(spec))
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


def check_space(space: Space, preset: str, overrides: dict[str, Any]) -> None:
    """Check every value against the base config (PRESET= and the command line's `overrides`)
    before any trial starts: each fixed value and each choice (or range end) must make a valid
    config, no swept field may also come from the command line, and a swept field that only acts
    with another setting (CNN channels on an MLP) must be able to act in some trial."""
    base = {**space.fixed, **overrides}
    for name, value in space.fixed.items():
        _try_config(
            preset, name, {**base, name: value}, f"{space.path}, fixed.{name} = {format_value(value)}"
        )
    for dim in space.dims:
        where = f"{space.path}, space.{dim.name}"
        if dim.name in overrides:
            raise KitError(
                f"{where}: swept here and set on the command line "
                f"({make_variable(dim.name)}={format_value(overrides[dim.name])}); drop one"
            )
        for value in dim.extremes(field_type(dim.name)):
            _try_config(preset, dim.name, {**base, dim.name: value}, f"{where} = {format_value(value)}")
    base_config = make_config(preset, **base)
    swept = {dim.name: dim for dim in space.dims}
    entries = [("fixed", name) for name in space.fixed] + [("space", dim.name) for dim in space.dims]
    for section, name in entries:
        needs = CONFIG_FIELDS[name].metadata["needs"]
        if needs is None:
            continue
        other = swept.get(needs.field)
        possible = other.values if other and other.kind == "choice" else (getattr(base_config, needs.field),)
        if not any(needs.met(value) for value in possible):
            raise KitError(
                f"{space.path}, {section}.{name}: only used with {needs.text(toml=True)}, and every trial "
                f"has {needs.field} = {format_value(possible[0])} (PRESET={preset}); set {needs.field} in "
                "[fixed] or choose another PRESET"
            )


def _try_config(preset: str, name: str, values: dict[str, Any], where: str) -> None:
    """make_config with these values, its one-line error under `where` (the entry and its value)."""
    try:
        make_config(preset, **values)
    except KitError as error:
        text = str(error)
        shown = f"{make_variable(name)}={format_value(values[name])}: "
        raise KitError(f"{where}: {text.removeprefix(shown)}") from None
