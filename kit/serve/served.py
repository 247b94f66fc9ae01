"""The model behind `make serve`: a loaded Model behind a lock, and what turns a request's image
or pixels into an answer (the MNIST-style preprocessing is kit.data.preprocess)."""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
import time
from typing import Any

import numpy as np

from kit.config import describe
from kit.core.console import one_line
from kit.core.mnist import N_PIXELS
from kit.data.preprocess import ImageProblem, decode_image, to_mnist
from kit.data.split import to_float
from kit.run.model import Model

IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp")
BLANK_MESSAGE = "draw a digit"
DECODE_SLOTS = 4


class ServedModel:
    """A loaded Model behind a lock (layers keep per-call state, so one forward pass at a time)
    and the functions that turn requests into answers."""

    def __init__(self, model: Model) -> None:
        self.model = model
        self.lock = threading.Lock()
        # at most this many images decoded at once: a 4096x4096 PNG takes 67 MB while it is decoded,
        # and two cores gain nothing from more
        self.decoding = threading.BoundedSemaphore(DECODE_SLOTS)
        self.predict(np.zeros(N_PIXELS, dtype=np.uint8))  # warm up: the first call allocates

    def info(self) -> dict:
        meta, config = self.model.meta, self.model.config
        return {
            "run_id": meta.get("run_id"),
            "preset": meta.get("preset", config.preset),
            "val_accuracy": meta.get("val_accuracy"),
            "arch": config.arch,
            "members": len(self.model.members),
            "description": describe(config),
        }

    def predict(self, pixels: np.ndarray) -> np.ndarray:
        """(784,) uint8 -> (10,) probabilities."""
        x = to_float(pixels.reshape(1, N_PIXELS))
        with self.lock:
            return self.model.predict_proba(x)[0]

    def answer(self, pixels: np.ndarray | None, started: float) -> dict:
        """The JSON answer for the 28x28 image the network sees (None: nothing drawn)."""
        if pixels is None:
            return {
                "blank": True,
                "message": BLANK_MESSAGE,
                "label": None,
                "probabilities": None,
                "pixels": None,
                "ms": _ms_since(started),
            }
        probabilities = self.predict(pixels.ravel())
        return {
            "blank": False,
            "label": int(probabilities.argmax()),
            "probabilities": [round(float(p), 6) for p in probabilities],
            "pixels": pixels.ravel().tolist(),
            "ms": _ms_since(started),
        }

    def from_image(self, data: bytes, started: float) -> dict:
        with self.decoding:
            pixels = to_mnist(decode_image(data))
        return self.answer(pixels, started)

    def from_pixels(self, values: list[float], preprocess: bool, started: float) -> dict:
        pixels = np.rint(np.asarray(values, dtype=np.float64)).astype(np.uint8)
        square = pixels.reshape(28, 28)
        if preprocess or to_mnist(square) is None:  # the blank test is the same for every input
            return self.answer(to_mnist(square), started)
        return self.answer(square, started)


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


def data_url_bytes(url: str) -> bytes:
    """'data:image/png;base64,....' -> the image bytes (ImageProblem 415/422 otherwise)."""
    match = re.match(r"data:([\w.+-]+/[\w.+-]+)?((?:;[\w=.+-]+)*),", url[:200])
    if not match:
        raise ImageProblem('image: not a data URL; give "data:image/png;base64,..."')
    media = (match.group(1) or "text/plain").lower()
    if media not in IMAGE_TYPES:
        raise ImageProblem(f"image: a data URL of type {media}; send a PNG or JPEG image", status=415)
    if ";base64" not in match.group(2):
        raise ImageProblem("image: the data URL must be base64-encoded (data:image/png;base64,...)")
    try:
        return base64.b64decode(url[match.end() :], validate=True)
    except (binascii.Error, ValueError):
        raise ImageProblem("image: the data URL's base64 is corrupt") from None


def parse_json(body: bytes) -> Any:
    """A request body as JSON (ImageProblem 400 when it is not JSON; NaN and Infinity refused)."""

    def no_constants(name):
        raise ValueError(f"{name} is not a number JSON allows")

    try:
        return json.loads(body, parse_constant=no_constants)
    except RecursionError:
        raise ImageProblem("malformed JSON: nested too deeply", status=400) from None
    except (UnicodeDecodeError, ValueError) as error:
        raise ImageProblem(f"malformed JSON: {one_line(error)}", status=400) from None
