"""A trained model: one or more networks of one config (an ensemble), the architecture a
config describes, and the .npz file a model is saved in.

    build_network(config, rng) -> Network        He-initialised weights drawn from rng
    Model(config, members).predict_proba(x)      mean of the members' softmax, (n, 10)
    Model.save(path) / Model.load(path)          one .npz: config, meta and every member's arrays

The file holds only arrays and JSON text (np.load(allow_pickle=False)); files written by older
kits load in their own layer order (MODEL_FORMAT).
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np

from kit.config import Config
from kit.core.atomic import atomic_path
from kit.core.errors import KitError
from kit.core.mnist import IMAGE_SIDE, N_CLASSES, N_PIXELS
from kit.data.augment import tta_views
from kit.nn import image_layers
from kit.nn import layers as L
from kit.nn.conv import Conv2D
from kit.nn.network import Network
from kit.nn.replicas import Replicas

# 2: a conv block's max-pool is fused into its last convolution, ahead of batch norm (1: a
# MaxPool2D layer after batch norm; such models still load, in that order)
MODEL_FORMAT = 2


def build_network(
    config: Config, rng: np.random.Generator, dtype=np.float32, model_format: int = MODEL_FORMAT
) -> Network:
    """The architecture a config describes, with He-initialised weights drawn from `rng`.
    model_format: the layer order of a saved model (see MODEL_FORMAT)."""
    activation = L.ACTIVATIONS[config.activation]
    layers: list[L.Layer] = []
    n_in = N_PIXELS
    if config.arch == "cnn":
        channels_in, side = 1, IMAGE_SIDE
        layers.append(image_layers.Reshape((1, IMAGE_SIDE, IMAGE_SIDE)))
        for channels in config.conv_channels:
            for i in range(config.convs_per_block):
                last = i == config.convs_per_block - 1
                fused = last and model_format >= 2
                layers.append(
                    Conv2D(
                        channels_in,
                        channels,
                        3,
                        rng,
                        padding=1,
                        input_grad=channels_in != 1,
                        pool=2 if fused else 1,
                        dtype=dtype,
                    )
                )
                # the block's 2x2 max-pool comes right after its last convolution (fused into it),
                # so batch norm and the activation run on a quarter of the pixels
                if config.batch_norm:
                    layers.append(L.BatchNorm(channels, dtype=dtype))
                if last and not fused:
                    # format 1: pooling before the block's last activation, after batch norm
                    layers.append(image_layers.MaxPool2D(2))
                layers.append(activation())
                channels_in = channels
            side //= 2
        layers.append(image_layers.Flatten())
        n_in = channels_in * side * side
    first = config.arch == "mlp"
    for width in config.hidden:
        layers.append(L.Dense(n_in, width, rng, input_grad=not first, dtype=dtype))
        if config.batch_norm:
            layers.append(L.BatchNorm(width, dtype=dtype))
        layers.append(activation())
        if config.dropout:
            layers.append(L.Dropout(config.dropout, rng))
        n_in, first = width, False
    layers.append(L.Dense(n_in, N_CLASSES, rng, input_grad=not first, dtype=dtype))
    network = Network(layers, label_smoothing=config.label_smoothing)
    return network


class Model:
    """One or more trained networks of one config; predictions average their probabilities."""

    def __init__(self, config: Config, members: list[Network], meta: dict | None = None) -> None:
        self.config = config
        self.members = members
        self.meta = meta or {}
        self._replicas: dict[int, Replicas] = {}  # per member, made at its first prediction

    def predict_proba(self, x: np.ndarray, tta: bool | None = None) -> np.ndarray:
        """Mean softmax (n, 10) over members (and, with test-time augmentation, over shifts)."""
        tta = self.config.tta if tta is None else tta
        views = tta_views(x) if tta else [x]
        total = np.zeros((len(x), N_CLASSES), dtype=np.float32)
        for m, member in enumerate(self.members):
            if m not in self._replicas:
                self._replicas[m] = Replicas.for_cores(member)
            for view in views:
                total += self._replicas[m].predict_proba(view, self.config.eval_batch_size)
        total /= len(self.members) * len(views)
        return total

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.predict_proba(x).argmax(axis=1)

    def save(self, path: str | os.PathLike) -> None:
        """Write the model atomically as .npz (no pickles): config, meta and every member's arrays."""
        arrays: dict[str, np.ndarray] = {
            "format": np.array(MODEL_FORMAT),
            "config_json": np.array(self.config.to_json()),
            "meta_json": np.array(json.dumps(self.meta)),
            "n_members": np.array(len(self.members)),
        }
        for m, member in enumerate(self.members):
            for key, value in member.state().items():
                arrays[f"m{m}/{key}"] = value
        with atomic_path(path) as tmp:
            np.savez(tmp, **arrays)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Model:
        path = Path(path)
        if not path.exists():
            raise KitError(
                f"{path}: no model there; run `make train` first (or give MODEL=path/to/model.npz)"
            )
        try:
            with np.load(path, allow_pickle=False) as stored:
                arrays = {k: stored[k] for k in stored.files}
            config = Config.from_dict(json.loads(str(arrays["config_json"])), where=f"{path}, config")
            meta = json.loads(str(arrays["meta_json"]))
            n_members = int(arrays["n_members"])
            model_format = int(arrays.get("format", 1))
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
            raise KitError(f"{path}: not a model file this kit can read ({error}); train again") from None
        if model_format > MODEL_FORMAT:
            raise KitError(
                f"{path}: model format {model_format} comes from a newer kit (this one reads up to "
                f"{MODEL_FORMAT}); update the kit (git pull) or train again"
            )
        rng = np.random.default_rng(0)  # weights are overwritten by the stored ones
        members = []
        for m in range(n_members):
            network = build_network(config, rng, model_format=model_format)
            prefix = f"m{m}/"
            network.load_state({k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)})
            members.append(network)
        return cls(config, members, meta)
