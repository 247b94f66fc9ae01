"""Augmentation: identity, exact integer shifts, the direction of rotations and zooms,
determinism from the seed, range/shape/dtype, and the test-time views."""

from __future__ import annotations

import numpy as np
import pytest

from kit.data.augment import draw_transforms, shift_images, transform_batch, tta_views


def augment_batch(x, rng, max_shift, max_rotate, max_scale, out=None, max_warp=0.0):
    """What the trainer does to a batch: one random transform per image, drawn, then applied."""
    return transform_batch(
        x, *draw_transforms(len(x), rng, max_shift, max_rotate, max_scale, max_warp), out=out
    )


def images(n=16, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 784), dtype=np.float32)


def bar() -> np.ndarray:
    """One image: a bright horizontal bar right of the centre (rows 13-14, columns 20-23)."""
    img = np.zeros((1, 28, 28), dtype=np.float32)
    img[0, 13:15, 20:24] = 1.0
    return img.reshape(1, 784)


def bright(x: np.ndarray, level: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    return np.nonzero(x.reshape(28, 28) > level)


def test_zero_transform_returns_the_input_unchanged():
    x = images()
    out = augment_batch(x, np.random.default_rng(0), 0.0, 0.0, 0.0)
    np.testing.assert_array_equal(out, x)
    np.testing.assert_array_equal(transform_batch(x, 0, 0, 0, 1), x)


@pytest.mark.parametrize("dy,dx", [(1, 0), (0, -1), (3, -2), (-4, 5)])
def test_integer_shift_moves_pixels_exactly(dy, dx):
    x = images(4)
    out = transform_batch(x, dy, dx, 0.0, 1.0)
    img = x.reshape(4, 28, 28)
    expected = np.zeros_like(img)
    expected[:, max(dy, 0) : 28 + min(dy, 0), max(dx, 0) : 28 + min(dx, 0)] = img[
        :, max(-dy, 0) : 28 + min(-dy, 0), max(-dx, 0) : 28 + min(-dx, 0)
    ]
    np.testing.assert_array_equal(out.reshape(4, 28, 28), expected)
    np.testing.assert_array_equal(shift_images(x, dy, dx), expected.reshape(4, 784))


def test_per_image_parameters():
    x = np.repeat(bar(), 2, axis=0)
    out = transform_batch(x, np.array([2.0, 0.0]), np.array([0.0, -3.0]), 0.0, 1.0)
    ys, xs = bright(out[0])
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (15, 16, 20, 23)  # moved down 2
    ys, xs = bright(out[1])
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (13, 14, 17, 20)  # moved left 3


def test_rotation_turns_counter_clockwise_about_the_centre():
    ys, xs = bright(transform_batch(bar(), 0, 0, 90.0, 1.0))
    # the bar right of the centre is now above it, vertical
    assert xs.min() >= 13 and xs.max() <= 14
    assert ys.min() >= 4 and ys.max() <= 7
    # a full turn is (almost) the identity
    np.testing.assert_allclose(transform_batch(bar(), 0, 0, 360.0, 1.0), bar(), atol=1e-4)


def test_zoom_scales_about_the_centre():
    ys, xs = bright(transform_batch(bar(), 0, 0, 0.0, 2.0))
    assert xs.min() >= 26  # 6.5..9.5 px from the centre become 13..19: mostly off the edge
    assert set(ys) <= {12, 13, 14, 15}
    ys, xs = bright(transform_batch(bar(), 0, 0, 0.0, 0.5), level=0.25)  # halved: 3.25..4.75 px right
    assert 16 <= xs.min() and xs.max() <= 19
    assert set(ys) <= {13, 14}


def test_same_seed_same_output_different_seed_different():
    x = images(32)
    a = augment_batch(x, np.random.default_rng(7), 2.0, 10.0, 0.1)
    b = augment_batch(x, np.random.default_rng(7), 2.0, 10.0, 0.1)
    c = augment_batch(x, np.random.default_rng(8), 2.0, 10.0, 0.1)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert not np.array_equal(a, x)


def test_each_image_gets_its_own_transform():
    x = np.repeat(bar(), 8, axis=0)
    out = augment_batch(x, np.random.default_rng(0), 2.0, 10.0, 0.1)
    assert len({row.tobytes() for row in out}) == 8


def test_batch_is_the_same_as_one_image_at_a_time():
    """Vectorisation must not mix images: each row equals transforming that row alone."""
    x = images(5)
    rng = np.random.default_rng(3)
    sy, sx, ang, sc = (
        rng.uniform(-2, 2, 5),
        rng.uniform(-2, 2, 5),
        rng.uniform(-10, 10, 5),
        rng.uniform(0.9, 1.1, 5),
    )
    batch = transform_batch(x, sy, sx, ang, sc)
    for i in range(5):
        np.testing.assert_allclose(
            batch[i : i + 1], transform_batch(x[i : i + 1], sy[i], sx[i], ang[i], sc[i]), atol=1e-6
        )


def test_range_shape_dtype_and_out():
    x = images(20)
    out = np.empty_like(x)
    result = augment_batch(x, np.random.default_rng(1), 3.0, 15.0, 0.2, out=out)
    assert result is out
    assert out.shape == x.shape and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    # in place works too, and gives the same
    y = x.copy()
    augment_batch(y, np.random.default_rng(1), 3.0, 15.0, 0.2, out=y)
    np.testing.assert_array_equal(y, out)
    # a non-contiguous out is filled, not silently copied
    wide = np.zeros((40, 784), dtype=np.float32)
    augment_batch(x, np.random.default_rng(1), 3.0, 15.0, 0.2, out=wide[::2])
    np.testing.assert_array_equal(wide[::2], out)
    # the last partial batch of an epoch (a smaller n) works
    assert augment_batch(x[:3], np.random.default_rng(1), 2.0, 10.0, 0.1).shape == (3, 784)


def test_small_transforms_keep_most_of_the_ink():
    x = np.zeros((64, 28, 28), dtype=np.float32)
    x[:, 8:20, 8:20] = 1.0  # ink well inside the frame
    out = augment_batch(x.reshape(64, 784), np.random.default_rng(2), 2.0, 10.0, 0.1)
    ratio = out.sum(axis=1) / x.reshape(64, 784).sum(axis=1)
    assert np.all(ratio > 0.75) and np.all(ratio < 1.3)


def test_tta_views():
    x = images(6)
    views = tta_views(x)
    assert len(views) == 5
    assert all(v.shape == x.shape and v.dtype == x.dtype for v in views)
    np.testing.assert_array_equal(views[0], x)
    shifted = {v.tobytes() for v in views[1:]}
    assert len(shifted) == 4 and x.tobytes() not in shifted
    # each is a one-pixel shift
    img = x.reshape(6, 28, 28)
    candidates = [shift_images(x, dy, dx) for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0))]
    for v in views[1:]:
        assert any(np.array_equal(v, c) for c in candidates)
    np.testing.assert_array_equal(shift_images(x, 0, 1).reshape(6, 28, 28)[:, :, 1:], img[:, :, :-1])


def test_large_batches_go_in_exact_parts():
    x = images(4100, seed=4)
    sy = np.tile([1.0, -2.0], 2050)
    out = transform_batch(x, sy, 0.0, 0.0, 1.0)
    np.testing.assert_array_equal(out[4098], shift_images(x[4098:4099], 1, 0)[0])
    np.testing.assert_array_equal(out[4099], shift_images(x[4099:4100], -2, 0)[0])
    np.testing.assert_array_equal(out[1], shift_images(x[1:2], -2, 0)[0])


def test_a_batch_augmented_in_parts_equals_the_whole_batch_augmented():
    """kit.run.trainer.Trainer draws a batch's transforms once and lets each replica resample its part."""
    from kit.data.augment import draw_transforms

    x = np.random.default_rng(3).random((10, 784), dtype=np.float32)
    whole = augment_batch(x, np.random.default_rng(9), 2.0, 10.0, 0.1)
    transforms = draw_transforms(10, np.random.default_rng(9), 2.0, 10.0, 0.1)
    parts = np.concatenate(
        [transform_batch(x[lo:hi], *(t[lo:hi] for t in transforms)) for lo, hi in ((0, 4), (4, 10))]
    )
    np.testing.assert_array_equal(parts, whole)


def test_a_uniform_warp_is_a_shift_and_a_zero_warp_changes_nothing():
    """The warp moves where each output pixel reads: the same displacement everywhere is a
    shift the other way (exactly, for whole pixels), and no displacement is the identity."""
    x = np.random.default_rng(4).random((3, 784), dtype=np.float32)
    zero = np.zeros((3, 2, 5, 5))
    np.testing.assert_array_equal(transform_batch(x, 0, 0, 0, 1, zero), x)
    uniform = zero.copy()
    uniform[:, 0], uniform[:, 1] = 1.0, -2.0  # read one row below and two columns to the left
    np.testing.assert_array_equal(transform_batch(x, 0, 0, 0, 1, uniform), transform_batch(x, -1, 2, 0, 1))


def test_warp_draws_are_bounded_smooth_and_leave_other_draws_alone():
    from kit.data.augment import draw_transforms

    plain = draw_transforms(6, np.random.default_rng(2), 2.0, 10.0, 0.1)
    warped = draw_transforms(6, np.random.default_rng(2), 2.0, 10.0, 0.1, max_warp=1.5)
    assert len(plain) == 4 and len(warped) == 5  # no warp: the draws earlier runs made, unchanged
    for a, b in zip(plain, warped):
        np.testing.assert_array_equal(a, b)
    assert (
        warped[4].shape == (6, 2, 5, 5) and np.abs(warped[4]).max() <= 1.5 and np.abs(warped[4]).max() > 0.5
    )
    # a displaced point moves its neighbourhood: the image changes, but no pixel leaves [0, 1]
    x = np.random.default_rng(5).random((6, 784), dtype=np.float32)
    out = transform_batch(x, 0, 0, 0, 1, warped[4])
    assert not np.array_equal(out, x) and out.min() >= 0 and out.max() <= 1
