"""The cls and mask-prompt MLP heads, and the light conv mask decoder (the alternative to SAM's)."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from trainer.model.sam_decoder import (
    PROMPT_DIM,
)


def mlp(dims: Sequence[int]) -> nn.Sequential:
    """Linear layers with GELU between them: dims[0] -> ... -> dims[-1]."""
    layers: list[nn.Module] = []
    for i in range(len(dims) - 1):
        layers.append(nn.Linear(dims[i], dims[i + 1]))
        if i < len(dims) - 2:
            layers.append(nn.GELU())
    return nn.Sequential(*layers)


class ConvMaskDecoder(nn.Module):
    """Ablation without SAM: the 32 prompts attend over the first image's visual token states.

    visual states (g_h x g_w x H) -> 1x1 projection to C -> two stride-2 transposed convs (4x
    upsampling). Prompts (32 x 256) -> C, one cross-attention layer over the (un-upsampled)
    visual tokens, mean over the 32 -> a C-vector whose dot product with every upsampled pixel
    feature is the mask logit, bilinearly resized to the output size.
    """

    def __init__(self, hidden_size: int, dim: int = 64, heads: int = 4):
        super().__init__()
        self.proj = nn.Linear(hidden_size, dim)
        self.query = nn.Linear(PROMPT_DIM, dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm = nn.LayerNorm(dim)
        self.up = nn.Sequential(
            nn.ConvTranspose2d(dim, dim, 2, stride=2), nn.GELU(), nn.ConvTranspose2d(dim, dim, 2, stride=2)
        )
        self.token_mlp = mlp([dim, dim, dim])

    def forward(self, prompts: torch.Tensor, visual: list[torch.Tensor], output_size: tuple[int, int]) -> torch.Tensor:
        """prompts: B x 32 x 256; visual: B tensors g_h x g_w x H -> B x 1 x H_out x W_out logits."""
        out = []
        for i, grid in enumerate(visual):
            gh, gw, _ = grid.shape
            feats = self.proj(grid.reshape(1, gh * gw, -1).float())  # 1 x N x C
            q = self.query(prompts[i : i + 1].float())
            attended, _ = self.attn(q, feats, feats, need_weights=False)
            token = self.token_mlp(self.norm(q + attended).mean(1))  # 1 x C
            up = self.up(feats.transpose(1, 2).reshape(1, -1, gh, gw))  # 1 x C x 4gh x 4gw
            logits = torch.einsum("bc,bchw->bhw", token, up)[:, None]
            out.append(F.interpolate(logits, size=tuple(output_size), mode="bilinear", align_corners=False))
        return torch.cat(out)
