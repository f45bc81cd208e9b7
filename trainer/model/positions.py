"""Where the forensic tokens and the first image's tokens stand in the expanded input_ids (by id, never an offset)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from trainer.model.tokens import (
    ForensicTokenIds,
)


@dataclass
class ForensicPositions:
    """Where the forensic tokens stand in expanded input_ids.

    cls: B int64 (0 where absent); has_cls: B bool; masks: B x 32 int64; has_masks: B bool (all
    32 present).
    """

    cls: torch.Tensor
    has_cls: torch.Tensor
    masks: torch.Tensor
    has_masks: torch.Tensor


def find_forensic_positions(input_ids: torch.Tensor, token_ids: ForensicTokenIds) -> ForensicPositions:
    """Positions of ``<cls>`` and ``<mask_1..32>`` in B x T expanded input_ids (last occurrence)."""
    ids = torch.tensor(token_ids.all, device=input_ids.device)
    hits = input_ids[:, None, :] == ids[None, :, None]  # B x 33 x T
    present = hits.any(-1)
    t = input_ids.shape[1]
    last = (t - 1) - hits.flip(-1).int().argmax(-1)
    last = torch.where(present, last, torch.zeros_like(last))
    return ForensicPositions(
        cls=last[:, 0], has_cls=present[:, 0], masks=last[:, 1:], has_masks=present[:, 1:].all(-1)
    )


def first_image_tokens(
    input_ids: torch.Tensor, image_grid_thw: torch.Tensor, *, image_token_id: int, merge_size: int
) -> list[tuple[torch.Tensor, int, int]]:
    """For each row: (positions of its first image's tokens, grid_h, grid_w) in merged-token units.

    Images are counted in order over the batch (as the processor lays out ``image_grid_thw``).
    """
    out = []
    image_index = 0
    for row in input_ids:
        pad = row == image_token_id
        starts = torch.nonzero(pad & ~torch.cat([pad.new_zeros(1), pad[:-1]])).flatten()
        if len(starts) == 0:
            raise ValueError("a row has no image tokens; the conv mask decoder needs one image per sample")
        _, gh, gw = (int(v) for v in image_grid_thw[image_index])
        gh, gw = gh // merge_size, gw // merge_size
        start = int(starts[0])
        out.append((torch.arange(start, start + gh * gw, device=row.device), gh, gw))
        image_index += len(starts)
    return out
