"""Inpaint: a region repainted by a diffusion inpainting pipeline (diffusers), composited back.

The model works at its native resolution: a square window around the region (padded with
context, reflected where it leaves the image) is resized to the pipeline's size, repainted,
resized back, and only the region is pasted into the photo. So a large photo keeps its
resolution, and every pixel outside the region is the source's own (the VAE round trip changes
the whole window; none of that leaks out). The mask is the set of region pixels that really
changed.

Several samples can share one pipeline call (`--batch-size`): `prefetch` runs the calls for a
group of logged operations and keeps the results in a per-process cache that `apply` reads.
A call's float results depend on its batch size (not on the other members or their order), so
the batch size is logged, and `apply` without a cached result runs a batch of that size made of
copies of the sample itself: replay on the same device is byte-exact.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import cv2
import numpy as np

from forgery_synth.methods.base import MethodOptions, choose_blend
from forgery_synth.methods.forgery import Forgery
from forgery_synth.methods.inpaint_config import InpaintConfig
from forgery_synth.methods.inpaint_prompts import NEGATIVE_PROMPT, draw_prompt
from forgery_synth.models.inpaint_pipeline import (
    TINY,
    get_pipeline,
    native_size,
    resolve_device,
    resolve_dtype,
)
from forgery_synth.synthesis.blend import composite, edge_band
from forgery_synth.synthesis.regions import propose_region, rasterize

NAME = "inpaint"


AUTO_REGIONS = ("object", "polygon", "ellipse", "rect")


CONTEXT = 0.5
"""The window's side is (1 + CONTEXT) x the region's longer side, at least the pipeline's size."""


DEFAULT_STEPS = {TINY: 8}
"""Denoising steps when --inpaint-steps is not given: 8 for the tiny pipeline, 30 for real ones."""


REAL_MODEL_STEPS = 30


def load_model(config: InpaintConfig) -> Any:
    """Build or load the configured pipeline now (cached per process); raises ModelUnavailable."""
    device = resolve_device(config.device)
    return get_pipeline(config.model, device, resolve_dtype(config.dtype, device))


def get_params(image: np.ndarray, rng: np.random.Generator, options: MethodOptions, donor: np.ndarray | None = None) -> dict:
    """Draw the region, prompt, blend and the generator seed; log the pipeline's settings."""
    config = options.inpaint
    if config is None:
        raise ValueError("inpaint needs a model: pass --inpaint-model (tiny, a local folder or a hub id)")
    kind = str(rng.choice(AUTO_REGIONS)) if options.region == "auto" else options.region
    if kind == "object" and config.sam_checkpoint:
        from forgery_synth.synthesis.sam_regions import propose_sam_region

        region = propose_sam_region(image, rng, options.area, config.sam_checkpoint, config.device)
    else:
        region = propose_region(kind, image, rng, options.area)
    prompt = draw_prompt(rng, kind, config.prompts)
    blend = choose_blend(options, rng, image.shape[:2], ("none", "feather"))
    device = resolve_device(config.device)
    dtype = resolve_dtype(config.dtype, device)
    pipe = get_pipeline(config.model, device, dtype)
    size = native_size(pipe)
    footprint = rasterize(region, image.shape[:2])
    return {
        "op": NAME, "region": region, "model": config.model, "pipeline": type(pipe).__name__,
        "scheduler": type(pipe.scheduler).__name__, "prompt": prompt,
        "negative_prompt": NEGATIVE_PROMPT if config.negative_prompt is None else config.negative_prompt,
        "steps": config.steps or DEFAULT_STEPS.get(config.model, REAL_MODEL_STEPS),
        "guidance": float(config.guidance), "strength": float(config.strength),
        "seed": int(rng.integers(0, 2**63 - 1)), "device": device, "dtype": dtype, "batch": config.batch_size,
        "size": size, "crop": crop_window(footprint, size), **blend,
    }


def crop_window(footprint: np.ndarray, size: int) -> list[int]:
    """[x0, y0, side]: a square around the region (HxW bool), centred, shifted to fit the image when it can.

    side = max((1 + CONTEXT) * the region's longer side, min(size, H, W)); a window larger than the
    image's short side leaves it (that part is reflected by `window`).
    """
    h, w = footprint.shape
    ys, xs = np.nonzero(footprint)
    bx0, by0, bx1, by1 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
    side = max(round((1 + CONTEXT) * max(bx1 - bx0, by1 - by0)), min(size, h, w))
    x0 = (bx0 + bx1 - side) // 2
    y0 = (by0 + by1 - side) // 2
    x0 = min(max(x0, 0), w - side) if side <= w else x0
    y0 = min(max(y0, 0), h - side) if side <= h else y0
    return [int(x0), int(y0), int(side)]


def window(image: np.ndarray, x0: int, y0: int, side: int) -> np.ndarray:
    """image[y0:y0+side, x0:x0+side] (HxW or HxWxC), reflected (BORDER_REFLECT_101) where it leaves the image."""
    h, w = image.shape[:2]
    top, left = max(0, -y0), max(0, -x0)
    bottom, right = max(0, y0 + side - h), max(0, x0 + side - w)
    inner = image[max(0, y0) : min(h, y0 + side), max(0, x0) : min(w, x0 + side)]
    if top or left or bottom or right:
        inner = cv2.copyMakeBorder(np.ascontiguousarray(inner), top, bottom, left, right, cv2.BORDER_REFLECT_101)
    return np.ascontiguousarray(inner)


def pipeline_inputs(image: np.ndarray, params: dict) -> tuple[np.ndarray, np.ndarray]:
    """The pipeline's image (size x size x 3 uint8) and mask (size x size uint8 {0, 255}).

    The mask is the region, resized conservatively (any overlap counts) and dilated by
    size/64 px (one latent pixel of an SD model), so the model repaints all of the region.
    """
    size = params["size"]
    x0, y0, side = params["crop"]
    crop = window(image, x0, y0, side)
    footprint = window(rasterize(params["region"], image.shape[:2]).astype(np.uint8), x0, y0, side)
    interp = cv2.INTER_AREA if side > size else cv2.INTER_CUBIC
    small = cv2.resize(crop, (size, size), interpolation=interp)
    mask = cv2.resize(footprint.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA) > 0
    d = max(2, size // 64)
    mask = cv2.dilate(mask.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * d + 1, 2 * d + 1)))
    return small, mask * 255


def _call_key(params: dict) -> tuple:
    """What must be equal for two operations to share one pipeline call."""
    return tuple(params[k] for k in ("model", "device", "dtype", "size", "steps", "guidance", "strength", "batch"))


def _cache_key(params: dict, small: np.ndarray) -> str:
    digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode())
    digest.update(small.tobytes())
    return digest.hexdigest()


_results: dict[str, np.ndarray] = {}


def run_pipeline(items: list[tuple[dict, np.ndarray, np.ndarray]]) -> list[np.ndarray]:
    """One pipeline call for `items` [(params, image, mask)], all with the same `_call_key`.

    The call has exactly params["batch"] members: missing ones are copies of the last item.
    Each member has its own CPU torch.Generator seeded from its logged seed.
    Returns size x size x 3 uint8 RGB per item.
    """
    import torch
    from PIL import Image

    params = items[0][0]
    batch = params["batch"]
    if len(items) > batch:
        raise ValueError(f"{len(items)} operations for a pipeline call of batch {batch}")
    members = items + [items[-1]] * (batch - len(items))
    pipe = get_pipeline(params["model"], params["device"], params["dtype"])
    if type(pipe).__name__ != params["pipeline"] or type(pipe.scheduler).__name__ != params["scheduler"]:
        raise ValueError(
            f"--inpaint-model {params['model']} now loads {type(pipe).__name__}/{type(pipe.scheduler).__name__}, "
            f"the log expects {params['pipeline']}/{params['scheduler']}"
        )
    with torch.inference_mode():
        out = pipe(
            prompt=[p["prompt"] for p, _, _ in members], negative_prompt=[p["negative_prompt"] for p, _, _ in members],
            image=[Image.fromarray(img) for _, img, _ in members], mask_image=[Image.fromarray(m) for _, _, m in members],
            height=params["size"], width=params["size"], num_inference_steps=params["steps"],
            guidance_scale=params["guidance"], strength=params["strength"],
            generator=[torch.Generator("cpu").manual_seed(p["seed"]) for p, _, _ in members], output_type="np",
        ).images
    return [np.clip(np.rint(np.asarray(o, np.float64) * 255.0), 0, 255).astype(np.uint8) for o in out[: len(items)]]


def prefetch(pairs: list[tuple[np.ndarray, dict]]) -> None:
    """Run the pipeline for many (image HxWx3 uint8, logged inpaint op) pairs in batched calls.

    The results wait in a per-process cache for `apply`; call `clear_prefetched` when done.
    """
    groups: dict[tuple, list[tuple[dict, np.ndarray, np.ndarray]]] = {}
    for image, params in pairs:
        small, mask = pipeline_inputs(image, params)
        key = _cache_key(params, small)
        if key not in _results:
            groups.setdefault(_call_key(params), []).append((params, small, mask))
    for items in groups.values():
        batch = items[0][0]["batch"]
        for start in range(0, len(items), batch):
            chunk = items[start : start + batch]
            for (params, small, _), filled in zip(chunk, run_pipeline(chunk)):
                _results[_cache_key(params, small)] = filled


def clear_prefetched() -> None:
    """Forget the prefetched pipeline results."""
    _results.clear()


def apply(image: np.ndarray, params: dict, donor: np.ndarray | None = None) -> Forgery:
    """Repaint the region; HxWx3 uint8 in, Forgery out (mask: the region's changed pixels)."""
    small, mask = pipeline_inputs(image, params)
    filled = _results.pop(_cache_key(params, small), None)
    if filled is None:
        filled = run_pipeline([(params, small, mask)])[0]
    x0, y0, side = params["crop"]
    h, w = image.shape[:2]
    interp = cv2.INTER_CUBIC if side > params["size"] else cv2.INTER_AREA
    back = cv2.resize(filled, (side, side), interpolation=interp)
    content = image.copy()
    ix0, iy0, ix1, iy1 = max(0, x0), max(0, y0), min(w, x0 + side), min(h, y0 + side)
    content[iy0:iy1, ix0:ix1] = back[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0]
    footprint = rasterize(params["region"], image.shape[:2])
    out = composite(image, content, footprint, params["blend"], params["radius"])
    changed = footprint & (out != image).any(axis=-1)
    return Forgery(
        image=out, mask=changed.astype(np.uint8) * 255, op=params,
        edge=edge_band(footprint, params["radius"]).astype(np.uint8) * 255,
    )
