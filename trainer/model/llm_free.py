"""The LLM-free control (``language_model: none``): the vision tower, SAM and the heads, no language model.

What the language model adds is measured against this model. Data flow (B images, H the merger's width,
the LLM's hidden size)::

    pixel_values ──► Qwen vision tower + merger ──► merged tokens of each sample's first image
                 ──► mean ──► pooled (B x H) ──► cls_head ──► cls_logit (B)
                                             └─► + mask_queries (32 x H, learned) ──► mask_head ──► 32 prompts
                                                 ──► SAM mask decoder ──► mask_logits

No text is read or generated: the answer is a fixed template from the cls verdict
(:func:`template_answer`), and the text figures (verdict agreement, JSON validity) have nothing to
measure, so scoring gives no text verdict and predict/eval report them as n/a.
"""

from __future__ import annotations

import json
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from trainer.model.expert_views import expert_batch
from trainer.model.outputs import ScoreResult
from trainer.model.positions import ForensicPositions
from trainer.model.sam_decoder import SamMaskDecoder, prepare_sam_batch

NO_LANGUAGE_MODEL = "no language model"
"""What stands where an explanation would (predict's ``explanation``)."""


def template_answer(prob: float, threshold: float = 0.5) -> str:
    """The LLM-free model's answer: ``{"result": "fake"}`` when ``prob`` > ``threshold``, else ``"real"``."""
    return json.dumps({"result": "fake" if prob > threshold else "real"})


def first_images(input_ids: torch.Tensor, image_token_id: int) -> list[int]:
    """Per row of B x T expanded input_ids, the index (over the batch's images, in order) of its first image."""
    out, index = [], 0
    for row in input_ids:
        pad = row == image_token_id
        runs = int((pad & ~torch.cat([pad.new_zeros(1), pad[:-1]])).sum())
        if runs == 0:
            raise ValueError("a row has no image: the LLM-free model reads one image per sample")
        out.append(index)
        index += runs
    return out


def llm_free_heads(model: Any, pixel_values: torch.Tensor, image_grid_thw: torch.Tensor,
                   rows: list[int] | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, ForensicPositions]:
    """(pooled B x H float32, cls_logit B float32, prompts B x 32 x 256, positions) for the images
    ``rows`` (index of each sample's image in ``image_grid_thw``; None: one image per sample). Only the
    vision tower and merger run (``get_image_features``); the language model is never called."""
    merged = model.qwen.model.get_image_features(pixel_values, image_grid_thw).pooler_output
    rows = list(range(len(merged))) if rows is None else rows
    pooled = torch.stack([merged[i].float().mean(0) for i in rows])
    dtype = model.cls_head[0].weight.dtype
    cls_logit = model.cls_head(pooled.to(dtype)).squeeze(-1).float()
    prompts = model.mask_head((model.mask_queries[None] + pooled[:, None].to(model.mask_queries.dtype)).to(dtype))
    b = len(rows)
    device = pooled.device
    positions = ForensicPositions(cls=torch.zeros(b, dtype=torch.long, device=device),
                                  has_cls=torch.ones(b, dtype=torch.bool, device=device),
                                  masks=torch.zeros(b, 32, dtype=torch.long, device=device),
                                  has_masks=torch.ones(b, dtype=torch.bool, device=device))
    return pooled, cls_logit, prompts, positions


@torch.no_grad()
def llm_free_scores(model: Any, processor: Any, images: Sequence[np.ndarray], *,
                    mask_size: tuple[int, int] | None = None, boxes: Sequence[Sequence[float] | None] | None = None,
                    fingerprints: Sequence[np.ndarray | None] | None = None) -> list[ScoreResult]:
    """:meth:`ForensicsModel.score_batch` of an LLM-free model: images H x W x 3 uint8 in the processor's
    frame, the heads read, masks at ``mask_size`` or each image's own size; no text verdict (None)."""
    was_training = model.training
    model.eval()
    vision = processor.image_processor(images=list(images), return_tensors="pt")
    sizes_hw = [(int(im.shape[0]), int(im.shape[1])) for im in images]
    size = tuple(mask_size) if mask_size is not None else tuple(max(s[i] for s in sizes_hw) for i in (0, 1))
    extra: dict[str, Any] = {"pixel_values": vision["pixel_values"], "image_grid_thw": vision["image_grid_thw"]}
    dec = model.mask_decoder
    if isinstance(dec, SamMaskDecoder):
        extra["sam_images"], extra["sam_input_sizes"] = prepare_sam_batch(list(images), dec.image_size)
        if boxes is not None and any(b is not None for b in boxes):
            extra["boxes"] = torch.tensor([[v * dec.image_size / max(im.shape[:2]) for v in b] if b is not None
                                           else [float("nan")] * 4 for im, b in zip(images, boxes)], dtype=torch.float32)
    if model.expert_head is not None:
        extra["expert_images"] = expert_batch(list(images), model.config.expert, size, fingerprints)
    device = next(model.parameters()).device
    out = model(**{k: v.to(device) if torch.is_tensor(v) else v for k, v in extra.items()}, mask_size=size)
    model.train(was_training)
    results = []
    for i, hw in enumerate(sizes_hw):
        prob = float(torch.sigmoid(out.cls_logit[i]))
        mask = None
        if out.mask_logits is not None:
            logits = out.mask_logits[i : i + 1]
            if mask_size is None and tuple(logits.shape[-2:]) != hw:
                logits = F.interpolate(logits, size=hw, mode="bilinear", align_corners=False)
            mask = torch.sigmoid(logits[0, 0]).cpu().numpy().astype(np.float32)
        results.append(ScoreResult(cls_prob=prob, mask_prob=mask, answer=template_answer(prob), text_verdict=None,
                                   consistent=None))
    return results


def llm_free_answers(model: Any, processor: Any, images: Sequence[Any]) -> list[str]:
    """:meth:`ForensicsModel.generate_answers` of an LLM-free model: the template answer of each image's cls verdict."""
    arrays = [np.array(im.convert("RGB") if hasattr(im, "convert") else im, dtype=np.uint8) for im in images]
    return [r.answer for r in llm_free_scores(model, processor, arrays)]
