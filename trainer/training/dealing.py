"""The deal of an epoch: which (rank, DataLoader worker) slot reads which shards, and how long the
epoch is, as pure functions of the shards' counts and the options (nothing here reads a shard).

See trainer.training.data for the pipeline these numbers describe.

* **Reading.** Each shard is read once per epoch, by one slot. With fewer shards than slots, the k
  slots on one shard each keep every k-th sample of each (template, label) of it (the shard is read
  k times; :func:`trainer.training.data.count_epoch` says so in its ``notes``).
* **Epoch length.** :func:`epoch_plan` computes every slot's blocks from the manifest's per-shard
  (template, label) counts (:func:`trainer.training.data.shard_counts`; old shards are read once
  to count them), exactly what iterating gives. Under DDP every rank stops at ``common``, the fewest any rank has, so all
  ranks make the same optimizer steps.
* **Workers.** The DataLoader returns the workers' blocks round robin, skipping workers that ran
  out (:func:`round_robin`); :func:`trainer.training.data.rank_chunks` gives that order in one process.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from trainer.training.augment import AugmentConfig
from trainer.training.block_masking import BlockMaskConfig

ShardCounts = dict[tuple[str, int], int]
"""One shard's samples per (template, label 0 real / 1 fake)."""


@dataclass
class DataOptions:
    """What the pipeline needs. mask_size: (h, w) of the mask targets; sam_size: SAM's input side
    (None: no SAM inputs, the conv decoder); templates: kept templates (None: all); expert: the
    model's expert view (trainer.model.expert_views; "none": no ``expert_images``); block_mask: the
    block masking of the training images (share 0: off)."""

    seed: int = 0
    batch_size: int = 1
    templates: tuple[str, ...] | None = None
    shuffle_buffer: int = 256
    balance_buffer: int = 1024
    mask_size: tuple[int, int] = (128, 128)
    sam_size: int | None = 128
    augment: AugmentConfig = AugmentConfig()
    block_mask: BlockMaskConfig = BlockMaskConfig()
    rank: int = 0
    world_size: int = 1
    workers: int = 0
    """The DataLoader's ``num_workers`` (0: the rank reads in-process, one slot)."""
    expert: str = "none"
    fingerprints: str | None = None
    """The fingerprint folder of the "prnu" expert view (`forgery fingerprint --out`)."""
    cls_position: str | None = None
    """Where ``<cls>`` goes in every answer (the model's `cls_position`); None keeps the shards'."""
    mask_position: str | None = None
    """Where ``<mask_1..32>`` go in every answer that holds them (the model's `mask_position`); None keeps the shards'."""
    sam_cache: dict[str, str] | None = None
    """{shard url: its SAM embedding file} (trainer.training.sam_cache.find_caches); None: no disk cache."""


def n_slots(opts: DataOptions) -> int:
    """Reading slots of an epoch: one per (rank, DataLoader worker); a rank without workers is one slot."""
    return opts.world_size * max(1, opts.workers)


def slot_of(opts: DataOptions, worker: int) -> int:
    """The slot of (this rank, ``worker``): ``rank * workers + worker``."""
    return opts.rank * max(1, opts.workers) + worker


def epoch_slots(n_shards: int, opts: DataOptions, epoch: int) -> list[list[tuple[int, int, int]]]:
    """The deal: per slot, its shards as (shard index, share k, offset j); the slot keeps the samples whose
    running index within their (template, label) is j mod k. The epoch's seeded shard permutation is dealt
    round robin (position i -> slot i mod S); with fewer shards than slots, the k slots on one shard each
    keep every k-th sample of each class of it (the shard is then read k times)."""
    order = [int(i) for i in np.random.default_rng([opts.seed, epoch, 1]).permutation(n_shards)]
    s_all = n_slots(opts)
    if n_shards >= s_all:
        return [[(order[i], 1, 0) for i in range(s, n_shards, s_all)] for s in range(s_all)]
    if n_shards == 0:
        return [[] for _ in range(s_all)]
    return [[(order[s % n_shards], len(range(s % n_shards, s_all, n_shards)), s // n_shards)] for s in range(s_all)]


def read_ratio(n_shards: int, opts: DataOptions) -> float:
    """Shard reads per epoch / shards (1 when every slot has its own shards)."""
    return max(1.0, n_slots(opts) / n_shards) if n_shards else 1.0


def slot_label_counts(counts: list[ShardCounts], shards: list[tuple[int, int, int]], opts: DataOptions) -> list[int]:
    """[real, fake] a slot keeps of its ``shards`` ((shard, k, j) from :func:`epoch_slots`) after the template filter."""
    out = [0, 0]
    for shard, k, j in shards:
        for (template, label), n in counts[shard].items():
            if opts.templates is None or template in opts.templates:
                out[label] += len(range(j, n, k))
    return out


def rank_blocks(opts: DataOptions) -> int:
    """Micro-batches per block, the unit a worker hands over: 2 when batch_size is odd (a block then
    starts with the epoch's first class, so batch_size 1 alternates across workers), else 1."""
    return 2 if opts.batch_size % 2 else 1


def epoch_plan(counts: list[ShardCounts], opts: DataOptions, epoch: int) -> dict[str, Any]:
    """The exact epoch length, from the shard counts alone (a pure function, nothing read).

    Per slot the balancer emits ``min(real, fake)`` of each label (the kept samples of its shards), cut
    into blocks of :func:`rank_blocks` micro-batches. Returns ``slot_blocks`` (per slot), ``labels``
    (per slot [real, fake]), ``rank_micro_batches`` (per rank) and ``common`` (the fewest)."""
    slots = epoch_slots(len(counts), opts, epoch)
    labels = [slot_label_counts(counts, sh, opts) for sh in slots]
    per_block = opts.batch_size * rank_blocks(opts)
    blocks = [2 * min(c) // per_block for c in labels]
    w = max(1, opts.workers)
    per_rank = [sum(blocks[r * w:(r + 1) * w]) * rank_blocks(opts) for r in range(opts.world_size)]
    return {"slot_blocks": blocks, "labels": labels, "rank_micro_batches": per_rank, "common": min(per_rank)}


def round_robin(blocks_per_worker: list[int]) -> list[tuple[int, int]]:
    """The order a DataLoader returns the workers' items in, as (worker, its item index): rounds over the
    workers in id order, a worker that has run out left out (torch's round robin over active workers)."""
    out = []
    for t in range(max(blocks_per_worker, default=0)):
        out.extend((w, t) for w, n in enumerate(blocks_per_worker) if n > t)
    return out


def micro_batch_index(position: int, opts: DataOptions) -> int:
    """The global id of this rank's micro-batch at ``position`` (augmentation and block-mask seeds):
    ``position * world_size + rank``."""
    return position * opts.world_size + opts.rank
