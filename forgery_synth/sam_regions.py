"""Object regions from segment-anything's automatic mask generator (`--sam-checkpoint PATH`).

The checkpoint is read with `torch.load(weights_only=True)` (no pickled code runs). Its shape is
recognised from the tensors: vit_b, vit_l and vit_h are built by segment-anything's own
`sam_model_registry` builders; any other shape (e.g. a small test model) is built from the same
modules with the widths the checkpoint has. The state dict is then loaded strictly.

A proposal is one of the generated masks, clipped to the image minus its border margin, whose
area lies in `--area`; masks that pass SAM's usual quality bars (predicted IoU >= 0.88,
stability >= 0.95) are preferred, and the draw among them uses the sample's generator. The
masks of an image are computed once per process and reused for its other samples. The region is
logged as an RLE `object` region, so a replay never runs SAM again.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .inpaint_pipeline import ModelUnavailable, resolve_device
from .regions import RegionError, border_margin, rle_encode

IMAGE_SIZE = 1024
PATCH = 16
WINDOW = 14
KNOWN_VARIANTS = {(768, 12): "vit_b", (1024, 24): "vit_l", (1280, 32): "vit_h"}
POINTS_PER_SIDE = 16
"""Prompt grid of the automatic generator (16x16 = 256 points; SAM's default 32 costs 4x)."""
POINTS_PER_BATCH = 16
QUALITY_IOU = 0.88
QUALITY_STABILITY = 0.95


@dataclass(frozen=True)
class SamSpec:
    """A SAM model's shape.

    embed_dim, depth, num_heads, global_attn_indexes: the ViT image encoder.
    prompt_dim: the image embedding / prompt width (256 in the released models).
    decoder_mlp_dim: the mask decoder transformer's MLP width (2048 in the released models).
    """

    embed_dim: int
    depth: int
    num_heads: int
    global_attn_indexes: tuple[int, ...]
    prompt_dim: int = 256
    decoder_mlp_dim: int = 2048

    @property
    def variant(self) -> str:
        """vit_b, vit_l, vit_h, or "custom"."""
        if (self.prompt_dim, self.decoder_mlp_dim) != (256, 2048):
            return "custom"
        return KNOWN_VARIANTS.get((self.embed_dim, self.depth), "custom")


def sam_spec(state_dict: dict) -> SamSpec:
    """Read the model's shape from a SAM state dict; raises ValueError if it is not a SAM checkpoint."""
    try:
        embed_dim = int(state_dict["image_encoder.patch_embed.proj.weight"].shape[0])
        blocks = {int(m.group(1)) for k in state_dict if (m := re.match(r"image_encoder\.blocks\.(\d+)\.", k))}
        depth = max(blocks) + 1
        rel = [state_dict[f"image_encoder.blocks.{i}.attn.rel_pos_h"].shape for i in range(depth)]
        prompt_dim = int(state_dict["mask_decoder.iou_token.weight"].shape[1])
        mlp_dim = int(state_dict["mask_decoder.transformer.layers.0.mlp.lin1.weight"].shape[0])
    except (KeyError, ValueError) as e:
        raise ValueError(f"not a segment-anything checkpoint (missing {e})") from None
    head_dim = int(rel[0][1])
    global_idx = tuple(i for i, shape in enumerate(rel) if int(shape[0]) != 2 * WINDOW - 1)
    return SamSpec(embed_dim, depth, embed_dim // head_dim, global_idx, prompt_dim, mlp_dim)


def build_sam(spec: SamSpec) -> Any:
    """An untrained Sam of this shape (the registry's builder for vit_b/l/h), in eval mode."""
    from segment_anything import sam_model_registry

    if spec.variant != "custom":
        return sam_model_registry[spec.variant](checkpoint=None).eval()
    from functools import partial

    import torch
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    grid = IMAGE_SIZE // PATCH
    return Sam(
        image_encoder=ImageEncoderViT(
            depth=spec.depth, embed_dim=spec.embed_dim, img_size=IMAGE_SIZE, mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), num_heads=spec.num_heads, patch_size=PATCH,
            qkv_bias=True, use_rel_pos=True, global_attn_indexes=spec.global_attn_indexes, window_size=WINDOW,
            out_chans=spec.prompt_dim,
        ),
        prompt_encoder=PromptEncoder(embed_dim=spec.prompt_dim, image_embedding_size=(grid, grid),
                                     input_image_size=(IMAGE_SIZE, IMAGE_SIZE), mask_in_chans=16),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=2, embedding_dim=spec.prompt_dim, mlp_dim=spec.decoder_mlp_dim, num_heads=8),
            transformer_dim=spec.prompt_dim, iou_head_depth=3, iou_head_hidden_dim=spec.prompt_dim,
        ),
        pixel_mean=[123.675, 116.28, 103.53], pixel_std=[58.395, 57.12, 57.375],
    ).eval()


_models: dict[tuple[str, str], Any] = {}


def load_sam(checkpoint: str, device: str = "auto") -> Any:
    """The Sam model of `checkpoint` on `device` (resolved), cached per process; raises ModelUnavailable."""
    device = resolve_device(device)
    key = (str(Path(checkpoint).expanduser().resolve()), device)
    if key not in _models:
        import torch

        path = Path(key[0])
        if not path.is_file():
            raise ModelUnavailable(f"--sam-checkpoint {checkpoint}: no such file (tried {path})")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
                state = state["model"]
            spec = sam_spec(state)
            sam = build_sam(spec)
            sam.load_state_dict(state, strict=True)
        except Exception as e:  # unpickling refused, shape mismatch, truncated file, ...
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
