"""Copy-move: a region of the image, rotated, scaled or mirrored, pasted elsewhere in the same image.

The paste never overlaps its source. The mask marks the target only (where content changed); the
source region stays in the log and in `Forgery.source_mask`, since users ask for it too.
"""

from __future__ import annotations

import numpy as np

from forgery_synth.methods.base import MethodOptions, choose_blend, object_region
from forgery_synth.methods.forgery import Forgery
from forgery_synth.methods.paste import (
    draw_transform,
    paste_canvas,
    place,
    region_box,
    scaled_area,
    transform_patch,
)
from forgery_synth.synthesis.blend import composite, edge_band
from forgery_synth.synthesis.regions import RegionError, rasterize

NAME = "copy-move"
ATTEMPTS = 20


def get_params(image: np.ndarray, rng: np.random.Generator, options: MethodOptions, donor: np.ndarray | None = None) -> dict:
    """Draw the source region, transform, target position and blend for `image` (HxWx3 uint8)."""
    shape = image.shape[:2]
    for _ in range(ATTEMPTS):
        transform = draw_transform(rng)
        region = object_region(options, image, rng, scaled_area(options.area, transform["scale"]))
        source = rasterize(region, shape)
        _, patch_mask = transform_patch(image, source, **transform)
        xy = place(shape, patch_mask, rng, avoid=source)
        if xy is None:
            continue
        ph, pw = patch_mask.shape
        blend = choose_blend(options, rng, shape, ("none", "feather", "poisson"))
        return {"op": NAME, "region": region, "src_box": region_box(source), "dst_box": [xy[0], xy[1], pw, ph], **transform, **blend}
    raise RegionError(f"copy-move: no target position that avoids the source region after {ATTEMPTS} regions")


def apply(image: np.ndarray, params: dict, donor: np.ndarray | None = None) -> Forgery:
    """Paste the transformed source region at `dst_box`; HxWx3 uint8 in, Forgery out."""
    source = rasterize(params["region"], image.shape[:2])
    patch, patch_mask = transform_patch(image, source, params["angle"], params["scale"], params["flip"])
    x, y = params["dst_box"][:2]
    content, footprint = paste_canvas(image, patch, patch_mask, x, y)
    out = composite(image, content, footprint, params["blend"], params["radius"])
    return Forgery(
        image=out,
        mask=footprint.astype(np.uint8) * 255,
        op=params,
        edge=edge_band(footprint, params["radius"]).astype(np.uint8) * 255,
        source_mask=source.astype(np.uint8) * 255,
    )
