"""Shards -> model batches: a deterministic, label-balanced, resumable webdataset pipeline.

Order of one epoch (a pure function of (seed, epoch, the shards, world size, workers))::

    shard list ── seeded permutation ──► dealt to S = world_size x workers slots (position i -> slot i mod S)
      ──► slot (rank r, worker w) reads only its shards (webdataset, raw bytes, nothing decoded)
      ──► template filter ──► seeded shuffle buffer ──► label balancer (real/fake alternate)
      ──► blocks of micro-batches ──► worker w decodes them ──► DataLoader round robin over the
          rank's workers ──► processor batch + SAM inputs + targets

* **Deal, epoch length, worker order**: trainer.training.dealing.
* **Balance.** Per slot the balancer takes ``min(real, fake)`` of each label and emits them
  alternately, starting with the class drawn for the epoch; the rest waits for the next epoch, which
  deals and shuffles differently. Micro-batches come in blocks (:func:`rank_blocks`: two when
  ``batch_size`` is odd, each block starting with the epoch's first class), so with ``batch_size`` 1
  the rank's consecutive micro-batches alternate across workers too and any accumulation group of >= 2
  sees both classes; with ``batch_size`` >= 2 every micro-batch holds both. The waiting room (samples
  waiting for a partner of the other label) is bounded by ``balance_buffer``: exceeding it (shards with
  long one-label runs; build-shards interleaves labels) is an error, never a silent drop, so the length
  stays exact.
* **Resume.** The position is (epoch, micro-batches consumed by this rank). Replaying the round robin
  tells how many blocks each worker gave before it; each worker skips exactly those, and the workers
  are rotated so the one that was next comes first, which continues the same order.
* **Randomness.** Shard order, first class and each slot's shuffle buffer use ``numpy.random.default_rng([seed, epoch, k(, slot)])``;
  augmentation of sample i uses ``default_rng([seed, epoch, i, 7])``, its blocks (``--block-mask``)
  ``default_rng([seed, epoch, i, 17])``. No global random state.
* **Block masking** (trainer.training.block_masking, off by default) hides blocks of each image right
  after augmentation, before anything else is computed from it; the share follows (epoch, index).
A batch (``batch_size`` B, T tokens): ``input_ids``/``attention_mask``/``labels``/
``mm_token_type_ids`` B x T int64 (labels -100 outside the assistant turn), ``pixel_values``
N x 1176 float32, ``image_grid_thw`` B x 3 int64, ``sam_images`` B x 3 x S x S float32,
``sam_input_sizes`` B x 2 int64, ``sam_keys`` list[str], ``mask_target`` B x 1 x h x w float32
in {0, 1} (the mask resized, nearest, to the mask decoder's output frame ``mask_size``), with a SAM
embedding cache (``DataOptions.sam_cache``) and at least one sample whose final image is the cached one
``sam_embeddings`` B x 256 x g x g float16 and ``sam_cached`` B bool (the rows to use; trainer.training.sam_cache),
``cls_target`` B float32 (1 fake), ``mask_valid`` B bool, plus ``keys``, ``templates``,
``index`` (the micro-batch's global id, :func:`micro_batch_index`) and ``epoch``. With an expert view (``DataOptions.expert``) also
``expert_images`` B x K x h x w float32: the final images' view at the mask frame
(:func:`trainer.model.expert_views.expert_batch`); with the "prnu" view also ``expert_known`` B bool
(False: no fingerprint for the sample's camera, its view is zeros; :func:`sample_fingerprints`).
With block masking on (``--block-mask`` > 0) also
``pixel_valid`` B x 1 x h x w float32 in {0, 1} (0 = a hidden pixel, in the mask-target frame, nearest;
the pixel losses leave it out) and ``evidence_weight`` B float32 (0 = a forged sample whose forged
pixels are all hidden: no cls, contrastive or text loss for it, its ``labels`` row is all -100); without
it the batch has neither key and is what it was before block masking existed.
"""

from __future__ import annotations

import hashlib
import io
from collections import deque
from typing import Any, Iterator

import numpy as np
import torch
from PIL import Image

from forgery_synth.dataset.answer_tokens import place_cls, place_masks
from forgery_synth.synthesis.loading import decode_rgb
from trainer.training.augment import ask_inference_prompt, augment_image, paraphrase_prompt
from trainer.training.block_masking import evidence_hidden, hide_blocks
from trainer.training.dealing import (
    DataOptions,
    epoch_plan,
    epoch_slots,
    micro_batch_index,
    n_slots,
    rank_blocks,
    read_ratio,
    round_robin,
    slot_label_counts,
    slot_of,
)
from trainer.training.shard_stream import RawSample, _raw_stream, shard_counts, shard_counts_note, shard_urls  # noqa: F401

def layout_answer(answer: str, opts: DataOptions) -> str:
    """A shard answer with its forensic tokens moved to the model's layout (``opts.mask_position``,
    ``opts.cls_position``; None keeps the shards' place), the one rule training and validation share."""
    if opts.mask_position is not None:
        cls_there = "<cls>" in answer
        answer = place_masks(answer, opts.mask_position)  # removes <cls>; put back below
        if cls_there and opts.cls_position is None:
            raise ValueError("moving the mask tokens needs the cls position too (DataOptions.cls_position)")
    if opts.cls_position is not None:
        answer = place_cls(answer, opts.cls_position)
    return answer


def _first_label(opts: DataOptions, epoch: int) -> int:
    return int(np.random.default_rng([opts.seed, epoch, 2]).integers(2))


def slot_samples(urls: list[str], opts: DataOptions, epoch: int, slot: int) -> Iterator[RawSample]:
    """One slot's balanced sample stream: its shards in dealt order, its share of each, the template
    filter, a seeded shuffle buffer, then the balancer (the epoch's first class, then alternating).

    The balancer takes ``min(real, fake)`` of each label of the slot (counted beforehand, so the length
    is exact), spread evenly over the label's arrivals, and drops the rest on arrival; the waiting room
    then holds only samples that will be emitted. ``balance_buffer`` bounds it: a run of one label longer than that (old, label-sorted
    shards) raises instead of silently dropping samples (which would make the epoch shorter than
    counted and leave DDP ranks waiting)."""
    counts = shard_counts(urls)
    shards = epoch_slots(len(urls), opts, epoch)[slot]
    have = slot_label_counts(counts, shards, opts)
    need = min(have)
    rng = np.random.default_rng([opts.seed, epoch, 3, slot])
    want = _first_label(opts, epoch)

    def kept() -> Iterator[RawSample]:
        for shard, k, j in shards:
            seen: dict[tuple[str, int], int] = {}
            for s in _raw_stream([urls[shard]]):
                i = seen.get((s.template, s.label), 0)
                seen[(s.template, s.label)] = i + 1
                if i % k == j and (opts.templates is None or s.template in opts.templates):
                    yield s

    def shuffled() -> Iterator[RawSample]:
        buffer: list[RawSample] = []
        for s in kept():
            if opts.shuffle_buffer <= 1:
                yield s
                continue
            buffer.append(s)
            if len(buffer) >= opts.shuffle_buffer:
                yield buffer.pop(int(rng.integers(len(buffer))))
        while buffer:
            yield buffer.pop(int(rng.integers(len(buffer))))

    queues: tuple[deque, deque] = (deque(), deque())
    arrived = [0, 0]
    for s in shuffled():
        i, arrived[s.label] = arrived[s.label], arrived[s.label] + 1
        if (i + 1) * need // have[s.label] == i * need // have[s.label]:
            continue  # the surplus of this label, dropped evenly over the slot's stream
        queues[s.label].append(s)
        if opts.balance_buffer and len(queues[s.label]) > opts.balance_buffer:
            raise ValueError(
                f"slot {slot} (rank {opts.rank}): more than --balance-buffer {opts.balance_buffer} "
                f"{'fake' if s.label else 'real'} samples wait for a partner (shards with long runs of one label; "
                "build-shards interleaves labels): rebuild the shards or raise --balance-buffer")
        while queues[want]:
            yield queues[want].popleft()
            want = 1 - want


def slot_blocks(urls: list[str], opts: DataOptions, epoch: int, slot: int) -> Iterator[list[list[RawSample]]]:
    """The slot's blocks (:func:`rank_blocks` micro-batches of ``batch_size`` samples); a partial block is dropped."""
    per_block = opts.batch_size * rank_blocks(opts)
    chunk: list[RawSample] = []
    for s in slot_samples(urls, opts, epoch, slot):
        chunk.append(s)
        if len(chunk) == per_block:
            yield [chunk[i:i + opts.batch_size] for i in range(0, per_block, opts.batch_size)]
            chunk = []


def rank_chunks(urls: list[str], opts: DataOptions, epoch: int) -> Iterator[tuple[int, list[RawSample]]]:
    """This rank's micro-batches of the epoch in the DataLoader's order (its workers' slots round robin),
    as (global micro-batch id, samples). Reads in one process what the workers read."""
    w = max(1, opts.workers)
    plan = epoch_plan(shard_counts(urls), opts, epoch)
    mine = plan["slot_blocks"][opts.rank * w:(opts.rank + 1) * w]
    streams = [slot_blocks(urls, opts, epoch, slot_of(opts, j)) for j in range(w)]
    position = 0
    for worker, _ in round_robin(mine):
        for chunk in next(streams[worker]):
            yield micro_batch_index(position, opts), chunk
            position += 1


def count_epoch(urls: list[str], opts: DataOptions, epoch: int = 0) -> dict[str, Any]:
    """The epoch's counts from the shard counts (:func:`epoch_plan`; nothing read when manifest.json has
    per-shard counts): ``real``/``fake`` samples after the template filter (the split), ``balanced``
    samples emitted over all slots, ``micro_batches`` this rank's, ``global_micro_batches`` all ranks',
    ``common`` the micro-batches every rank has (each rank stops its epoch there, so all make the same
    optimizer steps), ``read_ratio`` shard reads / shards, and ``notes`` (sentences worth logging once)."""
    counts = shard_counts(urls)
    plan = epoch_plan(counts, opts, epoch)
    split = slot_label_counts(counts, [(i, 1, 0) for i in range(len(counts))], opts)
    ratio = read_ratio(len(urls), opts)
    notes = [n for n in [shard_counts_note(urls)] if n]
    if ratio > 1:
        notes.append(f"{len(urls)} train shard(s) for {n_slots(opts)} reading slots ({opts.world_size} process(es) x "
                     f"{max(1, opts.workers)} worker(s)): slots share shards, each keeping every k-th sample, so an epoch "
                     f"reads the shards {ratio:.2f} times (more shards than slots read each once)")
    return {"real": split[0], "fake": split[1], "balanced": sum(2 * min(c) for c in plan["labels"]),
            "micro_batches": plan["rank_micro_batches"][opts.rank],
            "global_micro_batches": sum(plan["rank_micro_batches"]), "common": plan["common"],
            "read_ratio": ratio, "notes": notes}


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


_banks: dict[str, Any] = {}


def fingerprint_bank(folder: str) -> Any:
    """The process's :class:`forgery_synth.fingerprints.bank.FingerprintBank` of ``folder`` (read once)."""
    from forgery_synth.fingerprints.bank import FingerprintBank

    if folder not in _banks:
        _banks[folder] = FingerprintBank(folder)
    return _banks[folder]


def sample_fingerprints(samples: list[RawSample], images: list[np.ndarray], folder: str | None) -> list[np.ndarray | None]:
    """Each sample's camera fingerprint on its (final) image's pixels, or None (unknown camera, no
    fingerprint, another size: `FingerprintBank.for_log`); all None without a folder."""
    from forgery_synth.dataset.tar_shards import sample_log

    if not folder:
        return [None] * len(samples)
    bank = fingerprint_bank(folder)
    return [bank.for_log(sample_log(s.meta), im.shape[:2]) for s, im in zip(samples, images)]


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
        messages = ask_inference_prompt(messages, s.template, opts.augment.inference_prompt_share,
                                        np.random.default_rng([opts.seed, epoch, index * opts.batch_size + j, 8]))
        messages = [{**m, "content": layout_answer(m["content"], opts)} if m["role"] == "assistant" else m
                    for m in messages]
        images.append(image)
        masks.append(mask)
        convs.append(messages)
        keys.append(s.key)
        sam_keys.append(s.key if not ops else s.key + ":" + hashlib.sha1(image.tobytes()).hexdigest()[:16])
    # the expert view of the final images (the last image edit comes before this line), at the mask frame
    prints = sample_fingerprints(samples, images, opts.fingerprints) if opts.expert == "prnu" else None
    expert = expert_batch(images, opts.expert, opts.mask_size, prints) if opts.expert != "none" else None
    batch = encode_conversation(processor, convs, [[Image.fromarray(im)] for im in images])
    if expert is not None:
        batch["expert_images"] = expert
    if prints is not None:
        batch["expert_known"] = torch.tensor([k is not None for k in prints])
    if opts.sam_size is not None:
        batch["sam_images"], batch["sam_input_sizes"] = prepare_sam_batch(images, opts.sam_size)
        batch["sam_keys"] = sam_keys
        if opts.sam_cache:
            from trainer.training.sam_cache import cached_embeddings

            hit = cached_embeddings([s.url for s in samples], keys, images, opts.sam_cache)
            if hit is not None:
                batch["sam_embeddings"], batch["sam_cached"] = hit
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
    """This rank's decoded micro-batches of one epoch, from micro-batch ``start`` on, in blocks
    (lists of :func:`rank_blocks` batches; :func:`make_loader` flattens them).

    Set ``epoch``/``start`` before iterating (the loop does, for each epoch and on resume). Each worker
    reads and decodes only its slot; resume: the module docstring.
    """

    def __init__(self, urls: list[str], processor: Any, opts: DataOptions):
        super().__init__()
        self.urls, self.processor, self.opts = urls, processor, opts
        self.epoch, self.start = 0, 0

    def __iter__(self) -> Iterator[list[dict]]:
        info = torch.utils.data.get_worker_info()
        torch_worker, n_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        w, opts = max(1, self.opts.workers), self.opts
        if n_workers != w:
            raise ValueError(f"ShardBatches: the DataLoader has {n_workers} worker(s), DataOptions.workers says {w}")
        plan = epoch_plan(shard_counts(self.urls), opts, self.epoch)
        order = round_robin(plan["slot_blocks"][opts.rank * w:(opts.rank + 1) * w])
        block = rank_blocks(opts)
        first, within = divmod(self.start, block)
        rotate = order[first][0] if first < len(order) else 0
        worker = (rotate + torch_worker) % w
        position = {item: q for q, item in enumerate(order)}
        for b, chunks in enumerate(slot_blocks(self.urls, opts, self.epoch, slot_of(opts, worker))):
            q = position[(worker, b)]
            if q < first:
                continue
            out = [make_batch(c, self.processor, opts, epoch=self.epoch, index=micro_batch_index(q * block + m, opts))
                   for m, c in enumerate(chunks) if q > first or m >= within]
            if out:
                yield out


def _as_is(block: list[dict]) -> list[dict]:
    return block


class _Flat:
    """Iterates a DataLoader of blocks micro-batch by micro-batch."""

    def __init__(self, loader: torch.utils.data.DataLoader):
        self.loader = loader

    def __iter__(self) -> Iterator[dict]:
        for block in self.loader:
            yield from block


def make_loader(dataset: ShardBatches, num_workers: int) -> Any:
    """This rank's micro-batches, one at a time: a DataLoader (``batch_size=None``) over the dataset's
    blocks, flattened. ``num_workers`` must be the dataset's ``DataOptions.workers`` (it sets the deal)."""
    if num_workers != dataset.opts.workers:
        raise ValueError(f"make_loader: num_workers {num_workers} differs from DataOptions.workers {dataset.opts.workers}")
    return _Flat(torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=num_workers,
                                             prefetch_factor=4 if num_workers else None, collate_fn=_as_is))


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
                        balance_buffer=0, mask_size=opts.mask_size, sam_size=opts.sam_size)
    for s in slot_samples(urls, fixed, 0, 0):
        out.append(s)
        if len(out) >= limit:
            break
    return out
