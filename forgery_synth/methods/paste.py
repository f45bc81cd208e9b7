"""Cutting a region out of an image, transforming it, and finding where it can land.

Shared by copy-move (the region comes from the image itself) and splice (from a donor).
"""

from __future__ import annotations

import cv2
import numpy as np

from forgery_synth.synthesis.regions import border_margin


def transform_patch(
    image: np.ndarray, region: np.ndarray, angle: float, scale: float, flip: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Cut `region` out of `image` and rotate (degrees, counter-clockwise), scale and mirror it.

    Args:
        image: HxWx3 uint8 RGB.
        region: HxW bool, non-empty.
    Returns:
        (patch hxwx3 uint8, patch_mask hxw bool), cropped tight around the transformed region.
    """
    ys, xs = np.nonzero(region)
    x0, y0, x1, y1 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
    pad = 2  # real neighbours for interpolation at the region's edge
    h, w = region.shape
    cx0, cy0, cx1, cy1 = max(0, x0 - pad), max(0, y0 - pad), min(w, x1 + pad), min(h, y1 + pad)
    crop = image[cy0:cy1, cx0:cx1]
    crop_mask = region[cy0:cy1, cx0:cx1].astype(np.float32)
    ch, cw = crop_mask.shape
    centre = ((cw - 1) / 2.0, (ch - 1) / 2.0)
    m = cv2.getRotationMatrix2D(centre, float(angle), float(scale))
    if flip:  # mirror about the vertical axis through the centre, after rotation
        m = np.array([[-1.0, 0.0, 2 * centre[0]], [0.0, 1.0, 0.0]]) @ np.vstack([m, [0, 0, 1]])
    corners = np.array([[0, 0, 1], [cw, 0, 1], [0, ch, 1], [cw, ch, 1]], np.float64) @ m.T
    lo, hi = np.floor(corners.min(0)), np.ceil(corners.max(0))
    m[:, 2] -= lo
    size = (int(hi[0] - lo[0]) + 1, int(hi[1] - lo[1]) + 1)
    patch = cv2.warpAffine(crop, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    pmask = cv2.warpAffine(crop_mask, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT) > 0.5
    if not pmask.any():
        raise ValueError("the transformed region is empty")
    ys, xs = np.nonzero(pmask)
    tx0, ty0, tx1, ty1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
    return patch[ty0:ty1, tx0:tx1], pmask[ty0:ty1, tx0:tx1]


def place(
    shape: tuple[int, int],
    patch_mask: np.ndarray,
    rng: np.random.Generator,
    avoid: np.ndarray | None = None,
    tries: int = 100,
) -> tuple[int, int] | None:
    """A top-left (x, y) for `patch_mask` (hxw bool) inside the image minus its border margin.

    When `avoid` (HxW bool) is given, the placed patch must not touch it (a 2 px gap is kept).
    Returns None when no position works after `tries` draws.
    """
    h, w = shape[:2]
    ph, pw = patch_mask.shape
    m = border_margin(shape)
    if pw > w - 2 * m or ph > h - 2 * m:
        return None
    if avoid is not None:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
        avoid = cv2.dilate(avoid.astype(np.uint8), kernel) > 0
    for _ in range(tries):
        x = int(rng.integers(m, w - m - pw + 1))
        y = int(rng.integers(m, h - m - ph + 1))
        if avoid is None or not np.any(avoid[y : y + ph, x : x + pw] & patch_mask):
            return x, y
    return None


def paste_canvas(
    base: np.ndarray, patch: np.ndarray, patch_mask: np.ndarray, x: int, y: int
) -> tuple[np.ndarray, np.ndarray]:
    """(content HxWx3 uint8, footprint HxW bool): `base` with `patch` written at (x, y)."""
    ph, pw = patch_mask.shape
    content = base.copy()
    content[y : y + ph, x : x + pw] = patch
    footprint = np.zeros(base.shape[:2], bool)
    footprint[y : y + ph, x : x + pw] = patch_mask
    return content, footprint


def draw_transform(rng: np.random.Generator) -> dict:
    """Rotation (degrees), scale and mirror for one paste: half the pastes are not rotated."""
    angle = 0.0 if rng.random() < 0.5 else round(float(rng.uniform(-30, 30)), 1)
    scale = round(float(rng.uniform(0.8, 1.25)), 3)
    flip = bool(rng.random() < 0.3)
    return {"angle": angle, "scale": scale, "flip": flip}


def scaled_area(area: tuple[float, float], scale: float) -> tuple[float, float]:
    """The source-region area range that lands inside `area` after scaling by `scale`."""
    s2 = max(scale * scale, 1e-6)
    return area[0] / s2, min(area[1] / s2, 0.9)


def region_box(region: np.ndarray) -> list[int]:
    """[x, y, w, h] of a non-empty HxW bool mask."""
    ys, xs = np.nonzero(region)
    return [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]

