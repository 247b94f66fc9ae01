"""Turn any picture of a digit into what the network was trained on: an MNIST-style 28x28 image.

MNIST (and so Kaggle's train.csv) was made this way: white ink on black, the digit scaled so
its longest side is 20 pixels (aspect ratio kept, anti-aliased), then placed in a 28x28 field
with its centre of mass in the middle. A digit drawn big, small or off-centre on a canvas looks
nothing like that until it goes through the same steps; `to_mnist` does them in NumPy:

    pixels = to_mnist(decode_image(png_bytes))   # (28, 28) uint8, or None for a blank drawing
    model.predict_proba(to_float(pixels.reshape(1, 784)))

`decode_image` reads PNG/JPEG/GIF/WebP/BMP bytes with Pillow into a (height, width) uint8
grayscale array and refuses, with one line, what is not an image, is truncated, or is too small
or too large; its exceptions carry the HTTP status the server answers with.
"""

from __future__ import annotations

import io
import math
import warnings

import numpy as np

from kit.core.console import one_line
from kit.core.errors import KitError
from kit.core.mnist import IMAGE_SIDE

BOX_SIDE = 20  # MNIST scales the digit's longest side to 20 pixels...
CENTRE = 14.0  # ...and puts its centre of mass here (pixel-centre coordinates; train.csv's mean is 14.0)
MIN_CONTRAST = 40  # ink at most this much darker/lighter than the paper is no ink (0..255 levels)
INK_THRESHOLD = 0.25  # share of the strongest ink a pixel needs to count for the bounding box
MIN_ELONGATION = 1.5  # bounding box longest side / stroke width below this is a dot, not a digit
MIN_SIDE = 8  # decoded images smaller than this on a side are refused...
MAX_SIDE = 4096  # ...and larger than this (checked before decoding: no decompression bombs)
WORK_SIDE = 560  # larger decoded images are box-reduced to at most this on their longest side
FORMATS = ("PNG", "JPEG", "GIF", "WEBP", "BMP")


class ImageProblem(KitError):
    """An image the server cannot use; `status` is the HTTP code to answer with."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


def decode_image(data: bytes) -> np.ndarray:
    """Image file bytes -> (height, width) uint8 grayscale, dark ink on light paper or the reverse.
    Images over WORK_SIDE pixels on a side come back box-reduced by an integer factor.

    Transparent pixels become paper: the background is the opposite of the opaque pixels' mean
    brightness, so black strokes on a transparent canvas and white strokes on one both work.
    Raises ImageProblem (422) for data that is not a supported image, is truncated or corrupt,
    or whose sides are outside MIN_SIDE..MAX_SIDE."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with warnings.catch_warnings():  # the size is checked below, before any pixel is decoded
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=FORMATS)
    except UnidentifiedImageError:
        raise ImageProblem("not an image: send a PNG or JPEG file (GIF, WebP and BMP work too)") from None
    except (
        OSError,
        SyntaxError,
        ValueError,
        Image.DecompressionBombError,
    ) as error:  # a header it cannot parse
        raise ImageProblem(f"corrupt image header: {one_line(error, 160)}") from None
    width, height = image.size
    if min(width, height) < MIN_SIDE:
        raise ImageProblem(f"image is {width}x{height} pixels; it needs at least {MIN_SIDE} on each side")
    if max(width, height) > MAX_SIDE:
        raise ImageProblem(f"image is {width}x{height} pixels; at most {MAX_SIDE} on each side, please")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            if image.format == "JPEG":  # decode a large photo at 1/2, 1/4 or 1/8 size directly
                image.draft("L", (WORK_SIDE, WORK_SIDE))
            image.load()
            image = ImageOps.exif_transpose(image)  # phone photos: upright as shown
            if image.mode in ("RGBA", "LA", "PA", "P") and (
                image.mode != "P" or "transparency" in image.info
            ):
                gray = _flatten_alpha(image.convert("RGBA"))
            else:
                gray = image.convert("L")
            if max(gray.size) > WORK_SIDE:  # a 20-pixel box needs no more: box-average by an integer factor
                gray = gray.reduce(math.ceil(max(gray.size) / WORK_SIDE))
            return np.asarray(gray, dtype=np.uint8).copy()
    except (
        OSError,
        SyntaxError,
        ValueError,
        EOFError,
        Image.DecompressionBombWarning,
        Image.DecompressionBombError,
    ) as error:
        raise ImageProblem(
            f"could not decode the {image.format or ''} image: {one_line(error, 160)}"
        ) from None


def _flatten_alpha(rgba):
    """An RGBA Pillow image -> an "L" image with the transparent parts painted as paper: white
    when the opaque pixels are dark on average, black when they are light."""
    from PIL import Image, ImageStat

    alpha = rgba.getchannel("A")
    gray = rgba.convert("L")  # ignores alpha
    if alpha.getbbox() is None:  # nothing opaque at all
        return Image.new("L", rgba.size, 255)
    ink_brightness = ImageStat.Stat(gray, mask=alpha.point(lambda a: 255 if a else 0)).mean[0]
    paper = Image.new("L", rgba.size, 255 if ink_brightness < 128 else 0)
    return Image.composite(gray, paper, alpha)


def resample_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights resizing one axis from n_in to n_out pixels with a triangle filter
    whose width follows the scale when shrinking (anti-aliased, like Pillow's BILINEAR), so
    `m_rows @ image @ m_cols.T` resizes a 2-D image. Every row sums to 1."""
    ratio = n_in / n_out
    support = max(1.0, ratio)
    centres = (np.arange(n_out) + 0.5) * ratio  # output pixel centres in input coordinates
    distance = np.abs((np.arange(n_in) + 0.5)[None, :] - centres[:, None])
    weights = np.maximum(0.0, 1.0 - distance / support)
    weights /= weights.sum(axis=1, keepdims=True)
    return weights.astype(np.float32)


def to_mnist(gray: np.ndarray) -> np.ndarray | None:
    """An image of one digit -> the (28, 28) uint8 image MNIST would have made of it, or None
    when there is no digit (blank, too faint, or only a dot).

    gray: (height, width) array of 0..255 levels, ink dark on light or light on dark.
    Steps: invert when the paper (the median of the border pixels) is light; subtract the
    paper's level and stretch the strongest ink to 255; crop to the ink's bounding box; scale
    its longest side to 20 pixels keeping the aspect ratio (anti-aliased); place it in 28x28
    with its centre of mass at the centre."""
    gray = np.asarray(gray)
    if gray.ndim != 2 or min(gray.shape) < 1:
        raise ValueError(f"to_mnist takes a 2-D grayscale image, got shape {gray.shape}")
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    paper = float(np.median(border))
    ink = gray.astype(np.float32)
    if paper > 127:  # dark ink on light paper: MNIST is the reverse
        ink = 255.0 - ink
        paper = 255.0 - paper
    ink -= paper
    peak = float(ink.max())
    if peak < MIN_CONTRAST:
        return None
    mask = ink > peak * INK_THRESHOLD
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    crop = np.clip(ink[top:bottom, left:right], 0.0, None) * (255.0 / peak)
    height, width = crop.shape
    longest = max(height, width)
    stroke_width = float(crop.sum()) / 255.0 / longest  # ink area / length, as for a line
    if longest < MIN_ELONGATION * stroke_width or longest < 2:
        return None
    scale = BOX_SIDE / longest
    out_h, out_w = max(1, round(height * scale)), max(1, round(width * scale))
    small = resample_matrix(height, out_h) @ crop @ resample_matrix(width, out_w).T
    total = float(small.sum())
    if total <= 0:
        return None
    com_y = float(small.sum(axis=1) @ np.arange(out_h)) / total
    com_x = float(small.sum(axis=0) @ np.arange(out_w)) / total
    # integer placement, as MNIST did; the digit stays inside the field whatever its centre of mass
    y0 = int(np.clip(round(CENTRE - com_y), 0, IMAGE_SIDE - out_h))
    x0 = int(np.clip(round(CENTRE - com_x), 0, IMAGE_SIDE - out_w))
    out = np.zeros((IMAGE_SIDE, IMAGE_SIDE), dtype=np.float32)
    out[y0 : y0 + out_h, x0 : x0 + out_w] = small
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
