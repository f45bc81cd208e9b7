"""Benchmark the training loop against the bare model's forward+backward on the same batches.

    .venv/bin/python bench/train.py                    # tiny model, CPU
    .venv/bin/python bench/train.py --steps 12 --grad-accum 2 --workers 0 1

Three rates on the same micro-batches (epoch 0 of the same shards, same seed, batch size 1):

* **loader**: ``ShardBatches`` alone (tar read, decode, tokenise, SAM preprocessing, targets);
* **bare**: the batches materialised in memory first, then ``compute_loss`` + backward and an
  AdamW step every ``grad_accum`` micro-batches (the least any training loop must do);
* **loop**: ``run_training`` itself (data loading, accumulation, NaN checks, clipping, schedule,
  metrics.jsonl, TensorBoard, progress), timed between the ends of its 1st and its last-but-one
  optimizer step (so model building, the final validation and the final checkpoints are left out).

Target: loop time / bare time <= 1.2; the loader must outpace the step rate.
Inputs: scikit-image photos (long side ``--size``) forged by the synthesis engine, built into
shards with tiny Qwen frames (56x56 .. 112x112 pixels) and the json template.
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


def make_shards(root: Path, size: int, count: int) -> Path:
    from shards import make_inputs  # bench/shards.py

    from forgery_synth.dataset.shard_options import ShardOptions
    from forgery_synth.dataset.shards import build_shards

    samples, photos = make_inputs(root, size, count)
    build_shards(ShardOptions(out=root / "shards", samples=[samples], real=[photos], templates={"json": 1.0},
                              splits=(1.0, 0.0, 0.0), min_pixels=56 * 56, max_pixels=112 * 112))
    return root / "shards"


def bench_loader(urls: list[str], processor, opts, n: int, workers: int) -> float:
    from trainer.training.data import ShardBatches, make_loader

    from dataclasses import replace

    ds = ShardBatches(urls, processor, replace(opts, workers=workers))  # the deal follows the workers
    loader = iter(make_loader(ds, workers))
    next(loader)  # worker start-up left out
    t = time.perf_counter()
    got = sum(1 for _, _ in zip(range(n), loader))
    return got / (time.perf_counter() - t)


def bench_bare(urls: list[str], processor, opts, first: int, n: int, accum: int, seed: int) -> float:
    from trainer.model.build_model import build_forensics_model
    from trainer.training.config import LossWeights
    from trainer.training.data import ShardBatches
    from trainer.training.loop import compute_loss
    from trainer.training.losses import EmbeddingQueue
    from trainer.training.stages import setup_stage

    model, _ = build_forensics_model("tiny", "tiny", seed=seed)
    setup_stage(model, 1)
    model.train()
    ds = ShardBatches(urls, processor, opts)
    batches = [b for i, b in zip(range(first + n), (b for block in ds for b in block)) if i >= first]
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    queue = EmbeddingQueue()
    t = time.perf_counter()
    for i, b in enumerate(batches):
        (compute_loss(model, b, LossWeights(), queue).total / accum).backward()
        if (i + 1) % accum == 0:
            opt.step()
            opt.zero_grad(set_to_none=True)
    return len(batches) / (time.perf_counter() - t)


def bench_loop(data: Path, out: Path, steps: int, accum: int, workers: int, seed: int) -> float:
    from trainer.training.config import load_config
    from trainer.training.loop import run_training

    stamps: dict[int, float] = {}
    cfg = load_config(None, dict(stage=1, data=str(data), out=str(out), base_model="tiny", sam="tiny",
                                 max_steps=steps, grad_accum=accum,
                                 num_workers=workers, seed=seed, val_samples=1, val_mode="teacher",
                                 templates=["json"], shuffle_buffer=8, progress=False))
    run_training(cfg, on_step=lambda s: stamps.__setitem__(s, time.perf_counter()), log=lambda s: None)
    return (steps - 2) * accum / (stamps[steps - 1] - stamps[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=10, help="optimizer steps of the timed loop (>= 4)")
    ap.add_argument("--grad-accum", type=int, default=2)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--size", type=int, default=256, help="long side of the source photos")
    ap.add_argument("--count", type=int, default=4, help="forgeries per photo")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args()
    from trainer.model.build_model import build_forensics_model
    from trainer.training.data import DataOptions, count_epoch, shard_urls

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = make_shards(root, args.size, args.count)
        urls = shard_urls(data, "train")
        _, processor = build_forensics_model("tiny", "tiny", seed=args.seed)
        opts = DataOptions(seed=args.seed, batch_size=1, templates=("json",), shuffle_buffer=8, mask_size=(128, 128))
        counts = count_epoch(urls, opts)
        need = args.steps * args.grad_accum
        if counts["micro_batches"] < need:
            raise SystemExit(f"only {counts['micro_batches']} balanced micro-batches; raise --count or lower --steps")
        n_timed = (args.steps - 2) * args.grad_accum
        results: dict[str, float] = {}
        for w in args.workers:
            results[f"loader_w{w}"] = bench_loader(urls, processor, opts, n_timed, w)
        results["bare"] = bench_bare(urls, processor, opts, args.grad_accum, n_timed, args.grad_accum, args.seed)
        for w in args.workers:
            results[f"loop_w{w}"] = bench_loop(data, root / f"run_w{w}", args.steps, args.grad_accum, w, args.seed)
    print(f"{counts['micro_batches']} balanced samples per epoch; timed {n_timed} micro-batches, "
          f"grad_accum {args.grad_accum}, torch threads {torch.get_num_threads()}")
    print(f"{'what':<12} {'samples/s':>10} {'time vs bare':>13}")
    for k, v in results.items():
        ratio = results["bare"] / v if not k.startswith("loader") else float("nan")
        print(f"{k:<12} {v:>10.2f} {ratio:>13.2f}" if k.startswith("loop") else f"{k:<12} {v:>10.2f} {'':>13}")
    for w in args.workers:
        print(f"loader/step rate, {w} worker(s): {results[f'loader_w{w}'] / results[f'loop_w{w}']:.1f}x")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
