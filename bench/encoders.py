"""Cost of the encoder options: seconds per optimizer step and trainable parameters, tiny model, stage 1.

    .venv/bin/python bench/encoders.py                     # every configuration, 24 steps each
    .venv/bin/python bench/encoders.py --steps 12 --configs none,vision-lora
    .venv/bin/python bench/encoders.py --bare 20           # interleaved forward+backward only (busy machines)

Every configuration trains ``run_training`` on the same shards (the json template, tiny Qwen frames
56x56 .. 112x112, SAM "tiny" 128x128), same seed, grad_accum 2, batch size 1; the time is taken
between the ends of the 1st and the last-but-one optimizer step (model building, the final
validation and the checkpoints left out). The floor is the "none" configuration of the same run:
the ratio column is its step time over the floor's. Trainable parameters come from the run's
``trainable.json`` (total and per group: ``vision``, ``sam_encoder``, ...).
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

CONFIGS: dict[str, dict] = {
    "none": {},
    "vision-lora": {"train_vision": "lora"},
    "vision-full": {"train_vision": "full"},
    "sam-lora": {"train_sam_encoder": "lora"},
    "vision-lora+sam-lora": {"train_vision": "lora", "train_sam_encoder": "lora"},
    "llm-free": {"language_model": "none"},
}
"""The encoder options, one at a time, and the LLM-free control (``none`` is the floor)."""


def bench_config(data: Path, out: Path, steps: int, accum: int, seed: int, options: dict) -> dict:
    from trainer.training.config import load_config
    from trainer.training.loop import run_training

    stamps: dict[int, float] = {}
    cfg = load_config(None, dict(stage=1, data=str(data), out=str(out), base_model="tiny", sam="tiny",
                                 max_steps=steps, grad_accum=accum, seed=seed, val_samples=1, val_mode="teacher",
                                 templates=["json"], shuffle_buffer=8, progress=False, **options))
    run_training(cfg, on_step=lambda s: stamps.__setitem__(s, time.perf_counter()), log=lambda s: None)
    report = json.loads((out / "trainable.json").read_text())
    return {"s_per_step": (stamps[steps - 1] - stamps[1]) / (steps - 2), "trainable": report["trainable_total"],
            "groups": report["groups"]}


def bench_bare(data: Path, names: list[str], rounds: int, seed: int) -> dict[str, dict]:
    """Interleaved forward + backward + AdamW step of every configuration's model on the same micro-batches,
    ``rounds`` times round-robin, so a busy machine slows them alike; median seconds per micro-batch."""
    import statistics

    from trainer.model.build_model import build_forensics_model
    from trainer.training.config import LossWeights
    from trainer.training.data import DataOptions, ShardBatches, shard_urls
    from trainer.training.loop import compute_loss
    from trainer.training.losses import EmbeddingQueue
    from trainer.training.stages import setup_stage, trainable_report

    models, opts = {}, {}
    for name in names:
        model, processor = build_forensics_model("tiny", "tiny", seed=seed, **CONFIGS[name])
        setup_stage(model, 1, seed=seed)
        model.train()
        models[name] = model
        opts[name] = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    dopts = DataOptions(seed=seed, batch_size=1, templates=("json",), shuffle_buffer=8, mask_size=(128, 128), sam_size=128)
    ds = ShardBatches(shard_urls(data, "train"), processor, dopts)
    batches = [b for _, b in zip(range(4), (b for block in ds for b in block))]
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds + 1):
        for name in names:
            b = batches[r % len(batches)]
            t = time.perf_counter()
            compute_loss(models[name], b, LossWeights(), EmbeddingQueue()).total.backward()
            opts[name].step()
            opts[name].zero_grad(set_to_none=True)
            if r:  # round 0 warms up
                times[name].append(time.perf_counter() - t)
    return {n: {"s_per_micro_batch": statistics.median(times[n]),
                "trainable": trainable_report(models[n], 1)["trainable_total"],
                "groups": trainable_report(models[n], 1)["groups"]} for n in names}


def main() -> None:
    from train import make_shards  # bench/train.py

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=24, help="optimizer steps per configuration (>= 4)")
    ap.add_argument("--grad-accum", type=int, default=2)
    ap.add_argument("--configs", default=",".join(CONFIGS), help=f"comma list of {', '.join(CONFIGS)}")
    ap.add_argument("--size", type=int, default=256, help="long side of the source photos")
    ap.add_argument("--count", type=int, default=4, help="forgeries per photo")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument("--bare", type=int, default=0, metavar="ROUNDS",
                    help="instead of training runs: ROUNDS interleaved forward+backward steps of every configuration")
    args = ap.parse_args()
    names = ["none"] + [n for n in args.configs.split(",") if n and n != "none"]
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        raise SystemExit(f"unknown configuration(s) {unknown}; choose from {', '.join(CONFIGS)}")
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = make_shards(root, args.size, args.count)
        if args.bare:
            bare = bench_bare(data, names, args.bare, args.seed)
            floor = bare["none"]["s_per_micro_batch"]
            print(f"{'configuration':<22} {'s/micro-batch':>13} {'vs none':>8} {'trainable':>10}")
            for name, r in bare.items():
                print(f"{name:<22} {r['s_per_micro_batch']:>13.3f} {r['s_per_micro_batch'] / floor:>8.2f} {r['trainable']:>10,}")
            if args.json:
                args.json.write_text(json.dumps(bare, indent=2))
            return
        for name in names:
            results[name] = bench_config(data, root / name, args.steps, args.grad_accum, args.seed, CONFIGS[name])
            print(f"{name}: {json.dumps(results[name])}", flush=True)
    floor = results["none"]["s_per_step"]
    print(f"\n{args.steps} steps, grad_accum {args.grad_accum}, torch threads {torch.get_num_threads()}")
    print(f"{'configuration':<22} {'s/step':>7} {'vs none':>8} {'trainable':>10}  groups that differ from none")
    for name, r in results.items():
        extra = {g: n for g, n in r["groups"].items() if results["none"]["groups"].get(g) != n}
        print(f"{name:<22} {r['s_per_step']:>7.3f} {r['s_per_step'] / floor:>8.2f} {r['trainable']:>10,}  {extra}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
