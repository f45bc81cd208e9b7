"""Shards -> model batches: a deterministic, label-balanced, resumable webdataset pipeline.

Order of one epoch (a pure function of (seed, epoch, the shards), whatever the worker count)::

    shard list ── seeded permutation ──► webdataset tar reading (raw bytes, nothing decoded)
      ──► template filter ──► seeded shuffle buffer ──► label balancer (real/fake alternate)
      ──► micro-batches of ``batch_size`` ──► rank r of W takes its blocks ──► worker w of N
          decodes every N-th of the rank's micro-batches ──► processor batch + SAM inputs + targets

* **Balance.** The balancer emits fake and real alternately (which class starts is drawn per
  epoch); the epoch ends when one class runs out (the rest of the other waits for the next epoch,
  which shuffles differently). With ``batch_size`` 1 (no padding) consecutive micro-batches
  alternate, so any accumulation group of >= 2 sees both classes; with ``batch_size`` >= 2 every
  micro-batch holds both. Under DDP the balanced stream is dealt to ranks in blocks (two
  micro-batches when ``batch_size`` is odd) so every rank keeps the alternation.
* **Workers.** Each DataLoader worker reads the (cheap, undecoded) raw stream in full and decodes
  only its own micro-batches; the DataLoader's round-robin then returns them in the global order.
  Decoding, augmentation, tokenisation and SAM preprocessing are the expensive part and are split.
* **Resume.** The position is (epoch, micro-batches consumed by this rank); restarting skips that
  many micro-batches before decoding anything.
* **Randomness.** Shard order and shuffle buffer use ``numpy.random.default_rng([seed, epoch, k])``;
  augmentation of sample i uses ``default_rng([seed, epoch, i, 7])``, its blocks (``--block-mask``)
  ``default_rng([seed, epoch, i, 17])``. No global random state.
* **Block masking** (trainer.training.block_masking, off by default) hides blocks of each image right
  after augmentation, before anything else is computed from it; the share follows (epoch, index).
* **Epoch ends.** Under DDP every rank takes the epoch's micro-batches up to the count every rank has
  (:func:`common_micro_batches`), so all ranks make the same optimizer steps.

A batch (``batch_size`` B, T tokens): ``input_ids``/``attention_mask``/``labels``/
``mm_token_type_ids`` B x T int64 (labels -100 outside the assistant turn), ``pixel_values``
N x 1176 float32, ``image_grid_thw`` B x 3 int64, ``sam_images`` B x 3 x S x S float32,
``sam_input_sizes`` B x 2 int64, ``sam_keys`` list[str], ``mask_target`` B x 1 x h x w float32
in {0, 1} (the mask resized, nearest, to the mask decoder's output frame ``mask_size``),
``cls_target`` B float32 (1 fake), ``mask_valid`` B bool, plus ``keys``, ``templates``,
``index`` (global micro-batch index) and ``epoch``. With an expert view (``DataOptions.expert``) also
``expert_images`` B x K x h x w float32: the final images' view at the mask frame
(:func:`trainer.model.expert_views.expert_batch`).
With block masking on (``--block-mask`` > 0) also
``pixel_valid`` B x 1 x h x w float32 in {0, 1} (0 = a hidden pixel, in the mask-target frame, nearest;
the pixel losses leave it out) and ``evidence_weight`` B float32 (0 = a forged sample whose forged
pixels are all hidden: no cls, contrastive or text loss for it, its ``labels`` row is all -100); without
it the batch has neither key and is what it was before block masking existed.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from PIL import Image

from forgery_synth.dataset.answer_tokens import place_cls
from forgery_synth.synthesis.loading import decode_rgb
from trainer.training.augment import AugmentConfig, augment_image, paraphrase_prompt
from trainer.training.block_masking import BlockMaskConfig, evidence_hidden, hide_blocks

IMAGE_EXTS = ("png", "jpg", "jpeg", "webp")


@dataclass
class RawSample:
    """One shard sample, undecoded. label: 1 fake, 0 real; meta: the sample's JSON."""

    key: str
    label: int
    template: str
    lang: str
    meta: dict
    image: bytes
    mask: bytes | None


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
    expert: str = "none"
    cls_position: str | None = None
    """Where ``<cls>`` goes in every answer (the model's `cls_position`); None keeps the shards'."""


def shard_urls(data_dir: str | Path, split: str) -> list[str]:
    """Paths of the ``split`` shards of a ``forgery build-shards`` output, in manifest order."""
    root = Path(data_dir)
    manifest = root / "manifest.json"
    if manifest.is_file():
        info = json.loads(manifest.read_text())
        names = [s["name"] for s in info.get("splits", {}).get(split, {}).get("shards", [])]
        return [str(root / n) for n in names]
    return [str(p) for p in sorted(root.glob(f"{split}-*.tar"))]


def _raw_stream(urls: list[str]) -> Iterator[RawSample]:
    """Tar members grouped into samples (webdataset), nothing decoded but the small JSON."""
    import webdataset as wds

    if not urls:
        return
    ds = wds.WebDataset(urls, shardshuffle=False, nodesplitter=None, workersplitter=None, empty_check=False)
    for s in ds:
        meta = json.loads(s["json"])
        ext = next((e for e in IMAGE_EXTS if e in s), None)
        if ext is None:
            raise ValueError(f"sample {s['__key__']} in {s.get('__url__')} has no image member")
        label = meta.get("label")
        if label not in ("real", "fake"):
            raise ValueError(f"sample {s['__key__']}: label must be real or fake, got {label!r}")
        yield RawSample(
            key=s["__key__"], label=int(label == "fake"), template=str(meta.get("template", "json")),
            lang=str(meta.get("lang", "en")), meta=meta, image=s[ext], mask=s.get("mask.png"),
        )


def balanced_stream(urls: list[str], opts: DataOptions, epoch: int) -> Iterator[RawSample]:
    """The epoch's global sample order (module docstring): filtered, shuffled, label-alternating."""
    rng = np.random.default_rng([opts.seed, epoch, 1])
    order = [urls[i] for i in rng.permutation(len(urls))]
    buffer: list[RawSample] = []
    queues: tuple[deque, deque] = (deque(), deque())
    want = int(rng.integers(2))

    def shuffled() -> Iterator[RawSample]:
        for s in _raw_stream(order):
            if opts.templates is not None and s.template not in opts.templates:
                continue
            if opts.shuffle_buffer <= 1:
                yield s
                continue
            buffer.append(s)
            if len(buffer) >= opts.shuffle_buffer:
                yield buffer.pop(int(rng.integers(len(buffer))))
        while buffer:
            yield buffer.pop(int(rng.integers(len(buffer))))

    for s in shuffled():
        queues[s.label].append(s)
        other = queues[1 - s.label]
        if opts.balance_buffer and len(queues[s.label]) > opts.balance_buffer and not other:
            queues[s.label].popleft()  # heavily imbalanced data: bound the waiting room
        while queues[want]:
            yield queues[want].popleft()
            want = 1 - want


def rank_blocks(opts: DataOptions) -> int:
    """Micro-batches per dealing block: 2 when batch_size is odd (keeps the alternation), else 1."""
    return 2 if opts.batch_size % 2 else 1


def _dealt_to(index: int, block: int, world_size: int) -> int:
    """The rank that global micro-batch ``index`` is dealt to (blocks of ``block``, round robin)."""
    return (index // block) % world_size


def common_micro_batches(n_micro_batches: int, opts: DataOptions) -> int:
    """The micro-batches every rank is dealt from an epoch of ``n_micro_batches`` (global): the fewest
    any rank gets. Each rank stops its epoch there, so all ranks make the same optimizer steps."""
    per_rank = [0] * opts.world_size
    for index in range(n_micro_batches):
        per_rank[_dealt_to(index, rank_blocks(opts), opts.world_size)] += 1
    return min(per_rank)


def epoch_micro_batches(urls: list[str], opts: DataOptions, epoch: int) -> int:
    """Global micro-batches of ``epoch`` (its balanced stream counted; reads the shards, decodes the JSON)."""
    return sum(1 for _ in balanced_stream(urls, opts, epoch)) // opts.batch_size


def rank_chunks(urls: list[str], opts: DataOptions, epoch: int) -> Iterator[tuple[int, list[RawSample]]]:
    """This rank's micro-batches of the epoch, as (global micro-batch index, samples)."""
    block = rank_blocks(opts)
    chunk: list[RawSample] = []
    index = 0
    for s in balanced_stream(urls, opts, epoch):
        chunk.append(s)
        if len(chunk) == opts.batch_size:
            if _dealt_to(index, block, opts.world_size) == opts.rank:
                yield index, chunk
            index += 1
            chunk = []


def count_epoch(urls: list[str], opts: DataOptions) -> dict[str, int]:
    """Samples per label after the template filter, and this rank's micro-batches in an epoch,
    counted by running the epoch's own balanced stream (about ``2 * min(real, fake)`` samples;
    the waiting-room bound and which label starts move it by a few); ``global_micro_batches`` over all
    ranks and ``common``, the micro-batches every rank has (:func:`common_micro_batches`). Counts epoch
    0; reads the shards twice, decodes only the JSON."""
    counts = [0, 0]
    for s in _raw_stream(urls):
        if opts.templates is None or s.template in opts.templates:
            counts[s.label] += 1
    balanced = sum(1 for _ in balanced_stream(urls, opts, 0))
    per_rank = sum(1 for _ in rank_chunks(urls, opts, 0))
    n_global = balanced // opts.batch_size
    return {"real": counts[0], "fake": counts[1], "balanced": balanced, "micro_batches": per_rank,
            "global_micro_batches": n_global, "common": common_micro_batches(n_global, opts)}


def decode_image(data: bytes) -> np.ndarray:
    """Encoded image bytes -> H x W x 3 uint8 RGB (the synthesis engine's one decoder)."""
    return decode_rgb(data)


def decode_mask(data: bytes | None, size_hw: tuple[int, int]) -> np.ndarray:
    """Mask PNG bytes -> H x W bool (grey > 127); all False when absent."""
    if data is None:
        return np.zeros(size_hw, bool)
    with Image.open(io.BytesIO(data)) as im:
        m = np.asarray(im.convert("L")) > 127
    if m.shape != tuple(size_hw):
        raise ValueError(f"mask {m.shape} differs from image {size_hw}")
    return m


def resize_mask(mask: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """H x W bool -> h x w float32 {0, 1}, nearest neighbour (the whole image maps to the frame)."""
    import cv2

    h, w = size_hw
    return cv2.resize(mask.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).astype(np.float32)


def make_batch(samples: list[RawSample], processor: Any, opts: DataOptions, *, epoch: int, index: int) -> dict:
    """Decode, augment and encode one micro-batch (see the module docstring for the keys)."""
    from trainer.model.expert_views import expert_batch
    from trainer.model.sam_decoder import prepare_sam_batch
    from trainer.model.tokens import encode_conversation

    images, masks, convs, keys, sam_keys, hiddens = [], [], [], [], [], []
    for j, s in enumerate(samples):
        image = decode_image(s.image)
        mask = decode_mask(s.mask, image.shape[:2])
        rng = np.random.default_rng([opts.seed, epoch, index * opts.batch_size + j, 7])
        image, ops = augment_image(image, opts.augment, rng)
        image, hidden = hide_blocks(image, opts.block_mask, seed=opts.seed, epoch=epoch, index=index,
                                    sample=index * opts.batch_size + j)
        ops = ops + ([{"op": "blocks"}] if hidden.any() else [])
        hiddens.append(hidden)
        messages = paraphrase_prompt(s.meta["messages"], s.template, s.lang, opts.augment, rng)
        if opts.cls_position is not None:
            messages = [{**m, "content": place_cls(m["content"], opts.cls_position)} if m["role"] == "assistant" else m
                        for m in messages]
        images.append(image)
        masks.append(mask)
        convs.append(messages)
        keys.append(s.key)
        sam_keys.append(s.key if not ops else s.key + ":" + hashlib.sha1(image.tobytes()).hexdigest()[:16])
    # the expert view of the final images (the last image edit comes before this line), at the mask frame
    expert = expert_batch(images, opts.expert, opts.mask_size) if opts.expert != "none" else None
    batch = encode_conversation(processor, convs, [[Image.fromarray(im)] for im in images])
    if expert is not None:
        batch["expert_images"] = expert
    if opts.sam_size is not None:
        batch["sam_images"], batch["sam_input_sizes"] = prepare_sam_batch(images, opts.sam_size)
        batch["sam_keys"] = sam_keys
    batch["mask_target"] = torch.from_numpy(np.stack([resize_mask(m, opts.mask_size) for m in masks]))[:, None]
    batch["cls_target"] = torch.tensor([float(s.label) for s in samples])
    batch["mask_valid"] = torch.tensor([s.mask is not None for s in samples])
    if opts.block_mask.share > 0:
        batch["pixel_valid"] = torch.from_numpy(np.stack([resize_mask(~h, opts.mask_size) for h in hiddens]))[:, None]
        batch["evidence_weight"] = torch.tensor(
            [0.0 if s.label and evidence_hidden(m, h) else 1.0 for s, m, h in zip(samples, masks, hiddens)])
        batch["labels"][batch["evidence_weight"] == 0] = -100
    batch["keys"] = keys
    batch["templates"] = [s.template for s in samples]
    batch["index"] = index
    batch["epoch"] = epoch
    return batch


class ShardBatches(torch.utils.data.IterableDataset):
    """This rank's decoded micro-batches of one epoch, from micro-batch ``start`` on.

    Set ``epoch``/``start`` before iterating (the loop does, for each epoch and on resume).
    """

    def __init__(self, urls: list[str], processor: Any, opts: DataOptions):
        super().__init__()
        self.urls, self.processor, self.opts = urls, processor, opts
        self.epoch, self.start = 0, 0

    def __iter__(self) -> Iterator[dict]:
        info = torch.utils.data.get_worker_info()
        worker, n_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        for local, (index, chunk) in enumerate(rank_chunks(self.urls, self.opts, self.epoch)):
            if local < self.start or (local - self.start) % n_workers != worker:
                continue
            yield make_batch(chunk, self.processor, self.opts, epoch=self.epoch, index=index)


def make_loader(dataset: ShardBatches, num_workers: int) -> torch.utils.data.DataLoader:
    """A DataLoader over ready micro-batches (``batch_size=None``: the dataset batches)."""
    return torch.utils.data.DataLoader(
        dataset, batch_size=None, num_workers=num_workers, prefetch_factor=4 if num_workers else None,
    )


def split_census(urls: list[str]) -> dict[str, dict[str, int]]:
    """{template: {"real": n, "fake": n}} of the samples in `urls` (only the small JSON is read):
    what a message needs to say which filter emptied a split."""
    out: dict[str, dict[str, int]] = {}
    for s in _raw_stream(urls):
        out.setdefault(s.template, {"real": 0, "fake": 0})["fake" if s.label else "real"] += 1
    return dict(sorted(out.items()))


def describe_census(census: dict[str, dict[str, int]]) -> str:
    """``"json: 1 real, 0 fake; explain: 0 real, 1 fake"`` (or "no samples")."""
    return "; ".join(f"{t}: {c['real']} real, {c['fake']} fake" for t, c in census.items()) or "no samples"


def validation_samples(urls: list[str], opts: DataOptions, limit: int) -> list[RawSample]:
    """Up to ``limit`` validation samples, classes alternating (fixed order, not augmented)."""
    out: list[RawSample] = []
    fixed = DataOptions(seed=opts.seed, batch_size=1, templates=opts.templates, shuffle_buffer=0,
                        balance_buffer=opts.balance_buffer, mask_size=opts.mask_size, sam_size=opts.sam_size)
    for s in balanced_stream(urls, fixed, epoch=0):
        out.append(s)
        if len(out) >= limit:
            break
    return out
