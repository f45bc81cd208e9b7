"""Hairline: the band along the hair-forehead boundary blurred, smeared or repainted.

The boundary comes from the face box and a colour segmentation of forehead against hair
(`faces.hairline`); both are logged, so `apply` redoes no detection. A retoucher who changes a
hairline (or pastes a wig, or a face under other hair) leaves a band whose edge is softer than the
rest of the portrait: the "feathering anomaly on the hairline edge" of the research notes.
"""

from __future__ import annotations

import cv2
import numpy as np

from forgery_synth.methods.base import MethodOptions
from forgery_synth.methods.forgery import Forgery
from forgery_synth.synthesis.blend import composite, edge_band
from forgery_synth.synthesis.faces import NoFaceError, hairline, require_face

NAME = "hairline"
MODES = ("blur", "smear", "repaint")
"""blur: Gaussian; smear: a vertical motion blur across the edge; repaint: filled from its sides (Telea)."""


def get_params(image: np.ndarray, rng: np.random.Generator, options: MethodOptions, donor: np.ndarray | None = None) -> dict:
    """Detect the face and its hairline; draw the band's half-width, the mode and its strength."""
    face = require_face(image, NAME)
    points = hairline(image, face)
    if len(points) < 3:
        raise NoFaceError(f"{NAME}: no hair-forehead boundary found above the face")
    w = face.box[2]
    half = int(max(2, round(rng.uniform(0.03, 0.06) * w)))
    mode = str(rng.choice(MODES))
    return {"op": NAME, "face": face.to_params(), "points": points, "half_width": half, "mode": mode,
            "softness": round(float(rng.uniform(0.6, 1.2) * half), 2), "blend": "feather",
            "radius": max(1, half // 2), "place": {"kind": "hairline"}}


def band(shape: tuple[int, int], points: list[list[int]], half_width: int) -> np.ndarray:
    """HxW bool: the pixels within `half_width` of the hairline polyline."""
    canvas = np.zeros(shape[:2], np.uint8)
    cv2.polylines(canvas, [np.asarray(points, np.int32)], False, 255, thickness=2 * half_width + 1)
    return canvas > 0


def apply(image: np.ndarray, params: dict, donor: np.ndarray | None = None) -> Forgery:
    """Soften the band along the logged hairline; HxWx3 uint8 in, Forgery out."""
    footprint = band(image.shape, params["points"], params["half_width"])
    ys, xs = np.nonzero(footprint)
    pad = 3 * params["half_width"] + 8
    h, w = footprint.shape
    y0, y1, x0, x1 = max(0, ys.min() - pad), min(h, ys.max() + 1 + pad), max(0, xs.min() - pad), min(w, xs.max() + 1 + pad)
    crop = np.ascontiguousarray(image[y0:y1, x0:x1])
    sigma = float(params["softness"])
    if params["mode"] == "blur":
        soft = cv2.GaussianBlur(crop, (0, 0), sigma)
    elif params["mode"] == "smear":
        k = 2 * max(1, round(1.5 * sigma)) + 1
        soft = cv2.blur(crop, (1, k))
    else:
        soft = cv2.inpaint(crop, footprint[y0:y1, x0:x1].astype(np.uint8), max(2.0, sigma), cv2.INPAINT_TELEA)
    content = image.copy()
    content[y0:y1, x0:x1] = soft
    out = composite(image, content, footprint, params["blend"], params["radius"])
    return Forgery(image=out, mask=footprint.astype(np.uint8) * 255, op=params,
                   edge=edge_band(footprint, params["radius"]).astype(np.uint8) * 255)
