"""The mask path's evidence in the image score: the cls logit also reads what the mask decoder drew.

A forged image is one with a forged region, and the mask path is trained pixel by pixel to find it,
so its map is evidence for the image verdict (image-level detection from the localisation map, as
detectors since CAT-Net and TruFor score images). Two summaries of the mask logits (B x 1 x h x w):
the mean of the top 1% of pixels and the mean over the image, both clamped to [-20, 20], go through
one linear layer whose output is added to the cls logit. The layer starts at zero (the model's
output at build time is unchanged) and its output is scaled by ``GAIN`` so its three parameters move
at ``GAIN`` times the head learning rate (AdamW's step does not depend on the gradient's scale).
The mask logits are detached: the cls loss trains this layer, never the mask path, so the masks stay
trained by the pixel losses alone. ``ForensicsModelConfig.cls_mask_evidence`` turns it on (new
models) or off (checkpoints written before it existed).
"""

from __future__ import annotations

import torch
from torch import nn

GAIN = 10.0
TOP_SHARE = 0.01


class MaskEvidence(nn.Module):
    """Linear(2 -> 1), zero-started, on (top-1% mean, mean) of detached mask logits."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(2, 1)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, mask_logits: torch.Tensor) -> torch.Tensor:
        """mask_logits: B x 1 x h x w float -> B float, the cls logit's addend."""
        flat = mask_logits.detach().float().flatten(1).clamp(-20.0, 20.0)
        k = max(1, int(flat.shape[1] * TOP_SHARE))
        feats = torch.stack([flat.topk(k, dim=1).values.mean(1), flat.mean(1)], dim=1)
        return GAIN * self.linear(feats.to(self.linear.weight.dtype)).squeeze(-1).float()


def add_mask_evidence(head: MaskEvidence | None, mask_logits: torch.Tensor | None,
                      cls_logit: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(cls_logit plus the mask's evidence, unused_zero). Without a head nothing changes; without a
    mask (no SAM inputs) the head joins the graph through the zero, so DDP sees every gradient."""
    if head is None:
        return cls_logit, cls_logit.new_zeros(())
    if mask_logits is None:
        return cls_logit, sum(p.sum() for p in head.parameters()) * 0.0
    return cls_logit + head(mask_logits), cls_logit.new_zeros(())
