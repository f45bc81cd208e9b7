"""The expert head: a small trainable conv net on the expert view, added to both logits.

::

    expert view (B x K x h x w, the mask frame) ──► 3x3 convs, dilation 1, 2, 4 (receptive field
    15 px, the noise detector's window) ──► features F (B x C x h x w)
        ├─ 1x1 conv ─────────────────────────────────► + mask_logits (B x 1 x h x w)
        └─ [mean over h x w, max over h x w] ─► linear ─► + cls_logit (B)

The mask branch is a full-resolution skip path: fine local traces (a noise level, a compression
history) need the resolution that the SAM embedding grid (64 x 64 for 1024 px) or the visual
token grid lacks. The max pool lets one strongly edited region decide the image score, the mean
says how the whole image looks. Both output layers start at zero, so a fresh expert model gives
exactly the outputs of the model without one, and training moves away from it only as far as the
expert evidence helps (the zero-initialised skip of ControlNet).

The "forensic" view (21 channels of classical evidence) gets a wider, deeper head
(:data:`HEAD_SHAPES`: 32 channels, dilations 1, 2, 4, 8, 1, receptive field 33 px): it has to learn a
combination of many maps, and a forged region's border is judged against more of its surroundings.
"""

from __future__ import annotations

import torch
from torch import nn

from trainer.model.expert_views import expert_channels

EXPERT_WIDTH = 16
"""Feature channels C of the expert head."""

HEAD_SHAPES: dict[str, tuple[int, tuple[int, ...]]] = {"forensic": (32, (1, 2, 4, 8, 1))}
"""View kind -> (width, dilations of its 3x3 convs); any other kind: (EXPERT_WIDTH, (1, 2, 4))."""


class ExpertHead(nn.Module):
    """Expert view -> (mask logit delta B x 1 x h x w, cls logit delta B); see the module docstring."""

    def __init__(self, channels: int, width: int = EXPERT_WIDTH, dilations: tuple[int, ...] = (1, 2, 4)):
        super().__init__()
        if channels < 1:
            raise ValueError(f"an expert head needs at least one input channel, got {channels}")
        self.channels = channels
        layers: list[nn.Module] = []
        for i, d in enumerate(dilations):
            layers += [nn.Conv2d(channels if i == 0 else width, width, 3, padding=d, dilation=d), nn.GELU()]
        self.features = nn.Sequential(*layers)
        self.to_mask = nn.Conv2d(width, 1, 1)
        self.to_cls = nn.Linear(2 * width, 1)
        for layer in (self.to_mask, self.to_cls):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, views: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """views: B x K x h x w float (:func:`trainer.model.expert_views.expert_batch`)."""
        if views.ndim != 4 or views.shape[1] != self.channels:
            raise ValueError(f"expert_images must be B x {self.channels} x h x w, got {tuple(views.shape)}")
        feats = self.features(views.to(self.to_mask.weight.dtype))
        pooled = torch.cat([feats.mean(dim=(2, 3)), feats.amax(dim=(2, 3))], dim=1)
        return self.to_mask(feats).float(), self.to_cls(pooled).squeeze(-1).float()


def build_expert_head(kind: str, *, seed: int) -> ExpertHead | None:
    """The head for expert view ``kind`` (None for "none"), its random layers drawn from ``seed``
    (torch's RNG forked: building it draws nothing from the caller's stream)."""
    k = expert_channels(kind)
    if k == 0:
        return None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return ExpertHead(k, *HEAD_SHAPES.get(kind, (EXPERT_WIDTH, (1, 2, 4))))


def add_expert(
    head: ExpertHead | None,
    expert_images: torch.Tensor | None,
    mask_logits: torch.Tensor | None,
    cls_logit: torch.Tensor,
    mask_size: tuple[int, int],
) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
    """Add the head's evidence to the model's logits -> (mask_logits, cls_logit, unused_zero).

    Refuses (ValueError) an expert model without ``expert_images``, a model without an expert
    given them, and views that are not at the mask frame ``mask_size``. When the decoder made no
    mask (no SAM inputs), the mask branch joins the graph through ``unused_zero`` (a zero), so
    DDP sees a gradient for every parameter.
    """
    zero = cls_logit.new_zeros(())
    if head is None:
        if expert_images is not None:
            raise ValueError("expert_images given, but this model has no expert head (its config says expert none)")
        return mask_logits, cls_logit, zero
    if expert_images is None:
        raise ValueError("this model reads an expert view: pass expert_images (B x K x h x w at the mask frame, "
                         "trainer.model.expert_views.expert_batch)")
    if tuple(expert_images.shape[-2:]) != tuple(mask_size):
        raise ValueError(f"expert_images are {tuple(expert_images.shape[-2:])}, the mask frame is {tuple(mask_size)}")
    mask_delta, cls_delta = head(expert_images.to(cls_logit.device))
    if mask_logits is None:
        return None, cls_logit + cls_delta, mask_delta.sum() * 0.0
    return mask_logits + mask_delta, cls_logit + cls_delta, zero
