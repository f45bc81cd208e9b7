"""Region proposals: where a local forgery happens.

A region is a plain JSON-able dict (it goes into the operation log) that `rasterize` turns into
the same binary mask every time. Geometric kinds store their geometry in integer pixels; the
content-aware ``object`` kind stores its mask as a run-length code, so replay never reruns the
segmentation.

Kinds:
    rect     {"kind": "rect", "box": [x, y, w, h]}
    ellipse  {"kind": "ellipse", "center": [cx, cy], "axes": [a, b], "angle": deg}
    polygon  {"kind": "polygon", "points": [[x, y], ...]}
    stroke   {"kind": "stroke", "points": [[x, y], ...], "width": w}   (a free-form brush stroke)
    object   {"kind": "object", "method": "slic", "box": [x, y, w, h], "rle": [run, ...]}
             (merged SLIC superpixels of similar colour, outline smoothed by `smooth_outline`;
             runs alternate 0/1 starting with 0, row-major over the box)

Every proposal lies inside the image minus a border margin, covers a fraction of the image
within the requested ``area`` range, and is never empty.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

REGION_KINDS = ("polygon", "ellipse", "stroke", "rect", "object")
"""Concrete kinds; ``auto`` draws one of these per sample."""

MAX_TRIES = 200


class RegionError(ValueError):
    """No region of the requested kind and area fits this image."""


def border_margin(shape: tuple[int, int]) -> int:
    """Pixels kept free along each border: 3% of the short side, at least 4."""
    return max(4, round(0.03 * min(shape[:2])))


def propose_region(
    kind: str,
    image: np.ndarray,
    rng: np.random.Generator,
    area: tuple[float, float] = (0.02, 0.15),
    fallback: str | None = None,
) -> dict:
    """Draw a region of `kind` ("auto" picks one) for `image` (HxWx3 uint8).

    The region's rasterised area, as a fraction of H*W, lies in `area` = (min, max). When no
    region of `kind` fits, a `fallback` kind is tried before RegionError is raised.
    """
    if fallback is not None:
        try:
            return propose_region(kind, image, rng, area)
        except RegionError:
            return propose_region(fallback, image, rng, area)
    if kind == "auto":
        kind = str(rng.choice(REGION_KINDS))
    if kind not in _PROPOSERS:
        raise ValueError(f"unknown region kind {kind!r}; expected one of {REGION_KINDS + ('auto',)}")
    lo, hi = area
    h, w = image.shape[:2]
    total = h * w
    for _ in range(MAX_TRIES):
        target = rng.uniform(lo, hi) * total
        region = _PROPOSERS[kind](image, rng, target)
        if region is None:
            continue
        fraction = float(rasterize(region, (h, w)).sum()) / total
        if lo <= fraction <= hi and fraction > 0:
            return region
    raise RegionError(f"no {kind} region with area {lo:g}-{hi:g} of the image fits a {w}x{h} image")


def rasterize(region: dict, shape: tuple[int, int]) -> np.ndarray:
    """The region's mask: HxW bool, True inside."""
    h, w = shape[:2]
    canvas = np.zeros((h, w), np.uint8)
    kind = region["kind"]
    if kind == "rect":
        x, y, bw, bh = region["box"]
        canvas[y : y + bh, x : x + bw] = 1
    elif kind == "ellipse":
        cx, cy = region["center"]
        a, b = region["axes"]
        cv2.ellipse(canvas, (cx, cy), (a, b), float(region["angle"]), 0, 360, 1, -1, cv2.LINE_8)
    elif kind == "polygon":
        pts = np.asarray(region["points"], np.int32).reshape(-1, 1, 2)
        cv2.fillPoly(canvas, [pts], 1, cv2.LINE_8)
    elif kind == "stroke":
        pts = np.asarray(region["points"], np.int32).reshape(-1, 1, 2)
        cv2.polylines(canvas, [pts], False, 1, int(region["width"]), cv2.LINE_8)
    elif kind == "object":
        x, y, bw, bh = region["box"]
        canvas[y : y + bh, x : x + bw] = rle_decode(region["rle"], (bh, bw))
    else:
        raise ValueError(f"unknown region kind {kind!r}")
    return canvas.astype(bool)


def rle_encode(mask: np.ndarray) -> list[int]:
    """Run lengths of a 2-D bool mask, row-major, alternating 0-runs and 1-runs, 0-run first."""
    flat = mask.ravel().astype(np.int8)
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    runs = np.diff(bounds).tolist()
    if flat.size and flat[0] == 1:
        runs = [0] + runs
    return [int(r) for r in runs]


def rle_decode(runs: list[int], shape: tuple[int, int]) -> np.ndarray:
    """Inverse of `rle_encode`: HxW uint8 {0, 1}."""
    values = np.zeros(len(runs), np.uint8)
    values[1::2] = 1
    flat = np.repeat(values, runs)
    if flat.size != shape[0] * shape[1]:
        raise ValueError(f"run-length code covers {flat.size} pixels, expected {shape[0] * shape[1]}")
    return flat.reshape(shape)


def _inner_box(shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1): the part of the image a region may occupy, x1/y1 exclusive."""
    h, w = shape[:2]
    m = border_margin(shape)
    return m, m, w - m, h - m


def _rect(image: np.ndarray, rng: np.random.Generator, target: float) -> dict | None:
    x0, y0, x1, y1 = _inner_box(image.shape)
    aspect = math.exp(rng.uniform(math.log(0.5), math.log(2.0)))
    bw = round(math.sqrt(target * aspect))
    bh = round(target / max(bw, 1))
    if bw < 4 or bh < 4 or bw > x1 - x0 or bh > y1 - y0:
        return None
    x = int(rng.integers(x0, x1 - bw + 1))
    y = int(rng.integers(y0, y1 - bh + 1))
    return {"kind": "rect", "box": [x, y, bw, bh]}


def _ellipse(image: np.ndarray, rng: np.random.Generator, target: float) -> dict | None:
    x0, y0, x1, y1 = _inner_box(image.shape)
    aspect = math.exp(rng.uniform(math.log(0.4), math.log(2.5)))
    a = round(math.sqrt(target * aspect / math.pi))
    b = round(target / (math.pi * max(a, 1)))
    angle = round(float(rng.uniform(0, 180)), 1)
    # Half extents of the rotated ellipse's bounding box.
    t = math.radians(angle)
    ex = math.ceil(math.hypot(a * math.cos(t), b * math.sin(t))) + 1
    ey = math.ceil(math.hypot(a * math.sin(t), b * math.cos(t))) + 1
    if a < 2 or b < 2 or 2 * ex >= x1 - x0 or 2 * ey >= y1 - y0:
        return None
    cx = int(rng.integers(x0 + ex, x1 - ex))
    cy = int(rng.integers(y0 + ey, y1 - ey))
    return {"kind": "ellipse", "center": [cx, cy], "axes": [a, b], "angle": angle}


def _polygon(image: np.ndarray, rng: np.random.Generator, target: float) -> dict | None:
    x0, y0, x1, y1 = _inner_box(image.shape)
    n = int(rng.integers(5, 13))
    angles = np.sort(rng.uniform(0, 2 * math.pi, n))
    radii = rng.uniform(0.45, 1.0, n)
    stretch = math.exp(rng.uniform(math.log(0.6), math.log(1.6)))
    unit = np.stack([radii * np.cos(angles) * stretch, radii * np.sin(angles) / stretch], 1)
    unit_area = 0.5 * abs(float(np.dot(unit[:, 0], np.roll(unit[:, 1], 1)) - np.dot(unit[:, 1], np.roll(unit[:, 0], 1))))
    if unit_area <= 1e-6:
        return None
    pts = unit * math.sqrt(target / unit_area)
    lo, hi = pts.min(0), pts.max(0)
    span = hi - lo
    if span[0] >= x1 - x0 - 1 or span[1] >= y1 - y0 - 1:
        return None
    ox = rng.uniform(x0 - lo[0], x1 - 1 - hi[0])
    oy = rng.uniform(y0 - lo[1], y1 - 1 - hi[1])
    points = np.rint(pts + [ox, oy]).astype(int)
    points[:, 0] = points[:, 0].clip(x0, x1 - 1)
    points[:, 1] = points[:, 1].clip(y0, y1 - 1)
    return {"kind": "polygon", "points": points.tolist()}


def _stroke(image: np.ndarray, rng: np.random.Generator, target: float) -> dict | None:
    h, w = image.shape[:2]
    x0, y0, x1, y1 = _inner_box(image.shape)
    width = max(3, round(rng.uniform(0.025, 0.07) * min(h, w)))
    half = width // 2 + 1
    lo = np.array([x0 + half, y0 + half], float)
    hi = np.array([x1 - 1 - half, y1 - 1 - half], float)
    if np.any(hi <= lo):
        return None
    pos = rng.uniform(lo, hi)
    heading = rng.uniform(0, 2 * math.pi)
    step = 1.5 * width
    points = [np.rint(pos).astype(int)]
    max_points = int(4 * target / (width * step)) + 8
    for _ in range(max_points):
        heading += rng.normal(0, 0.45)
        nxt = pos + step * np.array([math.cos(heading), math.sin(heading)])
        for axis in range(2):  # bounce off the margin
            if nxt[axis] < lo[axis] or nxt[axis] > hi[axis]:
                heading = math.pi - heading if axis == 0 else -heading
                nxt[axis] = np.clip(nxt[axis], lo[axis], hi[axis])
        pos = nxt
        points.append(np.rint(pos).astype(int))
    # Shortest prefix of the walk whose painted area reaches the target.
    region = {"kind": "stroke", "points": [], "width": int(width)}
    shape = (h, w)
    lo_k, hi_k = 2, len(points)
    while lo_k < hi_k:
        mid = (lo_k + hi_k) // 2
        region["points"] = [p.tolist() for p in points[:mid]]
        if rasterize(region, shape).sum() >= target:
            hi_k = mid
        else:
            lo_k = mid + 1
    region["points"] = [p.tolist() for p in points[:lo_k]]
    return region


def smooth_outline(mask: np.ndarray) -> np.ndarray:
    """An object's outline without spurs, notches or holes: HxW bool in, HxW bool out.

    A morphological opening removes parts thinner than ``2r`` (``r`` = 1.2% of the short side, at
    least 2 px: the minimum width), a closing fills notches as narrow, then the largest connected
    part is kept with its holes filled: one solid, smooth object, as a person would select it.
    """
    h, w = mask.shape
    r = max(2, round(0.012 * min(h, w)))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    m = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, kernel)
    m = cv2.morphologyEx(m, cv2.MORPH_CLOSE, kernel)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
    if n <= 1:
        return np.zeros((h, w), bool)
    part = (labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))).astype(np.uint8)
    contours, _ = cv2.findContours(part, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    solid = np.zeros((h, w), np.uint8)
    cv2.drawContours(solid, contours, -1, 1, thickness=cv2.FILLED)
    return solid.astype(bool)


_SUPERPIXELS: dict[bytes, tuple[np.ndarray, np.ndarray]] = {}


def _superpixels(image: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """The image at `scale` (HxWx3 uint8) and its SLIC labels, memoised per image content: a
    sample's redraws and a photo's several samples segment the same pixels once."""
    import hashlib

    from skimage.segmentation import slic

    key = hashlib.sha1(image.tobytes()).digest() + repr((image.shape, scale)).encode()
    if key not in _SUPERPIXELS:
        h, w = image.shape[:2]
        small = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        if len(_SUPERPIXELS) >= 8:
            _SUPERPIXELS.pop(next(iter(_SUPERPIXELS)))
        _SUPERPIXELS[key] = (small, slic(small, n_segments=150, compactness=10.0, start_label=0, channel_axis=-1))
    return _SUPERPIXELS[key]


def _object(image: np.ndarray, rng: np.random.Generator, target: float) -> dict | None:
    """Grow a region over SLIC superpixels of similar Lab colour, from a random seed superpixel."""
    h, w = image.shape[:2]
    scale = min(1.0, 256.0 / max(h, w))
    small, labels = _superpixels(image, scale)
    n = int(labels.max()) + 1
    lab = cv2.cvtColor(small, cv2.COLOR_RGB2LAB).reshape(-1, 3).astype(np.float64)
    flat = labels.ravel()
    counts = np.bincount(flat, minlength=n).astype(np.float64)
    means = np.stack([np.bincount(flat, lab[:, c], minlength=n) for c in range(3)], 1) / np.maximum(counts, 1)[:, None]
    # Superpixels touching the border margin are never part of an object.
    sm = max(1, math.ceil(border_margin((h, w)) * scale) + 1)
    inner = np.zeros(labels.shape, bool)
    inner[sm:-sm, sm:-sm] = True
    allowed = np.ones(n, bool)
    allowed[np.unique(labels[~inner])] = False
    if not allowed.any():
        return None
    # Adjacency from horizontally and vertically neighbouring pixels.
    pairs = np.concatenate([
        np.stack([labels[:, :-1].ravel(), labels[:, 1:].ravel()], 1),
        np.stack([labels[:-1, :].ravel(), labels[1:, :].ravel()], 1),
    ])
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    neighbours: list[set[int]] = [set() for _ in range(n)]
    for a, b in np.unique(np.sort(pairs, 1), axis=0):
        neighbours[a].add(int(b))
        neighbours[b].add(int(a))
    seed = int(rng.choice(np.flatnonzero(allowed)))
    chosen = {seed}
    target_small = target * scale * scale
    size = counts[seed]
    while size < target_small:
        frontier = sorted({b for a in chosen for b in neighbours[a] if allowed[b]} - chosen)
        if not frontier:
            break
        mean = np.average(means[list(chosen)], axis=0, weights=counts[list(chosen)])
        dist = np.linalg.norm(means[frontier] - mean, axis=1) + rng.uniform(0, 8.0, len(frontier))
        pick = frontier[int(np.argmin(dist))]
        chosen.add(pick)
        size += counts[pick]
    small_mask = np.isin(labels, list(chosen)).astype(np.float32)
    mask = smooth_outline(cv2.resize(small_mask, (w, h), interpolation=cv2.INTER_LINEAR) > 0.5)
    x0, y0, x1, y1 = _inner_box((h, w))
    keep = np.zeros_like(mask)
    keep[y0:y1, x0:x1] = True
    mask &= keep
    if not mask.any():
        return None
    ys, xs = np.nonzero(mask)
    bx, by = int(xs.min()), int(ys.min())
    bw, bh = int(xs.max()) - bx + 1, int(ys.max()) - by + 1
    return {"kind": "object", "method": "slic", "box": [bx, by, bw, bh], "rle": rle_encode(mask[by : by + bh, bx : bx + bw])}


_PROPOSERS = {
    "rect": _rect,
    "ellipse": _ellipse,
    "polygon": _polygon,
    "stroke": _stroke,
    "object": _object,
}
