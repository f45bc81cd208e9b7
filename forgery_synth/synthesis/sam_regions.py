"""Object regions from segment-anything's automatic mask generator (`--sam-checkpoint PATH`).

The checkpoint is read by `forgery_synth.models.sam.build_sam` (shared with the trainer):
`torch.load(weights_only=True)` (no pickled code runs), the architecture recognised from the
tensor shapes (vit_b, vit_l, vit_h, or any other shape such as a small test model), then the
state dict loaded strictly.

A proposal is one of the generated masks, clipped to the image minus its border margin, whose
area lies in `--area`; masks that pass SAM's usual quality bars (predicted IoU >= 0.88,
stability >= 0.95) are preferred, and the draw among them uses the sample's generator. The
masks of an image are computed once per process and reused for its other samples. The region is
logged as an RLE `object` region, so a replay never runs SAM again.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from forgery_synth.models.inpaint_pipeline import ModelUnavailable, resolve_device
from forgery_synth.synthesis.regions import RegionError, border_margin, rle_encode

POINTS_PER_SIDE = 16
"""Prompt grid of the automatic generator (16x16 = 256 points; SAM's default 32 costs 4x)."""
POINTS_PER_BATCH = 16
QUALITY_IOU = 0.88
QUALITY_STABILITY = 0.95


_models: dict[tuple[str, str], Any] = {}


def load_sam(checkpoint: str, device: str = "auto") -> Any:
    """The Sam model of `checkpoint` on `device` (resolved), cached per process; raises ModelUnavailable."""
    device = resolve_device(device)
    key = (str(Path(checkpoint).expanduser().resolve()), device)
    if key not in _models:
        from forgery_synth.models.sam import build_sam

        path = Path(key[0])
        if not path.is_file():
            raise ModelUnavailable(f"--sam-checkpoint {checkpoint}: no such file (tried {path})")
        try:
            sam, _ = build_sam(path)
        except Exception as e:  # unpickling refused, not a SAM, shape mismatch, truncated file, ...
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ModelUnavailable(
                f"--sam-checkpoint {checkpoint}: cannot load a segment-anything model with "
                f"torch.load(weights_only=True): {first}"
            ) from None
        _models.clear()
        _models[key] = sam.to(device)
    return _models[key]


_masks: dict[str, list[dict]] = {}


def generate_masks(image: np.ndarray, checkpoint: str, device: str = "auto") -> list[dict]:
    """SAM's automatic masks for `image` (HxWx3 uint8 RGB), cached per (image, checkpoint) for reuse.

    Every mask is kept (no quality threshold here): dicts with "segmentation" (HxW bool),
    "predicted_iou" and "stability_score".
    """
    key = hashlib.sha256(image.tobytes() + str(image.shape).encode() + checkpoint.encode()).hexdigest()
    if key not in _masks:
        import torch
        from segment_anything import SamAutomaticMaskGenerator

        sam = load_sam(checkpoint, device)
        generator = SamAutomaticMaskGenerator(
            sam, points_per_side=POINTS_PER_SIDE, points_per_batch=POINTS_PER_BATCH,
            pred_iou_thresh=0.0, stability_score_thresh=0.0,
        )
        with torch.inference_mode():
            masks = generator.generate(np.ascontiguousarray(image))
        if len(_masks) >= 4:
            _masks.pop(next(iter(_masks)))
        _masks[key] = masks
    return _masks[key]


def propose_sam_region(
    image: np.ndarray, rng: np.random.Generator, area: tuple[float, float], checkpoint: str, device: str = "auto",
) -> dict:
    """An `object` region from SAM's masks for `image` (HxWx3 uint8), with area fraction in `area`.

    Raises RegionError when no mask fits.
    """
    h, w = image.shape[:2]
    m = border_margin((h, w))
    inner = np.zeros((h, w), bool)
    inner[m : h - m, m : w - m] = True
    lo, hi = area
    good, fair = [], []
    for record in generate_masks(image, checkpoint, device):
        mask = record["segmentation"] & inner
        fraction = float(mask.sum()) / (h * w)
        if not (lo <= fraction <= hi and fraction > 0):
            continue
        ys, xs = np.nonzero(mask)
        box = [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]
        scores = [round(float(record["predicted_iou"]), 4), round(float(record["stability_score"]), 4)]
        entry = (box, mask, scores)
        (good if scores[0] >= QUALITY_IOU and scores[1] >= QUALITY_STABILITY else fair).append(entry)
    pool = good or fair
    if not pool:
        raise RegionError(f"no segment-anything mask with area {lo:g}-{hi:g} of the image in a {w}x{h} image")
    pool.sort(key=lambda e: (e[0], e[2]))
    box, mask, scores = pool[int(rng.integers(len(pool)))]
    x, y, bw, bh = box
    return {"kind": "object", "method": "sam", "box": box, "rle": rle_encode(mask[y : y + bh, x : x + bw]),
            "sam_scores": scores}
