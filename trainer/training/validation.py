"""Validation during training: generate answers for the val split in batches, score them, flag a collapsed model."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from trainer.model.forensics_model import ForensicsModel
from trainer.training.config import TrainConfig
from trainer.training.data import (
    decode_image,
    decode_mask,
    fingerprint_bank,
    sample_fingerprints,
)

VAL_BATCH = 8
"""Validation samples per generate/score call."""


@torch.no_grad()
def validate(model: ForensicsModel, processor: Any, samples: list, config: TrainConfig) -> dict[str, Any]:
    """Image accuracy / balanced accuracy / AUC and pixel F1 / IoU on ``samples`` (RawSample list).

    ``val_mode`` "generate": the answer is generated, then the heads read (as ``forgery predict``);
    "teacher": the reference answer is scored (faster, but its verdict word precedes ``<cls>``, so
    the image figures are optimistic). Pixel figures at each image's own resolution.
    ``thresholds``: the image and pixel thresholds calibrated on these samples, with the figures at
    0.5 and at them (trainer.evaluation.calibration.calibrate; saved as checkpoints' thresholds.json).
    """
    from PIL import Image

    from forgery_synth.dataset.prompts import INFERENCE_PROMPT

    from trainer.evaluation.calibration import calibrate
    from trainer.evaluation.metrics import image_metrics
    from trainer.evaluation.pixel_metrics import pixel_scores

    was_training = model.training
    model.eval()
    labels, scores, f1s, ious, masks = [], [], [], [], []
    for start in range(0, len(samples), VAL_BATCH):  # batched generation and scoring
        chunk = samples[start : start + VAL_BATCH]
        images = [decode_image(s.image) for s in chunk]
        # what eval asks (the inference prompt), except a reference answer of another template keeps its own
        users = [INFERENCE_PROMPT if config.val_mode == "generate" or s.template == "json" else
                 next(m["content"] for m in s.meta["messages"] if m["role"] == "user").replace("<image>", "")
                 for s in chunk]
        if config.val_mode == "generate":
            answers = model.generate_answers(processor, [Image.fromarray(im) for im in images], users,
                                             max_new_tokens=config.val_max_new_tokens)
        else:
            answers = [next(m["content"] for m in s.meta["messages"] if m["role"] == "assistant") for s in chunk]
        prints = (sample_fingerprints(chunk, images, config.fingerprints)
                  if model.config.expert == "prnu" else None)
        results = model.score_batch(processor, images, users, answers,  # each mask at its image's size
                                    fingerprints=prints)
        for s, image, result in zip(chunk, images, results):
            gt = decode_mask(s.mask, image.shape[:2])
            labels.append(s.label)
            scores.append(result.cls_prob)
            if s.label == 1 and result.mask_prob is not None and gt.any():
                px = pixel_scores(result.mask_prob, gt)
                masks.append((np.asarray(result.mask_prob, np.float32), gt))
                f1s.append(px.f1)
                ious.append(px.iou)
    model.train(was_training)
    img = image_metrics(labels, scores)
    preds = {int(p > 0.5) for p in scores}
    collapsed = len(set(labels)) == 2 and len(preds) == 1
    pixel = {"f1": float(np.mean(f1s)) if f1s else None, "iou": float(np.mean(ious)) if ious else None,
             "n": len(f1s)}
    score = (img.get("auc") or 0.0) + (pixel["f1"] or 0.0)
    return {"image": {k: img.get(k) for k in ("n", "n_fake", "n_real", "accuracy", "balanced_accuracy", "auc", "f1")},
            "pixel": pixel, "score": score, "collapsed": collapsed, "thresholds": calibrate(labels, scores, masks),
            "collapsed_to": (("fake" if preds == {1} else "real") if collapsed else None)}


def fingerprint_census(samples: list, folder: str) -> str:
    """One line: how many of ``samples`` (validation RawSamples) have a camera fingerprint in
    ``folder`` (the prnu view of the others is zeros), and why the others have none."""
    from forgery_synth.dataset.tar_shards import sample_log

    bank = fingerprint_bank(folder)
    before = bank.misses.copy()
    known = sum(bank.for_log(sample_log(s.meta), (64, 64)) is not None for s in samples)
    reasons = bank.misses - before
    why = "; ".join(f"{n} {r}" for r, n in reasons.most_common(5))
    return (f"prnu: {known} of {len(samples)} validation sample(s) have a camera fingerprint in {folder} "
            f"({len(bank.cameras)} camera(s)); the others' view is zeros" + (f" ({why})" if why else ""))
