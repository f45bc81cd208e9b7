"""What the forensics model returns: a training forward's outputs and an inference score."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from trainer.model.positions import (
    ForensicPositions,
)


@dataclass
class ForensicsOutput:
    """One forward pass.

    logits: B x T x V float (None when ``compute_logits=False``); text_loss: scalar or None;
    cls_logit: B float32 (sigmoid -> P(fake)); cls_embedding: B x H float32 (<cls> state, the
    InfoNCE input); mask_prompts: B x 32 x 256; mask_logits: B x 1 x h x w float32 or None
    (no mask inputs); unused_zero: scalar 0 tied to the heads that did not run (add it to the loss
    so every trainable parameter stays in the graph); positions: where the tokens were.
    """

    logits: torch.Tensor | None
    text_loss: torch.Tensor | None
    cls_logit: torch.Tensor
    cls_embedding: torch.Tensor
    mask_prompts: torch.Tensor
    mask_logits: torch.Tensor | None
    unused_zero: torch.Tensor
    positions: ForensicPositions


@dataclass
class ScoreResult:
    """Heads read for one generated answer.

    cls_prob: P(fake) in [0, 1]; mask_prob: H x W float32 in [0, 1]; answer: the text with the
    forensic tokens placed; text_verdict: "fake"/"real"/None parsed from the text; consistent:
    text verdict equals (cls_prob > 0.5), None without a text verdict.
    """

    cls_prob: float
    mask_prob: np.ndarray | None
    answer: str
    text_verdict: str | None
    consistent: bool | None
