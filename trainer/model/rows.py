"""New token rows: a small trainable delta on top of the frozen embedding and lm_head matrices."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class DeltaEmbedding(nn.Module):
    """A frozen ``nn.Embedding`` plus a trainable float32 delta on a few rows (the new tokens).

    forward: ids B x T int64 -> B x T x D in the base dtype; row ``new_ids[k]`` reads
    ``base.weight[new_ids[k]] + delta[k]``.
    """

    def __init__(self, base: nn.Embedding, new_ids: Sequence[int]):
        super().__init__()
        self.base = base
        ids = torch.tensor(list(new_ids), dtype=torch.long)
        self.register_buffer("new_ids", ids, persistent=False)
        lookup = torch.zeros(base.num_embeddings, dtype=torch.long)
        lookup[ids] = torch.arange(1, len(ids) + 1)
        self.register_buffer("lookup", lookup, persistent=False)
        self.delta = nn.Parameter(torch.zeros(len(ids), base.embedding_dim, dtype=torch.float32))

    @property
    def weight(self) -> torch.Tensor:
        return self.base.weight

    @property
    def num_embeddings(self) -> int:
        return self.base.num_embeddings

    @property
    def embedding_dim(self) -> int:
        return self.base.embedding_dim

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        out = self.base(input_ids)
        table = torch.cat([self.delta.new_zeros(1, self.delta.shape[1]), self.delta])
        return out + F.embedding(self.lookup[input_ids], table).to(out.dtype)

    def merged_rows(self) -> torch.Tensor:
        """n_new x D float32: the effective rows of the new tokens."""
        return self.base.weight[self.new_ids].float() + self.delta


class DeltaLMHead(nn.Module):
    """A frozen lm_head plus a trainable delta on the new tokens' output rows.

    forward: B x T x H -> B x T x V logits; column ``new_ids[k]`` gets ``h @ delta[k]`` added
    (in place, so no second V-wide copy of the logits is made). With ``tied_to`` the delta is the
    embedding's own (tied weights share both the base matrix and the delta).
    """

    def __init__(self, base: nn.Linear, new_ids: Sequence[int], tied_to: DeltaEmbedding | None = None):
        super().__init__()
        self.base = base
        self.register_buffer("new_ids", torch.tensor(list(new_ids), dtype=torch.long), persistent=False)
        self.tied = tied_to is not None
        if tied_to is not None:
            self.delta = tied_to.delta
        else:
            self.delta = nn.Parameter(torch.zeros(len(new_ids), base.in_features, dtype=torch.float32))

    @property
    def weight(self) -> torch.Tensor:
        return self.base.weight

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        logits = self.base(hidden)
        extra = (hidden.to(self.delta.dtype) @ self.delta.t()).to(logits.dtype)
        return logits.index_add_(-1, self.new_ids, extra)

    def merged_rows(self) -> torch.Tensor:
        return self.base.weight[self.new_ids].float() + self.delta


def init_new_rows(weight: torch.Tensor, new_ids: Sequence[int], *, noise: float, generator: torch.Generator) -> None:
    """Set ``weight[new_ids]`` to the mean of the rows before ``min(new_ids)`` plus Gaussian noise
    of std ``noise * std(those rows)`` (in place, no grad)."""
    with torch.no_grad():
        first = min(new_ids)
        existing = weight[:first].float()
        mean, std = existing.mean(0), existing.std()
        rnd = torch.randn((len(new_ids), weight.shape[1]), generator=generator)
        weight[list(new_ids)] = (mean + noise * std * rnd).to(weight.dtype)
