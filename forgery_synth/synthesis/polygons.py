"""Binary masks to polygons (for the answer text) and polygons back to masks.

A polygon is a flat list of integer pixel coordinates ``[x1, y1, x2, y2, ...]`` in the frame of
the mask it came from. Each connected region gives one polygon; a region's holes are joined to
its outer ring by a zero-width seam (a "keyhole"), so one ring per region renders the hole
correctly under both the even-odd and the non-zero fill rule and any polygon filler can redraw it.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class PolygonOptions:
    """Caps and simplification for `mask_to_polygons`.

    max_regions: keep at most this many regions (largest first).
    max_points: at most this many vertices per polygon (simplification is coarsened until it fits).
    epsilon: initial approxPolyDP tolerance, as a fraction of the ring's perimeter.
    min_region_area: regions (and holes) smaller than this many pixels are dropped, except the
        largest region, which is always kept.
    """

    max_regions: int = 8
    max_points: int = 48
    epsilon: float = 0.004
    min_region_area: int = 16


def _simplify(ring: np.ndarray, epsilon: float, max_points: int) -> np.ndarray:
    """Simplify one closed ring (Nx1x2 int32) to at most ``max_points`` vertices."""
    perimeter = cv2.arcLength(ring, True)
    eps = max(epsilon * perimeter, 0.5)
    out = cv2.approxPolyDP(ring, eps, True)
    while len(out) > max_points:
        eps *= 1.5
        out = cv2.approxPolyDP(ring, eps, True)
    return out.reshape(-1, 2)


def _bridge(outer: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """Join a hole ring into an outer ring through their closest vertex pair (Kx2 int arrays)."""
    d = ((outer[:, None, :].astype(np.int64) - hole[None, :, :]) ** 2).sum(-1)
    i, j = np.unravel_index(int(np.argmin(d)), d.shape)
    hole_loop = np.concatenate([hole[j:], hole[: j + 1]])
    return np.concatenate([outer[: i + 1], hole_loop, outer[i:]])


def mask_to_polygons(mask: np.ndarray, options: PolygonOptions = PolygonOptions()) -> list[list[int]]:
    """Polygons (flat int lists) of the foreground of ``mask`` (HxW, nonzero = foreground).

    Regions are ordered largest first. An all-zero mask gives ``[]``. Hole vertices count towards
    ``max_points`` only loosely: each ring is capped at ``max_points`` before bridging, and the
    joined ring is simplified no further (simplifying across a seam would break the hole).
    """
    binary = (np.asarray(mask) > 0).astype(np.uint8)
    if not binary.any():
        return []
    contours, hierarchy = cv2.findContours(binary, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE)
    hierarchy = hierarchy[0]
    outers = [k for k in range(len(contours)) if hierarchy[k][3] < 0]
    areas = {k: cv2.contourArea(contours[k]) + len(contours[k]) / 2.0 for k in range(len(contours))}
    outers.sort(key=lambda k: (-areas[k], k))
    kept = [k for n, k in enumerate(outers) if n == 0 or areas[k] >= options.min_region_area]
    kept = kept[: options.max_regions]
    polygons: list[list[int]] = []
    for k in kept:
        ring = _simplify(contours[k], options.epsilon, options.max_points)
        if len(ring) < 3:
            x, y, w, h = cv2.boundingRect(contours[k])
            ring = np.array([[x, y], [x + w - 1, y], [x + w - 1, y + h - 1], [x, y + h - 1]])
        child = hierarchy[k][2]
        holes = []
        while child >= 0:
            if areas[child] >= options.min_region_area:
                holes.append(child)
            child = hierarchy[child][0]
        holes.sort(key=lambda c: (-areas[c], c))
        # holes that would need more vertices than the cap allows are dropped, smallest first
        budget = options.max_points * 2
        for c in holes:
            hole = _simplify(contours[c], options.epsilon, options.max_points)
            if len(hole) < 3 or len(ring) + len(hole) + 2 > budget:
                continue
            ring = _bridge(ring, hole)
        polygons.append([int(v) for v in ring.reshape(-1)])
    return polygons


def polygons_to_mask(polygons: list[list[int]], height: int, width: int) -> np.ndarray:
    """Rasterise polygons (flat int lists) into an HxW uint8 {0, 255} mask, each ring filled on
    its own (non-zero rule) and the results united."""
    out = np.zeros((height, width), np.uint8)
    for poly in polygons:
        pts = np.asarray(poly, np.int32).reshape(-1, 2)
        if len(pts) < 3:
            continue
        layer = np.zeros_like(out)
        cv2.fillPoly(layer, [pts], 255)
        out |= layer
    return out


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two HxW masks (nonzero = foreground); 1.0 when both are empty."""
    a, b = np.asarray(a) > 0, np.asarray(b) > 0
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)
