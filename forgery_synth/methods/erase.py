"""Erase: a region removed and filled from its surroundings (OpenCV inpainting, Telea or Navier-Stokes).

With `--region auto`, erase removes an object (merged superpixels with a smooth outline), at most
`MAX_AREA` of the image and no wider than diffusion fills can fill without a smear
(`max_fill_radius`): what people remove is a thing, and a fill wider than that is a visible streak.
"""

from __future__ import annotations

import cv2
import numpy as np

from forgery_synth.methods.base import MethodOptions, choose_blend, object_region
from forgery_synth.methods.forgery import Forgery
from forgery_synth.synthesis.blend import composite, edge_band
from forgery_synth.synthesis.regions import RegionError, rasterize

NAME = "erase"
ATTEMPTS = 30
MAX_AREA = 0.06
"""Erase removes at most this share of the image: larger holes are smears, whatever the fill."""
FILLS = {"telea": cv2.INPAINT_TELEA, "ns": cv2.INPAINT_NS}


def max_fill_radius(shape: tuple[int, int]) -> float:
    """The widest region a diffusion fill (Telea, Navier-Stokes) may fill: an inscribed radius of 8%
    of the short side (41 px on a 512 px photo); wider holes come out as long streaks."""
    return max(8.0, 0.08 * min(shape[:2]))


def get_params(image: np.ndarray, rng: np.random.Generator, options: MethodOptions, donor: np.ndarray | None = None) -> dict:
    """Draw the region (an object by default, no wider than `max_fill_radius`), the fill and the blend."""
    if options.area[0] > MAX_AREA:
        raise ValueError(f"erase removes at most {MAX_AREA:.0%} of an image; --area starts at {options.area[0]:g}")
    area = (options.area[0], min(options.area[1], MAX_AREA))
    limit = max_fill_radius(image.shape[:2])
    for _ in range(ATTEMPTS):
        region = object_region(options, image, rng, area)
        footprint = rasterize(region, image.shape[:2]).astype(np.uint8)
        if cv2.distanceTransform(np.pad(footprint, 1), cv2.DIST_L2, 5).max() <= limit:
            break
    else:
        raise RegionError(f"erase: no region narrow enough to fill (inscribed radius <= {limit:.0f} px) "
                          f"after {ATTEMPTS} regions")
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
