"""Faces in a photo, found offline: the face box, the two eyes (pupil centre and radius), a skin mask.

Why this detector: OpenCV's wheel in this environment has no `CascadeClassifier` and ships no
cascade files, and there are no model downloads; scikit-image ships OpenCV's LBP frontal-face cascade
(`skimage/data/lbpcascade_frontalface_opencv.xml`) and runs it with `skimage.feature.Cascade`. It
is small, CPU-only and deterministic. It runs on a copy whose long side is `DETECT_SIDE` px with a
window step of 1.5 px (40-60 ms on a 1024x768 photo, a third of the exhaustive scan's time), and
its false alarms (a cascade alone fires on textures) are vetoed by what a face must also show: a
box of at least `MIN_FACE` of the short side, mostly skin-coloured (YCrCb; so grey photos get no
face), and two dark pupils side by side in the upper half of the box. Everything is a pure function of
the pixels, with no randomness, so the methods that use it log its result and replay exactly.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from forgery_synth.synthesis.loading import is_grey

DETECT_SIDE = 320
"""Long side (px) of the copy the cascade runs on."""
MIN_FACE = 0.12
"""A face box is at least this share of the (downscaled) image's short side: a portrait's face, not a crowd."""
MIN_SKIN = 0.3
"""Share of skin-coloured pixels the central part of a colour photo's face box must hold."""
HAIR_DISTANCE = 22.0
"""Lab distance from the forehead's colour beyond which a pixel is hair (or a hat), not forehead."""
MIN_EYE_CONTRAST = 6.0
"""How much darker (grey levels) a pupil must be than its surroundings (the blob response)."""


@dataclass(frozen=True)
class Face:
    """One detected face, in full-image pixels.

    box: (x, y, w, h). eyes: ((x, y, r), (x, y, r)), the image-left eye first; r is the pupil radius.
    """

    box: tuple[int, int, int, int]
    eyes: tuple[tuple[int, int, int], tuple[int, int, int]]

    def to_params(self) -> dict:
        """The JSON-able form methods log: {"box": [x, y, w, h], "eyes": [[x, y, r], [x, y, r]]}."""
        return {"box": [int(v) for v in self.box], "eyes": [[int(v) for v in e] for e in self.eyes]}

    @staticmethod
    def from_params(params: dict) -> "Face":
        """The inverse of `to_params`."""
        (a, b) = params["eyes"]
        return Face(tuple(int(v) for v in params["box"]), (tuple(int(v) for v in a), tuple(int(v) for v in b)))


class NoFaceError(ValueError):
    """A portrait method was given a photo in which no face was found."""


@lru_cache(maxsize=1)
def _cascade():
    from skimage import data
    from skimage.feature import Cascade

    return Cascade(data.lbp_frontal_face_cascade_filename())


def skin_mask(image: np.ndarray) -> np.ndarray:
    """HxW bool: skin-coloured pixels (the classic YCrCb box Cr 133-173, Cb 77-127) of an HxWx3 uint8 RGB image."""
    ycc = cv2.cvtColor(image, cv2.COLOR_RGB2YCrCb)
    cr, cb = ycc[..., 1], ycc[..., 2]
    return (cr >= 133) & (cr <= 173) & (cb >= 77) & (cb <= 127)


def _pupil(grey: np.ndarray, x0: int, y0: int, x1: int, y1: int, face_w: int) -> tuple[int, int, int, float] | None:
    """The strongest dark centre-surround blob (a difference of Gaussians at the pupil's scale) of
    the window [y0:y1, x0:x1] of `grey` (HxW float32): (x, y, r, contrast in grey levels). A pupil
    is darker than the white and skin right around it; a hair edge or a spectacle rim is not."""
    pad = max(4, round(0.08 * face_w))
    ya, xa = max(0, y0 - pad), max(0, x0 - pad)
    win = grey[ya : y1 + pad, xa : x1 + pad]
    if win.size == 0:
        return None
    r = max(1, round(0.035 * face_w))
    dog = cv2.GaussianBlur(win, (0, 0), 3.0 * r) - cv2.GaussianBlur(win, (0, 0), max(0.8, r / 1.5))
    inner = dog[y0 - ya : y1 - ya, x0 - xa : x1 - xa]
    _, contrast, _, (mx, my) = cv2.minMaxLoc(inner)
    return x0 + mx, y0 + my, r, float(contrast)


def _eyes(image: np.ndarray, box: tuple[int, int, int, int]) -> tuple[tuple[int, int, int], tuple[int, int, int]] | None:
    """The two pupils inside a face box: the darkest blob of each half of the eye band (rows 22-52%
    of the box, columns 12-88%), kept when both are clearly dark and roughly level."""
    x, y, w, h = box
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    yb0, yb1 = y + round(0.22 * h), y + round(0.52 * h)
    left = _pupil(grey, x + round(0.12 * w), yb0, x + round(0.48 * w), yb1, w)
    right = _pupil(grey, x + round(0.52 * w), yb0, x + round(0.88 * w), yb1, w)
    if left is None or right is None:
        return None
    if min(left[3], right[3]) < MIN_EYE_CONTRAST or abs(left[1] - right[1]) > 0.12 * w:
        return None
    if not 0.25 * w <= right[0] - left[0] <= 0.65 * w:
        return None
    return left[:3], right[:3]


def _candidates(image: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Cascade boxes (x, y, w, h) in full-image pixels, largest first."""
    h, w = image.shape[:2]
    s = min(1.0, DETECT_SIDE / max(h, w))
    small = image if s == 1.0 else cv2.resize(image, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    side = max(24, round(MIN_FACE * min(small.shape[:2])))
    if min(small.shape[:2]) < side:
        return []
    hits = _cascade().detect_multi_scale(img=small, scale_factor=1.1, step_ratio=1.5, min_size=(side, side),
                                         max_size=small.shape[:2])
    boxes = sorted(((d["c"], d["r"], d["width"], d["height"]) for d in hits), key=lambda b: (-b[2] * b[3], b))
    return [(round(c / s), round(r / s), round(bw / s), round(bh / s)) for c, r, bw, bh in boxes]


def _detect(image: np.ndarray) -> Face | None:
    if is_grey(image):
        return None  # without colour the skin check cannot veto the cascade's false alarms
    for box in _candidates(image):
        x, y, w, h = box
        core = image[y + h // 4 : y + 3 * h // 4, x + w // 4 : x + 3 * w // 4]
        if core.size == 0 or skin_mask(core).mean() < MIN_SKIN:
            continue
        eyes = _eyes(image, box)
        if eyes is not None:
            return Face(box, eyes)
    return None


_cache: dict[str, Face | None] = {}


def detect_face(image: np.ndarray) -> Face | None:
    """The largest verified face of an HxWx3 uint8 RGB image, or None (cached by the pixels' digest)."""
    key = hashlib.blake2b(np.ascontiguousarray(image).data, digest_size=16).hexdigest() + str(image.shape)
    if key not in _cache:
        if len(_cache) >= 8:
            _cache.pop(next(iter(_cache)))
        _cache[key] = _detect(image)
    return _cache[key]


def require_face(image: np.ndarray, method: str) -> Face:
    """`detect_face`, or NoFaceError naming the method (the engine turns it into a reject line)."""
    face = detect_face(image)
    if face is None:
        raise NoFaceError(f"{method}: no face found in the photo (portrait methods need a frontal face "
                          f"of at least {MIN_FACE:.0%} of the short side)")
    return face


def hairline(image: np.ndarray, face: Face) -> list[list[int]]:
    """The hair-forehead boundary as [[x, y], ...] points (left to right), [] when none is found.

    For each column of the face box's middle 70%, start on the forehead (above the eyebrows) and
    climb while the pixels stay within `HAIR_DISTANCE` (Lab) of the forehead's own colour (gaps of a few pixels allowed): the last skin row is
    the hairline there, kept when non-skin (hair, a hat) lies above it. Median-smoothed, one point
    every ~1/16 of the face width; at least half the columns must agree."""
    x, y, w, h = face.box
    eye_y = min(e[1] for e in face.eyes)
    top = max(0, y - round(0.4 * h))
    start = eye_y - round(0.14 * h)
    if start <= top + 2:
        return []
    lab = cv2.cvtColor(np.ascontiguousarray(image[top : start + 1]), cv2.COLOR_RGB2LAB).astype(np.float32)
    ref = np.median(lab[-3:, x + w // 4 : x + 3 * w // 4].reshape(-1, 3), axis=0)
    skin = np.linalg.norm(lab - ref, axis=-1) < HAIR_DISTANCE
    skin = cv2.morphologyEx(skin.astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8)) > 0
    gap = max(2, round(0.02 * h))
    cols = range(x + round(0.15 * w), x + round(0.85 * w), max(1, w // 64))
    found = []
    for c in cols:
        col = skin[:, min(c, image.shape[1] - 1)]
        row = len(col) - 1
        if not col[row]:
            continue
        miss = 0
        while row > 0 and miss <= gap:
            row -= 1
            miss = 0 if col[row] else miss + 1
        if row > 0:
            found.append((c, top + row + miss))
    if len(found) < 0.5 * len(cols):
        return []
    ys = np.array([p[1] for p in found], np.float64)
    k = max(1, len(ys) // 8) | 1
    ys = np.array([np.median(ys[max(0, i - k // 2) : i + k // 2 + 1]) for i in range(len(ys))])
    step = max(1, len(found) // 16)
    return [[int(found[i][0]), int(round(ys[i]))] for i in range(0, len(found), step)]


def light_side(image: np.ndarray, face: Face) -> str:
    """Which side of the image the key light comes from, as the face's shading shows it: "left" or
    "right", the brighter half of the skin between the eyes' level and the box's bottom."""
    x, y, w, h = face.box
    y0 = min(e[1] for e in face.eyes)
    grey = cv2.cvtColor(image[y0 : y + h, x : x + w], cv2.COLOR_RGB2GRAY).astype(np.float64)
    skin = skin_mask(image[y0 : y + h, x : x + w])
    half = w // 2
    left = grey[:, :half][skin[:, :half]]
    right = grey[:, half:][skin[:, half:]]
    lm = left.mean() if left.size else 0.0
    rm = right.mean() if right.size else 0.0
    return "left" if lm >= rm else "right"


def catchlight(image: np.ndarray, eye: tuple[int, int, int]) -> list[int] | None:
    """The existing catchlight of one eye, [x, y], or None: the brightest point within 1.6 pupil
    radii of its centre, when it is at least 60 grey levels above the pupil's darkest pixel."""
    ex, ey, r = eye
    rr = max(2, round(1.6 * r))
    y0, x0 = max(0, ey - rr), max(0, ex - rr)
    grey = cv2.cvtColor(np.ascontiguousarray(image[y0 : ey + rr + 1, x0 : ex + rr + 1]), cv2.COLOR_RGB2GRAY)
    if grey.size == 0:
        return None
    lo, hi, _, (mx, my) = cv2.minMaxLoc(grey)
    return [x0 + mx, y0 + my] if hi - lo >= 60 else None
