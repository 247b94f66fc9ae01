"""On-the-fly image augmentation for 28x28 single-channel images stored as rows of 784 pixels.

draw_transforms draws, per image, a random shift, rotation and zoom about the image centre
(and, with MAX_WARP, a smooth elastic field), and transform_batch resamples a batch at once:
every output pixel's source position is computed with NumPy for all images together, and the
four neighbours are gathered from a zero-bordered copy of the batch (bilinear interpolation,
zero outside the image). Nothing is digit-specific (no flips), so
it suits any 28x28 10-class data set (MNIST, Fashion-MNIST, ...).

tta_views gives the original and four one-pixel shifts, for test-time augmentation.
"""

from __future__ import annotations

import threading

import numpy as np

from kit.core.mnist import IMAGE_SIDE as SIDE
from kit.core.mnist import N_PIXELS

_BORDER = 2  # zero border around each image: every clipped neighbour lands inside it
_PADDED = SIDE + 2 * _BORDER
_CENTRE = (SIDE - 1) / 2.0
_MAX_BATCH = 4096  # images resampled at once (larger batches go in parts)
_GRID = np.arange(SIDE, dtype=np.float32) - np.float32(_CENTRE)  # pixel centres relative to the centre
WARP_POINTS = 5  # elastic warp: a WARP_POINTS x WARP_POINTS grid of random displacements over the image


def _hat_matrix(points: int) -> np.ndarray:
    """(28, points): row i interpolates pixel i linearly between control points spread evenly
    from the first pixel to the last, so a field given at the points is smooth over the image."""
    where = np.arange(SIDE) * (points - 1) / (SIDE - 1)
    return np.maximum(0.0, 1.0 - np.abs(where[:, None] - np.arange(points)[None, :])).astype(np.float32)


_WARP_SPREAD = _hat_matrix(WARP_POINTS)


class _Workspace:
    """Scratch arrays for one batch size, reused between calls: fresh large arrays would cost
    more in page faults than the arithmetic on them."""

    def __init__(self, n: int) -> None:
        m = n * N_PIXELS
        self.padded = np.zeros((n, _PADDED, _PADDED), dtype=np.float32)  # the border stays zero
        self.src_r = np.empty((n, SIDE, SIDE), dtype=np.float32)
        self.src_c = np.empty((n, SIDE, SIDE), dtype=np.float32)
        self.floor_r = np.empty((n, SIDE, SIDE), dtype=np.float32)
        self.floor_c = np.empty((n, SIDE, SIDE), dtype=np.float32)
        self.base = np.empty(m, dtype=np.intp)
        self.index = np.empty(m, dtype=np.intp)
        self.v = [np.empty(m, dtype=np.float32) for _ in range(4)]
        self.image_offset = (np.arange(n, dtype=np.float32) * (_PADDED * _PADDED))[:, None, None]


_local = threading.local()  # one set of workspaces per thread: the trainer's replicas augment in parallel


def _workspace(n: int) -> _Workspace:
    workspaces: dict[int, _Workspace] = _local.__dict__.setdefault("workspaces", {})
    ws = workspaces.get(n)
    if ws is None:
        if len(workspaces) >= 4:  # a full batch, a last partial batch, and a couple of others
            workspaces.pop(next(iter(workspaces)))
        ws = workspaces[n] = _Workspace(n)
    return ws


def transform_batch(
    x: np.ndarray,
    shift_y,
    shift_x,
    angle,
    scale,
    warp: np.ndarray | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Apply one affine transform per image: zoom by `scale` and rotate by `angle` degrees
    (counter-clockwise on screen) about the centre, then shift by (shift_y, shift_x) pixels
    (positive: down, right). Bilinear sampling, zero outside the image. `warp` (n, 2, p, p),
    when given, moves where each output pixel reads by a smooth field: row and column
    displacements in pixels at a p x p grid of points, interpolated linearly in between.

    x: (n, 784) in [0, 1]; each parameter a scalar or an (n,) array. Returns (n, 784) in x's
    float dtype (written into `out` when given; `out` may be x). The identity transform returns
    x exactly, and integer shifts without rotation or zoom move pixels exactly.
    """
    x = np.asarray(x)
    n = len(x)
    if out is None:
        out = np.empty((n, N_PIXELS), dtype=x.dtype if np.issubdtype(x.dtype, np.floating) else np.float32)
    if n == 0:
        return out
    if n > _MAX_BATCH:  # keeps the float32 flat indices exact (below 2**24)
        for start in range(0, n, _MAX_BATCH):
            part = slice(start, start + _MAX_BATCH)
            pick = lambda v, part=part: v if np.ndim(v) == 0 else np.asarray(v)[part]  # noqa: E731
            transform_batch(
                x[part],
                pick(shift_y),
                pick(shift_x),
                pick(angle),
                pick(scale),
                None if warp is None else warp[part],
                out=out[part],
            )
        return out
    ws = _workspace(n)

    def per_image(v) -> np.ndarray:
        return np.broadcast_to(np.asarray(v, dtype=np.float64), (n,))

    shift_y, shift_x, scale = per_image(shift_y), per_image(shift_x), per_image(scale)
    theta = np.deg2rad(per_image(angle))
    # With y down, turning a point counter-clockwise on screen by theta maps an offset from
    # the centre (dy, dx) to (cos dy - sin dx, sin dy + cos dx). Output pixel p reads the
    # source at the inverse: R(-theta) (p - shift) / scale.
    cos, sin = np.cos(theta) / scale, np.sin(theta) / scale
    ry, rx, ty = cos, sin, -(cos * shift_y + sin * shift_x)  # source row    = ry dy + rx dx + ty
    cy, cx, tx = -sin, cos, -(-sin * shift_y + cos * shift_x)  # source column = cy dy + cx dx + tx
    g = _GRID
    offset = _CENTRE + _BORDER  # to padded-image coordinates
    fields = None
    if warp is not None:  # (n, 2, 28, 28): spread @ grid @ spread.T per image and axis
        spread = _WARP_SPREAD if warp.shape[-1] == WARP_POINTS else _hat_matrix(warp.shape[-1])
        fields = spread @ np.asarray(warp, dtype=np.float32) @ spread.T
    # source coordinates (n, 28, 28): a (n, 28, 1) column term plus a (n, 1, 28) row term
    for axis, (target, a, b, t) in enumerate(((ws.src_r, ry, rx, ty), (ws.src_c, cy, cx, tx))):
        down = a.astype(np.float32)[:, None, None] * g[None, :, None]
        across = (
            b.astype(np.float32)[:, None, None] * g[None, None, :]
            + (t + offset).astype(np.float32)[:, None, None]
        )
        np.add(down, across, out=target)
        if fields is not None:
            target += fields[:, axis]
        # outside the image every neighbour is border (zero); clipping keeps the gather in bounds
        np.clip(target, 0, _PADDED - 2, out=target)
    fr, fc, r0, c0 = ws.src_r, ws.src_c, ws.floor_r, ws.floor_c
    np.floor(fr, out=r0)
    np.floor(fc, out=c0)
    fr -= r0  # now the fractional parts
    fc -= c0
    # flat index of the top-left neighbour in the (n, 32, 32) padded batch
    r0 *= _PADDED
    r0 += c0
    r0 += ws.image_offset
    base, index = ws.base, ws.index
    np.copyto(base, r0.reshape(-1), casting="unsafe")  # exact: whole numbers below 2**24

    ws.padded[:, _BORDER : _BORDER + SIDE, _BORDER : _BORDER + SIDE] = x.reshape(n, SIDE, SIDE)
    flat = ws.padded.reshape(-1)
    v00, v01, v10, v11 = ws.v
    flat.take(base, out=v00)
    np.add(base, 1, out=index)
    flat.take(index, out=v01)
    index += _PADDED
    flat.take(index, out=v11)
    index -= 1
    flat.take(index, out=v10)
    fr, fc = fr.reshape(-1), fc.reshape(-1)
    # lerp along columns, then rows: top = v00 + fc (v01 - v00), bottom likewise, top + fr (bottom - top)
    v01 -= v00
    v01 *= fc
    v00 += v01
    v11 -= v10
    v11 *= fc
    v10 += v11
    v10 -= v00
    v10 *= fr
    v00 += v10
    # rounding can step a hair outside [0, 1]
    if out.flags.c_contiguous:
        np.clip(v00, 0.0, 1.0, out=out.reshape(-1))
    else:
        np.clip(v00, 0.0, 1.0, out=v00)
        out[...] = v00.reshape(n, N_PIXELS)
    return out


def draw_transforms(
    n: int,
    rng: np.random.Generator,
    max_shift: float,
    max_rotate: float,
    max_scale: float,
    max_warp: float = 0.0,
) -> tuple[np.ndarray, ...]:
    """(shift_y, shift_x, angle, scale), each (n,): shifts uniform in +-max_shift pixels,
    rotation uniform in +-max_rotate degrees, zoom uniform in [1 - max_scale, 1 + max_scale];
    with max_warp > 0 also warp (n, 2, 5, 5): row and column displacements uniform in
    +-max_warp pixels at a 5 x 5 grid of points, an elastic distortion once interpolated.
    One draw of `rng` per kind; transform_batch applies them, to a batch or to parts of it."""
    u = rng.random((4, n)) * 2.0 - 1.0  # four uniform numbers in [-1, 1) per image
    drawn = (u[0] * max_shift, u[1] * max_shift, u[2] * max_rotate, 1.0 + u[3] * max_scale)
    if max_warp > 0:
        drawn += ((rng.random((n, 2, WARP_POINTS, WARP_POINTS)) * 2.0 - 1.0) * max_warp,)
    return drawn


def shift_images(x: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """x (n, 784) moved dy pixels down and dx right (negative: up, left), zero fill; a new array."""
    n = len(x)
    img = np.asarray(x).reshape(n, SIDE, SIDE)
    out = np.zeros_like(img)
    dy, dx = int(dy), int(dx)
    if abs(dy) < SIDE and abs(dx) < SIDE:
        out[:, max(dy, 0) : SIDE + min(dy, 0), max(dx, 0) : SIDE + min(dx, 0)] = img[
            :, max(-dy, 0) : SIDE + min(-dy, 0), max(-dx, 0) : SIDE + min(-dx, 0)
        ]
    return out.reshape(n, N_PIXELS)


TTA_SHIFTS = ((0, 1), (0, -1), (1, 0), (-1, 0))


def tta_views(x: np.ndarray) -> list[np.ndarray]:
    """Test-time augmentation: [x, x shifted one pixel right, left, down, up], each (n, 784)."""
    return [x] + [shift_images(x, dy, dx) for dy, dx in TTA_SHIFTS]
