"""kit/preprocess.py: made-up images come out as MNIST would have made them, images decode or
are refused with one line, and real digits drawn big and off-centre are read as well as the
original rows."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from kit.data.preprocess import ImageProblem, decode_image, resample_matrix, to_mnist
from kit.data.split import to_float


def centre_of_mass(image: np.ndarray) -> tuple[float, float]:
    ys, xs = np.mgrid[0 : image.shape[0], 0 : image.shape[1]]
    total = image.sum()
    return float((ys * image).sum() / total), float((xs * image).sum() / total)


def ink_box(image: np.ndarray, threshold: int = 0) -> tuple[int, int]:
    rows, cols = (
        np.flatnonzero((image > threshold).any(axis=1)),
        np.flatnonzero((image > threshold).any(axis=0)),
    )
    return rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1


def png_bytes(array: np.ndarray, mode: str | None = None) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array, mode).save(buffer, format="PNG")
    return buffer.getvalue()


def test_an_off_centre_bar_comes_back_centred_with_its_aspect_ratio():
    canvas = np.zeros((280, 280), dtype=np.uint8)
    canvas[10:110, 200:250] = 255  # a 100 x 50 block in the top right corner
    out = to_mnist(canvas)
    assert out.shape == (28, 28) and out.dtype == np.uint8
    height, width = ink_box(out, threshold=127)
    assert height == 20 and width == 10  # longest side 20, aspect ratio 2:1 kept
    cy, cx = centre_of_mass(out.astype(float))
    assert abs(cy - 14) <= 0.5 and abs(cx - 14) <= 0.5
    assert out.max() == 255


def test_a_wide_shape_scales_its_width_to_20():
    canvas = np.zeros((300, 500), dtype=np.uint8)
    canvas[250:280, 20:170] = 200  # 30 x 150, grey ink, bottom left
    out = to_mnist(canvas)
    height, width = ink_box(out, threshold=127)
    assert width == 20 and height == 4
    assert out.max() == 255  # the strongest ink is stretched to full white


def test_dark_ink_on_light_paper_is_inverted():
    light = np.full((200, 200), 250, dtype=np.uint8)
    light[40:160, 90:110] = 10  # a dark vertical stroke
    dark = 255 - light
    assert np.array_equal(to_mnist(light), to_mnist(dark))
    assert to_mnist(light)[0, 0] == 0  # background black, as in MNIST


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((280, 280), dtype=np.uint8),  # nothing drawn
        np.full((280, 280), 255, dtype=np.uint8),  # white paper
        np.full((280, 280), 128, dtype=np.uint8) + np.eye(280, dtype=np.uint8) * 20,  # too faint to be ink
    ],
)
def test_blank_images_give_no_digit(image):
    assert to_mnist(image) is None


def test_a_lone_dot_is_not_a_digit():
    canvas = np.full((280, 280), 255, dtype=np.uint8)
    yy, xx = np.mgrid[0:280, 0:280]
    canvas[(yy - 100) ** 2 + (xx - 60) ** 2 < 12**2] = 0  # one tap of a 24-pixel pen
    assert to_mnist(canvas) is None
    canvas[100:220, 55:66] = 0  # ...then a stroke down from it: a "1"
    assert to_mnist(canvas) is not None


@pytest.mark.slow  # trains the sample model (a few seconds) unless another test already did
def test_real_rows_stay_real_rows(sample_model):
    """Train.csv rows already are MNIST-shaped: preprocessing them changes little."""
    rows = sample_model.x_val[:200]
    again = np.array([to_mnist(row.reshape(28, 28)).ravel() for row in rows])
    assert np.abs(again.astype(int) - rows).mean() < 12  # out of 255
    agree = (sample_model.model.predict(to_float(again)) == sample_model.model.predict(to_float(rows))).mean()
    assert agree >= 0.95


def paint(row: np.ndarray, scale: int, top: int, left: int, invert: bool) -> np.ndarray:
    """A 28x28 row drawn `scale` times larger at (top, left) on a 280 x 280 canvas."""
    side = 28 * scale
    big = resample_matrix(28, side) @ row.reshape(28, 28).astype(np.float32) @ resample_matrix(28, side).T
    canvas = np.zeros((280, 280), dtype=np.float32)
    canvas[top : top + side, left : left + side] = big
    canvas = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
    return 255 - canvas if invert else canvas


@pytest.mark.slow
def test_preprocessing_accuracy_on_real_digits_drawn_big_and_off_centre(sample_model):
    """The model reads the sample's validation digits, painted x5..x9 at random places on a
    280 x 280 canvas (every other one dark on light) and preprocessed, within 1.5 percentage
    points of its accuracy on the original rows."""
    model, rows, labels = sample_model.model, sample_model.x_val, sample_model.y_val
    rng = np.random.default_rng(7)
    processed = []
    for i, row in enumerate(rows):
        scale = int(rng.integers(5, 10))
        top, left = rng.integers(0, 280 - 28 * scale + 1, size=2)
        out = to_mnist(paint(row, scale, top, left, invert=i % 2 == 1))
        assert out is not None, f"validation row {i} came out blank"
        processed.append(out.ravel())
    original = (model.predict(to_float(rows)) == labels).mean()
    drawn = (model.predict(to_float(np.array(processed))) == labels).mean()
    print(f"accuracy on {len(labels)} rows: original {original:.4f}, painted and preprocessed {drawn:.4f}")
    assert original > 0.9
    assert abs(drawn - original) <= 0.015


def test_decoding_png_jpeg_and_transparency():
    stroke = np.zeros((64, 64), dtype=np.uint8)
    stroke[10:54, 28:36] = 255
    assert np.array_equal(decode_image(png_bytes(stroke)), stroke)
    rgb = np.stack([255 - stroke] * 3, axis=-1)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=95)
    jpeg = decode_image(buffer.getvalue())
    assert jpeg.shape == (64, 64) and abs(int(jpeg[30, 31]) - 0) < 20 and jpeg[0, 0] > 235
    # black strokes on a transparent canvas (what a browser canvas gives): transparent = white paper
    rgba = np.zeros((64, 64, 4), dtype=np.uint8)
    rgba[..., 3] = stroke
    gray = decode_image(png_bytes(rgba, "RGBA"))
    assert gray[0, 0] == 255 and gray[30, 31] == 0
    # white strokes on a transparent canvas: transparent = black paper
    rgba[..., :3] = 255
    gray = decode_image(png_bytes(rgba, "RGBA"))
    assert gray[0, 0] == 0 and gray[30, 31] == 255
    assert np.array_equal(to_mnist(gray), to_mnist(stroke))


@pytest.mark.parametrize(
    "data, words",
    [
        (b"hello, this is text", "not an image"),
        (b"", "not an image"),
        (lambda: png_bytes(np.zeros((1, 1), np.uint8)), "1x1 pixels"),
        (lambda: png_bytes(np.zeros((64, 64), np.uint8))[:60], "could not decode"),  # truncated PNG
    ],
)
def test_decoding_refuses_with_one_line(data, words):
    data = data() if callable(data) else data
    with pytest.raises(ImageProblem) as caught:
        decode_image(data)
    message = str(caught.value)
    assert words in message and "\n" not in message and caught.value.status == 422


@pytest.mark.slow  # makes a 100-megapixel image
def test_a_huge_image_is_refused_before_it_is_decoded():
    # 10,000 x 10,000 black pixels compress to ~100 kB; decoding them would take 100 MB
    image = Image.new("L", (10_000, 10_000))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False)
    with pytest.raises(ImageProblem, match="10000x10000 pixels"):
        decode_image(buffer.getvalue())


def test_resample_matrix_keeps_mass_and_constant_images():
    for n_in, n_out in ((280, 20), (7, 20), (20, 20), (3, 1)):
        m = resample_matrix(n_in, n_out)
        assert m.shape == (n_out, n_in)
        assert np.allclose(m.sum(axis=1), 1.0)
        assert np.allclose(m @ np.full(n_in, 9.0, np.float32), 9.0)


def test_a_large_photo_is_read_at_working_size_like_a_small_one():
    canvas = np.full((2400, 1800), 235, dtype=np.uint8)  # grey paper
    canvas[600:1800, 800:950] = 30  # a thick dark "1"
    buffer = io.BytesIO()
    Image.fromarray(canvas).save(buffer, format="JPEG", quality=85)
    gray = decode_image(buffer.getvalue())
    assert max(gray.shape) <= 560 and gray.shape[0] / gray.shape[1] == pytest.approx(2400 / 1800, rel=0.02)
    small = np.asarray(Image.fromarray(canvas).resize((450, 600), Image.Resampling.BOX))
    assert np.abs(to_mnist(gray).astype(int) - to_mnist(small).astype(int)).mean() < 8
