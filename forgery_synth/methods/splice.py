"""Splice: a region of a donor photo pasted in, its colours harmonised to the destination.

The donor is first resized to the target's pixel count (so an object keeps its size relative to the
photo, and `--area` means the same on both), an object drawn on it (`--region auto`), transformed
like a copy-move, landed where the surroundings are closest to it in colour (of `PLACES` candidate
positions), and its Lab mean and spread moved towards that neighbourhood's by a drawn strength.
"""

from __future__ import annotations

import math

import cv2
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

NAME = "splice"
ATTEMPTS = 20


def donor_frame(donor: np.ndarray, target_shape: tuple[int, int]) -> np.ndarray:
    """The donor (HdxWdx3 uint8) resized to about the target's pixel count, aspect kept."""
    h, w = target_shape[:2]
    dh, dw = donor.shape[:2]
    s = math.sqrt((h * w) / float(dh * dw))
    size = (max(16, round(dw * s)), max(16, round(dh * s)))
    if size == (dw, dh):
        return donor
    return cv2.resize(donor, size, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC)


def get_params(image: np.ndarray, rng: np.random.Generator, options: MethodOptions, donor: np.ndarray | None = None) -> dict:
    """Draw the donor region, transform, position, harmonisation strength and blend."""
    if donor is None:
        raise ValueError("splice needs a donor image")
    frame = donor_frame(donor, image.shape[:2])
    shape = image.shape[:2]
    for _ in range(ATTEMPTS):
        transform = draw_transform(rng)
        region = object_region(options, frame, rng, scaled_area(options.area, transform["scale"]))
        source = rasterize(region, frame.shape[:2])
        patch, patch_mask = transform_patch(frame, source, **transform)
        xy = _fitting_place(image, patch, patch_mask, rng)
        if xy is None:
            continue
        ph, pw = patch_mask.shape
        blend = choose_blend(options, rng, shape, ("none", "feather", "poisson"))
        return {
            "op": NAME, "donor_size": [int(donor.shape[1]), int(donor.shape[0])],
            "donor_frame": [int(frame.shape[1]), int(frame.shape[0])],
            "region": region, "src_box": region_box(source), "dst_box": [xy[0], xy[1], pw, ph],
            **transform, "harmonize": round(float(rng.uniform(0.3, 1.0)), 3), **blend,
        }
    raise RegionError(f"splice: no donor region fits the target after {ATTEMPTS} regions")


PLACES = 8
"""Candidate landing places per region; the one whose surroundings are closest in colour wins."""


def _neighbourhood(shape: tuple[int, int], x: int, y: int, pw: int, ph: int) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of the neighbourhood of a `pw`x`ph` box at (x, y): half a box on each side,
    clipped to the image. The one definition of "the surroundings", for placing and harmonising."""
    h, w = shape[:2]
    return max(0, x - pw // 2), max(0, y - ph // 2), min(w, x + pw + pw // 2), min(h, y + ph + ph // 2)


def _surroundings(image: np.ndarray, x: int, y: int, pw: int, ph: int) -> np.ndarray:
    """Nx3 uint8 pixels of `_neighbourhood`."""
    x0, y0, x1, y1 = _neighbourhood(image.shape, x, y, pw, ph)
    return image[y0:y1, x0:x1].reshape(-1, 3)


def _fitting_place(image: np.ndarray, patch: np.ndarray, patch_mask: np.ndarray,
                   rng: np.random.Generator) -> tuple[int, int] | None:
    """Where the donor object lands: of `PLACES` drawn positions, the one whose surroundings' mean
    Lab colour is closest to the object's, so a patch of sky goes near sky, not onto a text page.

    The surroundings' means come from a summed-area table of the image in Lab (one conversion)."""
    lab = cv2.cvtColor(patch, cv2.COLOR_RGB2LAB).astype(np.float64)[patch_mask].mean(0)
    table = cv2.integral(cv2.cvtColor(image, cv2.COLOR_RGB2LAB))  # (H+1)x(W+1)x3, float64
    ph, pw = patch_mask.shape
    best, best_d = None, np.inf
    for _ in range(PLACES):
        xy = place(image.shape[:2], patch_mask, rng)
        if xy is None:
            return best
        x0, y0, x1, y1 = _neighbourhood(image.shape, xy[0], xy[1], pw, ph)
        total = table[y1, x1] - table[y0, x1] - table[y1, x0] + table[y0, x0]
        d = float(np.linalg.norm(total / ((y1 - y0) * (x1 - x0)) - lab))
        if d < best_d:
            best, best_d = xy, d
    return best


def harmonize(patch: np.ndarray, patch_mask: np.ndarray, reference: np.ndarray, strength: float) -> np.ndarray:
    """Move the patch's Lab mean/std (inside its mask) towards `reference`'s by `strength` in [0, 1].

    patch: hxwx3 uint8 RGB; reference: Nx3 uint8 RGB pixels of the destination neighbourhood.
    """
    lab = cv2.cvtColor(patch, cv2.COLOR_RGB2LAB).astype(np.float32)
    ref = cv2.cvtColor(reference.reshape(-1, 1, 3), cv2.COLOR_RGB2LAB).reshape(-1, 3).astype(np.float32)
    inside = lab[patch_mask]
    mu_p, sd_p = inside.mean(0), inside.std(0) + 1e-3
    mu_r, sd_r = ref.mean(0), ref.std(0) + 1e-3
    moved = (lab - mu_p) * (sd_r / sd_p) + mu_r
    out = lab + strength * (moved - lab)
    return cv2.cvtColor(np.clip(np.rint(out), 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB)


def apply(image: np.ndarray, params: dict, donor: np.ndarray | None = None) -> Forgery:
    """Paste the harmonised donor region at `dst_box`; HxWx3 uint8 in, Forgery out."""
    if donor is None:
        raise ValueError("splice needs the donor image to replay")
    if [donor.shape[1], donor.shape[0]] != list(params["donor_size"]):
        raise ValueError(f"donor is {donor.shape[1]}x{donor.shape[0]}, the log expects {params['donor_size'][0]}x{params['donor_size'][1]}")
    frame = donor_frame(donor, image.shape[:2])
    source = rasterize(params["region"], frame.shape[:2])
    patch, patch_mask = transform_patch(frame, source, params["angle"], params["scale"], params["flip"])
    x, y, pw, ph = params["dst_box"]
    patch = harmonize(patch, patch_mask, _surroundings(image, x, y, pw, ph), params["harmonize"])
    content, footprint = paste_canvas(image, patch, patch_mask, x, y)
    out = composite(image, content, footprint, params["blend"], params["radius"])
    return Forgery(
        image=out, mask=footprint.astype(np.uint8) * 255, op=params,
        edge=edge_band(footprint, params["radius"]).astype(np.uint8) * 255,
    )
