"""The one configuration of a run, its named presets, and how flags override them.

Precedence: dataclass defaults < preset < command-line flags (which the Makefile's
variables become). The resolved Config is stored with every run as config.json.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from .errors import KitError


@dataclass
class Config:
    # --- what to train
    preset: str = "default"  # the named preset these values started from
    arch: str = "mlp"  # "mlp": dense layers; "cnn": conv blocks then dense layers
    hidden: tuple[int, ...] = (128, 64)  # sizes of the hidden dense layers
    conv_channels: tuple[int, ...] = (32, 64)  # cnn only: channels of each conv block (3x3 convs, 2x2 max-pool)
    activation: str = "relu"  # see layers.ACTIVATIONS
    dropout: float = 0.0  # drop probability after each hidden dense layer (0 = off)
    batch_norm: bool = False  # batch normalisation before each hidden activation
    # --- how to train
    optimizer: str = "sgd"  # see optim.OPTIMIZERS: sgd, momentum, nesterov, adam, adamw
    lr: float = 0.01  # peak learning rate
    momentum: float = 0.9  # momentum / nesterov: velocity decay; adam: beta1
    weight_decay: float = 0.0  # L2 penalty (sgd, adam) or decoupled decay (adamw)
    schedule: str = "constant"  # see optim.SCHEDULES: constant, step, cosine, warmup_cosine, onecycle, plateau
    warmup_epochs: float = 0.0  # warmup_cosine: epochs of linear warm-up
    label_smoothing: float = 0.0  # share of the target spread over all classes
    grad_clip: float = 0.0  # clip the global gradient norm to this (0 = off)
    epochs: int = 20  # passes over the training rows
    batch_size: int = 64  # rows per gradient step
    patience: int = 0  # stop after this many epochs without a better validation score (0 = never)
    # --- data
    val_fraction: float = 0.1  # stratified share of train.csv held out for validation
    augment: bool = False  # random shifts / rotations / scaling of training images, on the fly
    max_shift: float = 2.0  # augment: largest shift in pixels
    max_rotate: float = 10.0  # augment: largest rotation in degrees
    max_scale: float = 0.1  # augment: largest relative zoom in or out
    # --- after training
    refit: bool = False  # retrain on all rows (train + validation) for the best epoch's count
    ensemble: int = 1  # members trained with different seeds; their probabilities are averaged
    tta: bool = False  # test-time augmentation: average predictions over small shifts
    # --- bookkeeping
    seed: int = 0  # feeds the one np.random.default_rng: init, split, shuffle, dropout, augmentation
    eval_batch_size: int = 4096  # rows per forward pass when evaluating and predicting
    blas_threads: int = 0  # BLAS threads for training; 0 = measure 1 vs all once per machine (kit/threads.py)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "Config":
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
        arch="mlp", hidden=(128, 64), optimizer="sgd", lr=0.01, batch_size=64, epochs=20,
        schedule="constant",
    ),
    # The everyday choice: a wider MLP, AdamW with warm-up + cosine, light augmentation.
    "default": dict(
        arch="mlp", hidden=(512, 256), optimizer="adamw", lr=2e-3, weight_decay=1e-2,
        schedule="warmup_cosine", warmup_epochs=1.0, batch_size=128, epochs=30, dropout=0.1,
        augment=True, max_shift=2.0, max_rotate=8.0, max_scale=0.08,
    ),
    # Spends more time: two small CNNs with batch norm and augmentation, probabilities averaged.
    "best": dict(
        arch="cnn", conv_channels=(32, 64), hidden=(256,), optimizer="adamw", lr=2e-3,
        weight_decay=5e-4, schedule="onecycle", batch_size=128, epochs=15, dropout=0.25,
        batch_norm=True, augment=True, max_shift=2.0, max_rotate=10.0, max_scale=0.1,
        label_smoothing=0.1, ensemble=2, eval_batch_size=256,  # im2col of 4096 images would take 2.8 GB
    ),
}


# Make variables whose name is not the field's name in capitals.
MAKE_NAMES = {"batch_size": "BATCH", "conv_channels": "CHANNELS", "blas_threads": "THREADS",
              "eval_batch_size": "EVAL_BATCH"}


def make_variable(name: str) -> str:
    """The Make variable of a Config field: make_variable("lr") == "LR"."""
    return MAKE_NAMES.get(name, name.upper())


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
    from .layers import ACTIVATIONS
    from .optim import OPTIMIZERS, SCHEDULES

    checks = [
        (config.arch in ("mlp", "cnn"), f"arch {config.arch!r}: choose mlp or cnn"),
        (config.activation in ACTIVATIONS, f"activation {config.activation!r}: choose one of {', '.join(ACTIVATIONS)}"),
        (config.optimizer in OPTIMIZERS, f"optimizer {config.optimizer!r}: choose one of {', '.join(OPTIMIZERS)}"),
        (config.schedule in SCHEDULES, f"schedule {config.schedule!r}: choose one of {', '.join(SCHEDULES)}"),
        (all(h > 0 for h in config.hidden), f"hidden {config.hidden}: sizes must be positive integers"),
        (all(c > 0 for c in config.conv_channels), f"conv_channels {config.conv_channels}: must be positive"),
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
    ]
    for ok, message in checks:
        if not ok:
            raise KitError(message)


def parse_int_tuple(text: str, name: str) -> tuple[int, ...]:
    """'128,64' or '128-64' or '128 64' -> (128, 64); used for HIDDEN= and CHANNELS=."""
    parts = [p for p in text.replace("-", ",").replace(" ", ",").split(",") if p]
    try:
        return tuple(int(p) for p in parts)
    except ValueError:
        raise KitError(f"{name} {text!r}: give integers separated by commas, e.g. 128,64") from None
