"""The one configuration of a run, its named presets, and how flags override them.

Precedence: dataclass defaults < preset < Make variables < command-line flags. Each field is
declared once, on the Config dataclass; the flags (kit/cli.py), `make help` and the README's
table are generated from it (`kit config --markdown`). The resolved Config is stored with every
run as config.json.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field
from typing import Any

from kit.core.errors import KitError
from kit.nn.layers import ACTIVATIONS
from kit.nn.optim import OPTIMIZERS
from kit.nn.schedules import SCHEDULES

ARCHS = ("mlp", "cnn")


def option(
    default: Any, help: str, *, make: str | None = None, flag: str | None = None, choices: str | None = None
) -> Any:
    """A Config field with everything the command line, the Makefile and the README need:
    `help` (one line), the Make variable (default: the name in capitals), the flag (default:
    --name-with-dashes) and, for a name picked from a registry, where its choices live."""
    return field(default=default, metadata={"help": help, "make": make, "flag": flag, "choices": choices})


@dataclass
class Config:
    """Every setting of a run. Adding a hyperparameter is one line here (plus its use): its
    flag (`kit train --help`), Make variable (`make help`) and README row follow from it."""

    # --- what to train
    preset: str = option("default", "named configuration the other values start from", choices="PRESETS")
    arch: str = option("mlp", "network family (cnn: conv blocks, then dense layers)", choices="ARCHS")
    hidden: tuple[int, ...] = option((128, 64), "hidden dense sizes, e.g. 128,64")
    conv_channels: tuple[int, ...] = option(
        (32, 64),
        "cnn: channels per conv block (3x3 conv, 2x2 max-pool), e.g. 32,64",
        make="CHANNELS",
        flag="--channels",
    )
    convs_per_block: int = option(1, "cnn: 3x3 convolutions (each with batch norm and activation) per block")
    activation: str = option("relu", "hidden activation", choices="ACTIVATIONS")
    dropout: float = option(0.0, "drop probability after each hidden dense layer (0 = off)")
    batch_norm: bool = option(False, "batch normalisation before each hidden activation")
    # --- how to train
    optimizer: str = option("sgd", "optimiser", choices="OPTIMIZERS")
    lr: float = option(0.01, "(peak) learning rate")
    momentum: float = option(0.9, "momentum / nesterov: velocity decay; adam, adamw: beta1")
    weight_decay: float = option(0.0, "L2 penalty (sgd, momentum, adam) or decoupled decay (adamw)")
    schedule: str = option("constant", "learning-rate schedule", choices="SCHEDULES")
    warmup_epochs: float = option(0.0, "warmup_cosine: epochs of linear warm-up")
    label_smoothing: float = option(0.0, "share of the target spread over all classes")
    grad_clip: float = option(0.0, "clip the global gradient norm to this (0 = off)")
    epochs: int = option(20, "passes over the training rows")
    batch_size: int = option(64, "rows per gradient step", make="BATCH", flag="--batch")
    patience: int = option(0, "early stop after N epochs without a better validation score (0 = off)")
    # --- data
    val_fraction: float = option(0.1, "stratified validation share (0 = train on all rows)")
    augment: bool = option(False, "random shifts, rotations and zoom of training images, on the fly")
    max_shift: float = option(2.0, "augment: largest shift in pixels")
    max_rotate: float = option(10.0, "augment: largest rotation in degrees")
    max_scale: float = option(0.1, "augment: largest relative zoom in or out")
    max_warp: float = option(
        0.0, "augment: elastic warp, largest displacement in pixels of a smooth random field (0 = off)"
    )
    # --- after training
    refit: bool = option(False, "retrain on all rows (train + validation) for the best epoch's count")
    ensemble: int = option(1, "members trained with different seeds; their probabilities are averaged")
    tta: bool = option(False, "test-time augmentation: average predictions over small shifts")
    # --- bookkeeping
    seed: int = option(0, "the one seed: init, split, shuffle, dropout, augmentation")
    eval_batch_size: int = option(
        4096, "rows per forward pass when evaluating and predicting", make="EVAL_BATCH", flag="--eval-batch"
    )
    blas_threads: int = option(
        0, "BLAS threads for training (0 = all cores; see kit/blas.py)", make="THREADS", flag="--threads"
    )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Config:
        known = {f.name: f for f in dataclasses.fields(cls)}
        kwargs = {}
        for name, value in values.items():
            if name not in known:
                continue  # a field from a newer kit: ignore rather than refuse an old model
            if isinstance(value, list):
                value = tuple(value)
            kwargs[name] = value
        return cls(**kwargs)


# Each preset names only what differs from the dataclass defaults.
PRESETS: dict[str, dict[str, Any]] = {
    # The notebook this kit grew from, exactly: 784-128-64-10, plain mini-batch SGD.
    "reference": dict(
        arch="mlp",
        hidden=(128, 64),
        optimizer="sgd",
        lr=0.01,
        batch_size=64,
        epochs=20,
        schedule="constant",
    ),
    # The everyday choice: a wider MLP, AdamW with warm-up + cosine, light augmentation.
    "default": dict(
        arch="mlp",
        hidden=(512, 256),
        optimizer="adamw",
        lr=2e-3,
        weight_decay=1e-2,
        schedule="warmup_cosine",
        warmup_epochs=1.0,
        batch_size=128,
        epochs=30,
        dropout=0.1,
        augment=True,
        max_shift=2.0,
        max_rotate=8.0,
        max_scale=0.08,
    ),
    # Spends more time (under a quarter of an hour on 2 cores): a CNN of three conv blocks with
    # batch norm and augmentation. One member for 24 epochs beat two for 12 each in the same
    # time (0.9948 / 0.9979 against 0.9938 / 0.9960 on seeds 0 / 1, 2026-11-29).
    "best": dict(
        arch="cnn",
        conv_channels=(32, 64, 128),
        hidden=(256,),
        optimizer="adamw",
        lr=2e-3,
        weight_decay=5e-4,
        schedule="onecycle",
        batch_size=128,
        epochs=24,
        dropout=0.25,
        batch_norm=True,
        augment=True,
        max_shift=2.0,
        max_rotate=10.0,
        max_scale=0.1,
        label_smoothing=0.1,
        ensemble=1,
        eval_batch_size=256,  # a CNN evaluates 256 rows at a time
    ),
}


def make_config(preset: str = "default", **overrides: Any) -> Config:
    """Defaults, then the preset, then every override that is not None."""
    if preset not in PRESETS:
        raise KitError(f"unknown preset {preset!r}; choose one of: {', '.join(PRESETS)}")
    values = dict(PRESETS[preset], preset=preset)
    values.update({k: v for k, v in overrides.items() if v is not None})
    config = Config.from_dict(values)
    validate(config)
    return config


def validate(config: Config) -> None:
    """Refuse settings that cannot work, with one line naming the setting."""
    checks = [
        (config.arch in ARCHS, f"arch {config.arch!r}: choose mlp or cnn"),
        (
            config.activation in ACTIVATIONS,
            f"activation {config.activation!r}: choose one of {', '.join(ACTIVATIONS)}",
        ),
        (
            config.optimizer in OPTIMIZERS,
            f"optimizer {config.optimizer!r}: choose one of {', '.join(OPTIMIZERS)}",
        ),
        (config.schedule in SCHEDULES, f"schedule {config.schedule!r}: choose one of {', '.join(SCHEDULES)}"),
        (all(h > 0 for h in config.hidden), f"hidden {config.hidden}: sizes must be positive integers"),
        (all(c > 0 for c in config.conv_channels), f"conv_channels {config.conv_channels}: must be positive"),
        (config.convs_per_block >= 1, f"convs per block {config.convs_per_block}: must be at least 1"),
        (config.epochs >= 1, f"epochs {config.epochs}: must be at least 1"),
        (config.batch_size >= 1, f"batch size {config.batch_size}: must be at least 1"),
        (config.lr > 0, f"learning rate {config.lr}: must be positive"),
        (0 <= config.val_fraction < 1, f"validation fraction {config.val_fraction}: must be in [0, 1)"),
        (0 <= config.dropout < 1, f"dropout {config.dropout}: must be in [0, 1)"),
        (0 <= config.label_smoothing < 1, f"label smoothing {config.label_smoothing}: must be in [0, 1)"),
        (config.ensemble >= 1, f"ensemble {config.ensemble}: must be at least 1"),
        (config.patience >= 0, f"patience {config.patience}: must be 0 (off) or more"),
        (config.blas_threads >= 0, f"threads {config.blas_threads}: must be 0 (auto) or more"),
        (config.eval_batch_size >= 1, f"eval batch size {config.eval_batch_size}: must be at least 1"),
        (config.weight_decay >= 0, f"weight decay {config.weight_decay}: must be 0 or more"),
        (0 <= config.momentum < 1, f"momentum {config.momentum}: must be in [0, 1)"),
        (config.warmup_epochs >= 0, f"warmup epochs {config.warmup_epochs}: must be 0 or more"),
        (config.grad_clip >= 0, f"grad clip {config.grad_clip}: must be 0 (off) or more"),
        (
            min(config.max_shift, config.max_rotate, config.max_scale) >= 0,
            "max_shift, max_rotate, max_scale: must be 0 or more",
        ),
        (
            len(config.hidden) > 0 or config.arch == "cnn",
            "hidden: an mlp needs at least one hidden layer size",
        ),
    ]
    for ok, message in checks:
        if not ok:
            raise KitError(message)


# --------------------------------------------------------------------------- the field table
# What the command line (kit/cli.py), `make help` and the README's table are generated from.


def choices(field_name: str) -> tuple[str, ...]:
    """The names a registry-backed field may take (empty for a free field)."""
    where = CONFIG_FIELDS[field_name].metadata["choices"]
    registry = {
        "PRESETS": PRESETS,
        "ARCHS": ARCHS,
        "ACTIVATIONS": ACTIVATIONS,
        "OPTIMIZERS": OPTIMIZERS,
        "SCHEDULES": SCHEDULES,
    }.get(where, ())
    return tuple(registry)


def make_variable(field_name: str) -> str:
    """The Make variable of a Config field: make_variable("lr") == "LR"."""
    return CONFIG_FIELDS[field_name].metadata["make"] or field_name.upper()


def flag(field_name: str) -> str:
    """The command-line flag of a Config field: flag("weight_decay") == "--weight-decay"."""
    return CONFIG_FIELDS[field_name].metadata["flag"] or "--" + field_name.replace("_", "-")


def field_type(field_name: str) -> type:
    """int, float, bool, str or tuple (of ints)."""
    kind = FIELD_TYPES[field_name]
    return tuple if typing.get_origin(kind) is tuple else kind


def parse_value(field_name: str, text: str) -> Any:
    """A flag's or Make variable's text -> the field's value; one line naming the setting when it is
    not one."""
    kind, text = field_type(field_name), text.strip()
    name = make_variable(field_name)
    if kind is bool:
        return parse_bool(text, name)
    if kind is tuple:
        return parse_int_tuple(text, name)
    if kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            raise KitError(f"{name}={text!r}: give {'an integer' if kind is int else 'a number'}") from None
    return text


def parse_bool(text: str, name: str) -> bool:
    """1/0 (or true/false, yes/no, on/off) -> bool; one line naming the setting otherwise."""
    if text.strip().lower() in ("1", "true", "yes", "on"):
        return True
    if text.strip().lower() in ("0", "false", "no", "off"):
        return False
    raise KitError(f"{name}={text!r}: give 1 or 0")


def show(value: Any) -> str:
    """A value as a user types it: tuples as 128,64, booleans as 0/1."""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value) or "none"
    return str(value)


def preset_values(field_name: str) -> list[str]:
    """The field's value in each preset, in PRESETS order."""
    defaults = Config()
    return [
        show(values.get(field_name, getattr(defaults, field_name))) if field_name != "preset" else name
        for name, values in PRESETS.items()
    ]


def help_text(field_name: str) -> str:
    """The field's help line, with its choices when it has any."""
    text = CONFIG_FIELDS[field_name].metadata["help"]
    names = choices(field_name)
    return f"{text}: {', '.join(names)}" if names else text


def markdown_table() -> str:
    """The README's variables table: one row per Config field."""
    rows = [f"| variable | flag | meaning | {' | '.join(PRESETS)} |", "|---|---|---|" + "---|" * len(PRESETS)]
    for name in CONFIG_FIELDS:
        values = " | ".join(preset_values(name)) if name != "preset" else " | " * (len(PRESETS) - 1)
        rows.append(f"| `{make_variable(name)}` | `{flag(name)}` | {help_text(name)} | {values} |")
    return "\n".join(rows) + "\n"


def make_help() -> str:
    """`make help`'s variables part: one line per Config field, with each preset's value."""
    lines = [f"Hyperparameters (empty = the preset's value; presets: {', '.join(PRESETS)}):"]
    for name in CONFIG_FIELDS:
        values = "" if name == "preset" else "  [" + " / ".join(preset_values(name)) + "]"
        lines.append(f"  {make_variable(name) + '=':<17}{help_text(name)}{values}")
    return "\n".join(lines) + "\n"


def describe(config: Config) -> str:
    """One line: the network's shape and how it trains, e.g. '784-128-64-10, sgd lr 0.01 (constant), ...'."""
    if config.arch == "cnn":
        per_block = f"x{config.convs_per_block}" if config.convs_per_block > 1 else ""
        shape = f"cnn conv{list(config.conv_channels)}{per_block} dense{list(config.hidden)}"
    else:
        shape = "784-" + "-".join(str(h) for h in config.hidden) + "-10"
    extras = [
        f"{config.optimizer} lr {config.lr} ({config.schedule})",
        f"batch {config.batch_size}",
        f"{config.epochs} epochs",
        f"seed {config.seed}",
    ]
    if config.augment:
        extras.append("augment")
    if config.dropout:
        extras.append(f"dropout {config.dropout}")
    if config.batch_norm:
        extras.append("batch norm")
    if config.ensemble > 1:
        extras.append(f"ensemble {config.ensemble}")
    if config.refit:
        extras.append("refit")
    return shape + ", " + ", ".join(extras)


def parse_int_tuple(text: str, name: str) -> tuple[int, ...]:
    """'128,64' or '128-64' or '128 64' -> (128, 64); used for HIDDEN= and CHANNELS=."""
    parts = [p for p in text.replace("-", ",").replace(" ", ",").split(",") if p]
    try:
        return tuple(int(p) for p in parts)
    except ValueError:
        raise KitError(f"{name} {text!r}: give integers separated by commas, e.g. 128,64") from None


CONFIG_FIELDS = {f.name: f for f in dataclasses.fields(Config)}
FIELD_TYPES = typing.get_type_hints(Config)
