"""Skin retouch: part of the face's skin smoothed (the beauty filter), its pores and fine lines gone.

The part (forehead, a cheek, the chin, or all the skin below the eyes) is an ellipse placed from the
logged face box and eyes, cut to the skin-coloured pixels (`faces.skin_mask`) of the source, so
eyes, brows, lips and hair keep their detail as a retoucher's brush would. The smoothing is an
edge-preserving bilateral filter blended at a drawn strength.
"""

from __future__ import annotations

import cv2
import numpy as np

from forgery_synth.methods.base import MethodOptions
from forgery_synth.methods.forgery import Forgery
from forgery_synth.synthesis.blend import composite, edge_band
from forgery_synth.synthesis.faces import require_face, skin_mask

NAME = "skin-retouch"
PARTS = ("forehead", "left cheek", "right cheek", "chin", "face")
"""Which skin is smoothed; "left"/"right" as the image shows them."""


def part_ellipse(face: dict, part: str) -> tuple[tuple[int, int], tuple[int, int]]:
    """((cx, cy), (ax, ay)) of a part of the face, from the logged box and eyes."""
    x, y, w, h = face["box"]
    (lx, ly, _), (rx, ry, _) = face["eyes"]
    d = max(4, rx - lx)
    mx, my = (lx + rx) // 2, (ly + ry) // 2
    table = {
        "forehead": ((mx, my - round(0.45 * d)), (round(0.8 * d), round(0.25 * d))),
        "left cheek": ((lx - round(0.05 * d), my + round(0.55 * d)), (round(0.35 * d), round(0.35 * d))),
        "right cheek": ((rx + round(0.05 * d), my + round(0.55 * d)), (round(0.35 * d), round(0.35 * d))),
        "chin": ((mx, y + round(0.92 * h)), (round(0.45 * d), round(0.22 * d))),
        "face": ((mx, my + round(0.7 * d)), (round(1.0 * d), round(0.75 * d))),
    }
    return table[part]


def get_params(image: np.ndarray, rng: np.random.Generator, options: MethodOptions, donor: np.ndarray | None = None) -> dict:
    """Detect the face; draw the part, the filter's strength and the blend radius."""
    face = require_face(image, NAME).to_params()
    part = str(rng.choice(PARTS))
    w = face["box"][2]
    return {"op": NAME, "face": face, "part": part, "diameter": int(max(5, round(rng.uniform(0.06, 0.1) * w)) | 1),
            "sigma_color": round(float(rng.uniform(30, 70)), 1), "strength": round(float(rng.uniform(0.8, 1.0)), 3),
            "blend": "feather", "radius": int(max(2, round(0.02 * w))), "place": {"kind": "skin", "part": part}}


def apply(image: np.ndarray, params: dict, donor: np.ndarray | None = None) -> Forgery:
    """Smooth the logged part's skin; HxWx3 uint8 in, Forgery out."""
    (cx, cy), axes = part_ellipse(params["face"], params["part"])
    region = np.zeros(image.shape[:2], np.uint8)
    cv2.ellipse(region, (cx, cy), axes, 0, 0, 360, 255, -1)
    ys, xs = np.nonzero(region)
    if not len(xs):
        raise ValueError(f"{NAME}: the {params['part']} lies outside the image")
    pad = params["diameter"] + 2
    h, w = region.shape
    y0, y1, x0, x1 = max(0, ys.min() - pad), min(h, ys.max() + 1 + pad), max(0, xs.min() - pad), min(w, xs.max() + 1 + pad)
    crop = np.ascontiguousarray(image[y0:y1, x0:x1])
    skin = skin_mask(crop).astype(np.uint8)
    skin = cv2.morphologyEx(cv2.morphologyEx(skin, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8)), cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
    footprint = np.zeros(region.shape, bool)
    footprint[y0:y1, x0:x1] = (region[y0:y1, x0:x1] > 0) & (skin > 0)
    if not footprint.any():
        raise ValueError(f"{NAME}: no skin in the {params['part']}")
    smooth = cv2.bilateralFilter(crop, params["diameter"], params["sigma_color"], params["diameter"] / 2.0)
    smooth = cv2.GaussianBlur(smooth, (0, 0), params["diameter"] / 6.0)
    s = float(params["strength"])
    content = image.copy()
    content[y0:y1, x0:x1] = np.rint(s * smooth.astype(np.float32) + (1 - s) * crop.astype(np.float32)).astype(np.uint8)
    out = composite(image, content, footprint, params["blend"], params["radius"])
    return Forgery(image=out, mask=footprint.astype(np.uint8) * 255, op=params,
                   edge=edge_band(footprint, params["radius"]).astype(np.uint8) * 255)
