"""The one configuration of a run: every setting declared once, with its rules, and the presets.

Precedence: dataclass defaults < preset < Make variables < command-line flags. A field's
declaration holds everything about it: default, help line, Make variable and flag, its bounds,
the setting it needs to act (MAX_WARP needs AUGMENT=1), and whether a sweep may vary it. The
flags (kit/cli.py), `make help`, the README's table, `validate`, the sweep space's checks
(kit/sweep/space.py) and the sweep id follow from it. The resolved Config is stored with every
run as config.json.
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from dataclasses import dataclass, field
from typing import Any

from kit.core.errors import KitError
from kit.nn.layers import ACTIVATIONS
from kit.nn.optim import OPTIMIZERS
from kit.nn.schedules import SCHEDULES

ARCHS = ("mlp", "cnn")


@dataclass(frozen=True)
class Needs:
    """A field acts only when another field has one of `values` (or, with `other_than`, any
    value but those): conv_channels needs arch = cnn."""

    field: str
    values: tuple
    other_than: bool = False

    def met(self, value: Any) -> bool:
        return (value in self.values) != self.other_than

    def text(self, toml: bool = False) -> str:
        """'AUGMENT=1', 'OPTIMIZER other than sgd'; as a space file writes it: 'augment = true'."""
        if toml:
            name, values = self.field, [json.dumps(v) for v in self.values]
        else:
            name, values = make_variable(self.field), [format_value(v) for v in self.values]
        joined = " or ".join(values)
        if self.other_than:
            return f"{name} other than {joined}"
        return f"{name} = {joined}" if toml else f"{name}={joined}"


CNN = Needs("arch", ("cnn",))
AUGMENT = Needs("augment", (True,))


def option(
    default: Any,
    help: str,
    *,
    make: str | None = None,
    flag: str | None = None,
    choices: str | None = None,
    at_least: float | None = None,
    above: float | None = None,
    below: float | None = None,
    needs: Needs | None = None,
    not_swept: str | None = None,
    speed_only: bool = False,
) -> Any:
    """A Config field and its rules. `help`: one line; `make`/`flag`: the Make variable and the
    flag (default: NAME and --name); `choices`: the registry a name is picked from;
    `at_least`/`above`/`below`: bounds (each entry of a tuple field too); `needs`: the setting
    without which it does nothing; `not_swept`: why a sweep may not vary it; `speed_only`: it
    changes how fast, not what is trained (not swept, not part of a sweep's id)."""
    metadata = {key: value for key, value in locals().items() if key != "default"}  # the rules, by name
    return field(default=default, metadata=metadata)


@dataclass
class Config:
    """Every setting of a run. Adding a hyperparameter is one line here (plus its use): its
    flag (`kit train --help`), Make variable (`make help`), checks and README row follow."""

    # A setting per entry, each its own table row (kept as written, not reformatted).
    # fmt: off
    # --- what to train
    preset: str = option("default", "named configuration the other values start from", choices="PRESETS",
                         not_swept="the base is PRESET=, not a swept value")
    arch: str = option("mlp", "network family (cnn: conv blocks, then dense layers)", choices="ARCHS")
    hidden: tuple[int, ...] = option((128, 64), "hidden dense sizes, e.g. 128,64", at_least=1)
    conv_channels: tuple[int, ...] = option((32, 64), "cnn: channels per conv block (3x3 conv, 2x2 "
                                            "max-pool), e.g. 32,64", make="CHANNELS", flag="--channels",
                                            at_least=1, needs=CNN)
    convs_per_block: int = option(1, "cnn: 3x3 convolutions (each with batch norm and activation) per block",
                                  at_least=1, needs=CNN)
    activation: str = option("relu", "hidden activation", choices="ACTIVATIONS")
    dropout: float = option(0.0, "drop probability after each hidden dense layer (0 = off)", at_least=0,
                            below=1)
    batch_norm: bool = option(False, "batch normalisation before each hidden activation")
    # --- how to train
    optimizer: str = option("sgd", "optimiser", choices="OPTIMIZERS")
    lr: float = option(0.01, "(peak) learning rate", above=0)
    momentum: float = option(0.9, "momentum / nesterov: velocity decay; adam, adamw: beta1", at_least=0,
                             below=1, needs=Needs("optimizer", ("sgd",), other_than=True))
    weight_decay: float = option(0.0, "L2 penalty (sgd, momentum, adam) or decoupled decay (adamw)",
                                 at_least=0)
    schedule: str = option("constant", "learning-rate schedule", choices="SCHEDULES")
    warmup_epochs: float = option(0.0, "warmup_cosine: epochs of linear warm-up", at_least=0,
                                  needs=Needs("schedule", ("warmup_cosine",)))
    label_smoothing: float = option(0.0, "share of the target spread over all classes", at_least=0, below=1)
    grad_clip: float = option(0.0, "clip the global gradient norm to this (0 = off)", at_least=0)
    epochs: int = option(20, "passes over the training rows", at_least=1)
    batch_size: int = option(64, "rows per gradient step", make="BATCH", flag="--batch", at_least=1)
    patience: int = option(0, "early stop after N epochs without a better validation score (0 = off)",
                           at_least=0)
    # --- data
    val_fraction: float = option(0.1, "stratified validation share (0 = train on all rows)", at_least=0,
                                 below=1)
    augment: bool = option(False, "random shifts, rotations and zoom of training images, on the fly")
    max_shift: float = option(2.0, "augment: largest shift in pixels", at_least=0, needs=AUGMENT)
    max_rotate: float = option(10.0, "augment: largest rotation in degrees", at_least=0, needs=AUGMENT)
    max_scale: float = option(0.1, "augment: largest relative zoom in or out", at_least=0, needs=AUGMENT)
    max_warp: float = option(0.0, "augment: elastic warp, largest displacement in pixels of a smooth random "
                             "field (0 = off)", at_least=0, needs=AUGMENT)
    # --- after training
    refit: bool = option(False, "retrain on all rows (train + validation) for the best epoch's count",
                         not_swept="a refit does not change the validation accuracy a sweep ranks by")
    ensemble: int = option(1, "members trained with different seeds; their probabilities are averaged",
                           at_least=1)
    tta: bool = option(False, "test-time augmentation: average predictions over small shifts",
                       not_swept="test-time augmentation does not change the validation accuracy a sweep "
                       "ranks by")
    # --- bookkeeping
    seed: int = option(0, "the one seed: init, split, shuffle, dropout, augmentation", at_least=0)
    eval_batch_size: int = option(4096, "rows per forward pass when evaluating and predicting",
                                  make="EVAL_BATCH", flag="--eval-batch", at_least=1, speed_only=True)
    blas_threads: int = option(0, "BLAS threads for training (0 = all cores; see kit/core/blas.py)",
                               make="THREADS", flag="--threads", at_least=0, speed_only=True)
    # fmt: on

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, values: dict[str, Any], where: str = "config") -> Config:
        """A Config from JSON-like values (config.json, a model file): each known field converted
        to its type (one line naming `where` and the field otherwise); unknown ones, from a newer
        kit, are ignored rather than refusing an old model."""
        if not isinstance(values, dict):
            raise KitError(f"{where}: not a table of settings")
        return cls(
            **{
                name: coerce_value(name, value, f"{where}, {name}")
                for name, value in values.items()
                if name in CONFIG_FIELDS
            }
        )


# Each preset names only what differs from the dataclass defaults.
# fmt: off
PRESETS: dict[str, dict[str, Any]] = {
    # The notebook this kit grew from, exactly: 784-128-64-10, plain mini-batch SGD.
    "reference": dict(arch="mlp", hidden=(128, 64), optimizer="sgd", lr=0.01, batch_size=64, epochs=20,
                      schedule="constant"),
    # The everyday choice: a wider MLP, AdamW with warm-up + cosine, light augmentation.
    "default": dict(arch="mlp", hidden=(512, 256), optimizer="adamw", lr=2e-3, weight_decay=1e-2,
                    schedule="warmup_cosine", warmup_epochs=1.0, batch_size=128, epochs=30, dropout=0.1,
                    augment=True, max_shift=2.0, max_rotate=8.0, max_scale=0.08),
    # Spends more time (under a quarter of an hour on 2 cores): a CNN of three conv blocks with
    # batch norm and augmentation; one member for 24 epochs beat two for 12 each in the same
    # time (bench/accuracy.md). A CNN evaluates 256 rows at a time.
    "best": dict(arch="cnn", conv_channels=(32, 64, 128), hidden=(256,), optimizer="adamw", lr=2e-3,
                 weight_decay=5e-4, schedule="onecycle", batch_size=128, epochs=24, dropout=0.25,
                 batch_norm=True, augment=True, max_shift=2.0, max_rotate=10.0, max_scale=0.1,
                 label_smoothing=0.1, ensemble=1, eval_batch_size=256),
}
# fmt: on


def make_config(preset: str = "default", **overrides: Any) -> Config:
    """Defaults, then the preset, then every override that is not None; checked."""
    if preset not in PRESETS:
        raise KitError(f"unknown preset {preset!r}; choose one of: {', '.join(PRESETS)}")
    values = dict(PRESETS[preset], preset=preset)
    values.update({k: v for k, v in overrides.items() if v is not None})
    config = Config.from_dict(values)
    validate(config)
    return config


def validate(config: Config) -> None:
    """Refuse settings that cannot work, with one line naming the setting: each field's type,
    registry and bounds as declared, then the one rule across fields."""
    for name in CONFIG_FIELDS:
        check_value(name, getattr(config, name))
    if config.arch == "mlp" and not config.hidden:
        raise KitError("HIDDEN: an mlp needs at least one hidden layer size, e.g. HIDDEN=128,64")


def check_value(name: str, value: Any) -> None:
    """One field's value against its declaration: type, choices, finite, bounds."""
    meta, kind = CONFIG_FIELDS[name].metadata, field_type(name)
    shown = f"{make_variable(name)}={format_value(value)}"
    coerce_value(name, value, make_variable(name))  # the type
    if meta["choices"]:
        if value not in choices(name):
            raise KitError(f"{shown}: choose one of {', '.join(choices(name))}")
        return
    numbers = value if kind is tuple else (value,) if kind in (int, float) else ()
    for number in numbers:
        if not math.isfinite(number):
            raise KitError(f"{shown}: give a finite number")
        if meta["at_least"] is not None and number < meta["at_least"]:
            raise KitError(
                f"{shown}: {'each size ' if kind is tuple else ''}must be at least {meta['at_least']:g}"
                + (f" and below {meta['below']:g}" if meta["below"] is not None else "")
            )
        if meta["above"] is not None and number <= meta["above"]:
            raise KitError(f"{shown}: must be above {meta['above']:g}")
        if meta["below"] is not None and number >= meta["below"]:
            raise KitError(f"{shown}: must be in [{meta['at_least']:g}, {meta['below']:g})")


def ignored_settings(config: Config, names: list[str]) -> list[str]:
    """Of the fields `names` (those the user set), the ones this config makes do nothing, each as
    a line: 'MAX_WARP=2 does nothing without AUGMENT=1'."""
    lines = []
    for name in names:
        needs = CONFIG_FIELDS[name].metadata["needs"]
        if needs is not None and not needs.met(getattr(config, needs.field)):
            value = format_value(getattr(config, name))
            lines.append(f"{make_variable(name)}={value} does nothing without {needs.text()}")
    return lines


# --------------------------------------------------------------------------- a field's text


def field_type(name: str) -> type:
    """int, float, bool, str or tuple (of ints)."""
    kind = FIELD_TYPES[name]
    return tuple if typing.get_origin(kind) is tuple else kind


def make_variable(name: str) -> str:
    """The Make variable of a Config field: make_variable("lr") == "LR"."""
    return CONFIG_FIELDS[name].metadata["make"] or name.upper()


def flag(name: str) -> str:
    """The command-line flag of a Config field: flag("weight_decay") == "--weight-decay"."""
    return CONFIG_FIELDS[name].metadata["flag"] or "--" + name.replace("_", "-")


def choices(name: str) -> tuple[str, ...]:
    """The names a registry-backed field may take (empty for a free field)."""
    registry = {
        "PRESETS": PRESETS,
        "ARCHS": ARCHS,
        "ACTIVATIONS": ACTIVATIONS,
        "OPTIMIZERS": OPTIMIZERS,
        "SCHEDULES": SCHEDULES,
    }.get(CONFIG_FIELDS[name].metadata["choices"], ())
    return tuple(registry)


def parse_value(name: str, text: str) -> Any:
    """A flag's or Make variable's text -> the field's value; one line naming the variable when
    it is not one."""
    kind, text, variable = field_type(name), text.strip(), make_variable(name)
    if kind is bool:
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise KitError(f"{variable}={text!r}: give 1 or 0")
    if kind is tuple:
        parts = [p for p in text.replace("-", ",").replace(" ", ",").split(",") if p]
        try:
            return tuple(int(p) for p in parts)
        except ValueError:
            raise KitError(f"{variable}={text!r}: give integers separated by commas, e.g. 128,64") from None
    if kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            raise KitError(
                f"{variable}={text!r}: give {'an integer' if kind is int else 'a number'}"
            ) from None
    return text


def coerce_value(name: str, value: Any, where: str) -> Any:
    """A JSON or TOML value (config.json, a sweep space) -> the field's value: a list (or a
    string "128,64") becomes a tuple, a whole float an int, 0/1 a bool. One line naming `where`
    when it is none of these."""
    kind = field_type(name)
    if isinstance(value, str) and kind is tuple:  # "128,64" as on the command line
        try:
            return parse_value(name, value)
        except KitError as error:
            raise KitError(f"{where}: {str(error).split(': ', 1)[1]}") from None
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is float and number:
        return float(value)
    if kind is int and number and float(value).is_integer():
        return int(value)
    if kind is bool and (isinstance(value, bool) or (number and value in (0, 1))):
        return bool(value)
    if kind is str and isinstance(value, str):
        return value
    if kind is tuple and isinstance(value, (list, tuple)):
        if all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return tuple(value)
        raise KitError(f"{where}: {list(value)!r} is not a list of whole numbers, e.g. [256, 128]")
    wanted = {
        float: "a number",
        int: "a whole number",
        bool: "true or false (1 or 0)",
        str: "a string",
        tuple: "a list of whole numbers, e.g. [256, 128]",
    }[kind]
    raise KitError(f"{where}: {value!r} is {type(value).__name__}; expected {wanted}")


def format_value(value: Any) -> str:
    """A value as a user types it (and parse_value reads it back): tuples as 128,64, booleans
    as 1/0, floats as Python writes them."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return str(value)


# --------------------------------------------------------------------------- in words


def describe(config: Config, network_only: bool = False) -> str:
    """The config in words: the network ('784-128-64-10', 'cnn conv 32,64,128 dense 256', with
    'x2 members' for an ensemble) and, unless network_only, how it trains
    ('adamw lr 0.002 (onecycle), batch 128, 24 epochs, seed 0, augment, ...')."""
    if config.arch == "cnn":
        per_block = f" x{config.convs_per_block}" if config.convs_per_block > 1 else ""
        shape = (
            f"cnn conv {format_value(config.conv_channels)}{per_block} dense {format_value(config.hidden)}"
        )
    else:
        shape = "784-" + "-".join(str(h) for h in config.hidden) + "-10"
    if config.ensemble > 1:
        shape += f" x{config.ensemble} members"
    if network_only:
        return shape
    extras = [
        f"{config.optimizer} lr {config.lr} ({config.schedule})",
        f"batch {config.batch_size}",
        f"{config.epochs} epochs",
        f"seed {config.seed}",
    ]
    extras += [
        word
        for on, word in (
            (config.augment, "augment"),
            (config.dropout, f"dropout {config.dropout}"),
            (config.batch_norm, "batch norm"),
            (config.refit, "refit"),
            (config.tta, "tta"),
        )
        if on
    ]
    return shape + ", " + ", ".join(extras)


CONFIG_FIELDS = {f.name: f for f in dataclasses.fields(Config)}
FIELD_TYPES = typing.get_type_hints(Config)
