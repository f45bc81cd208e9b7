"""Benchmark the stage-1 step with SAM embeddings read from `forgery cache-embeddings` files against
the same step encoding every image (the floor it must beat), same batches, same model.

    .venv/bin/python bench/sam_cache.py                       # tiny SAM, then vit_b shapes (random weights)
    .venv/bin/python bench/sam_cache.py --sams tiny --steps 16

Per SAM: tiny shards (2 samples a shard, tiny Qwen frames 56x56 .. 112x112, json template) are built,
the shards that hold the first ``--steps`` micro-batches (batch size 1) are cached with
:func:`trainer.training.sam_cache.cache_shard`, and the micro-batches are materialised twice by
``ShardBatches`` (with and without ``DataOptions.sam_cache``). Then a stage-1 step (``compute_loss`` +
backward + AdamW step, tiny Qwen backbone) is timed on each set, interleaved, medians; the in-memory LRU cache is off, so
"encode" pays the encoder every micro-batch as in a first epoch (and in every epoch once the
images outnumber the LRU). Prints ms per step, the ratio encode / cached, and the one-off cost of
writing the cache per sample.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def make_shards(root: Path, size: int) -> Path:
    from shards import make_inputs  # bench/shards.py

    from forgery_synth.dataset.shard_options import ShardOptions
    from forgery_synth.dataset.shards import build_shards

    samples, photos = make_inputs(root, size, 1)
    build_shards(ShardOptions(out=root / "shards", samples=[samples], real=[photos], templates={"json": 1.0},
                              splits=(1.0, 0.0, 0.0), min_pixels=56 * 56, max_pixels=112 * 112, shard_size=2))
    return root / "shards"


def time_steps(model, plain: list[dict], cached: list[dict]) -> tuple[float, float]:
    """Median seconds of a stage-1 micro-batch step (forward, backward, AdamW) on each set, the steps
    interleaved (plain i, cached i, ...) so a load change on a shared box hits both alike; the first
    pair (warm-up) is left out."""
    import statistics

    from trainer.training.config import LossWeights
    from trainer.training.loop import compute_loss
    from trainer.training.losses import EmbeddingQueue

    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    queue = EmbeddingQueue()
    times: tuple[list[float], list[float]] = ([], [])
    for pair in zip(plain, cached):
        for k, b in enumerate(pair):
            t = time.perf_counter()
            compute_loss(model, b, LossWeights(), queue).total.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            times[k].append(time.perf_counter() - t)
    return statistics.median(times[0][1:]), statistics.median(times[1][1:])


def bench_sam(data: Path, sam: str, steps: int, seed: int) -> dict:
    from dataclasses import replace

    from trainer.model.build_model import build_forensics_model
    from trainer.model.sam_decoder import encoder_fingerprint
    from trainer.training.data import DataOptions, ShardBatches, rank_chunks, shard_urls
    from trainer.training.sam_cache import cache_shard, find_caches
    from trainer.training.stages import setup_stage

    model, processor = build_forensics_model("tiny", sam, seed=seed)
    setup_stage(model, 1)
    model.train()
    dec = model.mask_decoder
    dec.cache.max_items = 0  # no in-memory LRU: the floor encodes every image
    urls = shard_urls(data, "train")
    opts = DataOptions(seed=seed, batch_size=1, templates=("json",), shuffle_buffer=0, mask_size=(128, 128),
                       sam_size=dec.image_size)
    needed = list(dict.fromkeys(s.url for _, (_, c) in zip(range(steps), rank_chunks(urls, opts, 0)) for s in c))
    t = time.perf_counter()
    fingerprint = encoder_fingerprint(dec.image_encoder)
    t_fp = time.perf_counter() - t
    t = time.perf_counter()
    written = sum(cache_shard(u, dec.image_encoder, dec.spec, fingerprint, batch_size=2).samples for u in needed)
    t_write = time.perf_counter() - t
    found, _ = find_caches(urls, dec.spec, fingerprint)

    def batches(o: DataOptions) -> list[dict]:
        return [b for _, b in zip(range(steps), (b for block in ShardBatches(urls, processor, o) for b in block))]

    plain, cached = batches(opts), batches(replace(opts, sam_cache=found))
    hits = sum(int(b["sam_cached"].sum()) for b in cached if "sam_cached" in b)
    if hits != len(cached):
        raise SystemExit(f"{sam}: only {hits} of {len(cached)} micro-batches hit the cache")
    encode, read = time_steps(model, plain, cached)
    return {"sam": sam, "steps": len(plain), "encode_ms": 1e3 * encode, "cached_ms": 1e3 * read,
            "ratio": encode / read, "write_ms_per_sample": 1e3 * t_write / max(1, written),
            "fingerprint_s": t_fp, "grid": dec.spec.embedding_size}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sams", nargs="+", default=["tiny", "vit_b"], help="SAM specs (random weights) or checkpoints")
    ap.add_argument("--steps", type=int, default=None, help="micro-batches timed per SAM (default: tiny 12, others 3)")
    ap.add_argument("--size", type=int, default=256, help="long side of the source photos")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        data = make_shards(Path(tmp), args.size)
        for sam in args.sams:
            steps = args.steps or (12 if sam == "tiny" else 3)
            results.append(bench_sam(data, sam, steps, args.seed))
    print(f"stage-1 micro-batch step (batch 1, tiny Qwen backbone), torch threads {torch.get_num_threads()}")
    print(f"{'sam':<8} {'grid':>4} {'steps':>5} {'encode ms':>10} {'cached ms':>10} {'ratio':>6} "
          f"{'write ms/sample':>16} {'fingerprint s':>14}")
    for r in results:
        print(f"{r['sam']:<8} {r['grid']:>4} {r['steps']:>5} {r['encode_ms']:>10.1f} {r['cached_ms']:>10.1f} "
              f"{r['ratio']:>6.2f} {r['write_ms_per_sample']:>16.1f} {r['fingerprint_s']:>14.2f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
