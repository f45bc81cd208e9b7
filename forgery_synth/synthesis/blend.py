"""Compositing pasted or modified content into an image, and the honest mask that results.

All blends act strictly inside the footprint: the feather ramps alpha from the footprint's edge
inwards, and Poisson blending is composited back inside it. So the pixels outside the footprint
are the base image's own bytes, and the footprint *is* the ground-truth mask.
"""

from __future__ import annotations

import cv2
import numpy as np

BLENDS = ("none", "feather", "poisson")


def draw_blend(blend: str, rng: np.random.Generator, shape: tuple[int, int]) -> dict:
    """Blend parameters for one sample: {"blend": name, "radius": px} (radius logged for all)."""
    if blend not in BLENDS:
        raise ValueError(f"unknown blend {blend!r}; expected one of {BLENDS}")
    short = min(shape[:2])
    radius = int(max(2, round(rng.uniform(0.005, 0.015) * short))) if blend == "feather" else 2
    return {"blend": blend, "radius": radius}


def composite(
    base: np.ndarray, content: np.ndarray, footprint: np.ndarray, blend: str, radius: int
) -> np.ndarray:
    """Put `content` into `base` inside `footprint`.

    Args:
        base: HxWx3 uint8 RGB, the image being forged.
        content: HxWx3 uint8 RGB, valid at least inside the footprint.
        footprint: HxW bool, where the new content goes (away from the image border).
        blend: "none", "feather" (linear alpha ramp of `radius` px inside the edge) or
            "poisson" (cv2.seamlessClone, gradient-domain).
    Returns:
        HxWx3 uint8, equal to `base` byte for byte outside the footprint.
    """
    inside = footprint[..., None]
    if blend == "none":
        return np.where(inside, content, base)
    if blend == "feather":
        dist = cv2.distanceTransform(footprint.astype(np.uint8), cv2.DIST_L2, 3)
        alpha = np.clip(dist / float(max(radius, 1)), 0.0, 1.0)[..., None]
        mixed = alpha * content.astype(np.float32) + (1.0 - alpha) * base.astype(np.float32)
        return np.where(inside, np.rint(mixed).astype(np.uint8), base)
    if blend == "poisson":
        mask8 = footprint.astype(np.uint8) * 255
        x, y, w, h = cv2.boundingRect(mask8)
        # seamlessClone centres the mask's bounding box on `center`; this centre is the identity
        # placement (tested), so the content lands where the footprint says.
        cloned = cv2.seamlessClone(
            np.ascontiguousarray(content[..., ::-1]), np.ascontiguousarray(base[..., ::-1]), mask8,
            (x + w // 2, y + h // 2), cv2.NORMAL_CLONE,
        )[..., ::-1]
        return np.where(inside, cloned, base)
    raise ValueError(f"unknown blend {blend!r}; expected one of {BLENDS}")


def edge_band(footprint: np.ndarray, radius: int) -> np.ndarray:
    """HxW bool: pixels within `radius` px (at least 2) of the footprint's edge, on both sides."""
    r = max(2, int(radius))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    fp = footprint.astype(np.uint8)
    return (cv2.dilate(fp, kernel) > 0) & ~(cv2.erode(fp, kernel, borderValue=1) > 0)
