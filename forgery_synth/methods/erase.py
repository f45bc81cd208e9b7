"""Erase: a region removed and filled from its surroundings (OpenCV inpainting, Telea or Navier-Stokes).

With `--region auto`, erase draws object-like shapes (superpixel objects, polygons, ellipses,
strokes): erasing is what people do to objects and scribbles, not to rectangles.
"""

from __future__ import annotations

import cv2
import numpy as np

from forgery_synth.methods.base import MethodOptions, choose_blend
from forgery_synth.methods.forgery import Forgery
from forgery_synth.synthesis.blend import composite, edge_band
from forgery_synth.synthesis.regions import propose_region, rasterize

NAME = "erase"
AUTO_REGIONS = ("object", "polygon", "ellipse", "stroke")
FILLS = {"telea": cv2.INPAINT_TELEA, "ns": cv2.INPAINT_NS}


def get_params(image: np.ndarray, rng: np.random.Generator, options: MethodOptions, donor: np.ndarray | None = None) -> dict:
    """Draw the region, the fill algorithm and its radius, and the blend."""
    kind = str(rng.choice(AUTO_REGIONS)) if options.region == "auto" else options.region
    region = propose_region(kind, image, rng, options.area)
    fill = str(rng.choice(sorted(FILLS)))
    blend = choose_blend(options, rng, image.shape[:2], ("none", "feather"))
    return {"op": NAME, "region": region, "fill": fill, "fill_radius": int(rng.integers(3, 8)), **blend}


def apply(image: np.ndarray, params: dict, donor: np.ndarray | None = None) -> Forgery:
    """Fill the region from its surroundings; HxWx3 uint8 in, Forgery out."""
    footprint = rasterize(params["region"], image.shape[:2])
    # Inpaint a crop around the region: the fill only reads a few radii beyond it.
    ys, xs = np.nonzero(footprint)
    pad = 4 * params["fill_radius"] + 8
    h, w = footprint.shape
    y0, y1 = max(0, ys.min() - pad), min(h, ys.max() + 1 + pad)
    x0, x1 = max(0, xs.min() - pad), min(w, xs.max() + 1 + pad)
    filled = image.copy()
    filled[y0:y1, x0:x1] = cv2.inpaint(
        np.ascontiguousarray(image[y0:y1, x0:x1]), footprint[y0:y1, x0:x1].astype(np.uint8),
        float(params["fill_radius"]), FILLS[params["fill"]],
    )
    out = composite(image, filled, footprint, params["blend"], params["radius"])
    return Forgery(
        image=out, mask=footprint.astype(np.uint8) * 255, op=params,
        edge=edge_band(footprint, params["radius"]).astype(np.uint8) * 255,
    )
