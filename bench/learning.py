"""Does the model learn from the image? Held-out photos, a CPU budget, and a classical baseline beside it.

Data: the 22 photos bundled with scikit-image, scikit-learn and matplotlib, split BY PHOTO (every third
photo, by name, is a test photo: none of its pixels is seen in training). Each photo is scaled so its
short side is 504 pixels and cut into 168x168 tiles; the tiles are the "photos" of the run. Forgeries:
`synth --method mixed` over noise, blur, resample, jpeg, copy-move and splice, one per tile, no post
chain; authentic samples: the tiles themselves. Shards: json template, PNG, a 168x168 Qwen frame equal
to the tile (no resizing, so the local traces survive), label-balanced.

Each configuration trains stage 1 (tiny Qwen2.5-VL + tiny SAM, random weights: nothing pretrained)
for --steps optimizer steps with the CLI's defaults (tokens first, --head-lr 1e-3, Dice weight 1) and
one option changed, then `forgery eval`'s own code scores its RUN/best on the held-out test shards
(answers generated, heads read), at 0.5 and at the thresholds calibrated on the val split. The
classical baselines (error-level analysis and the noise-residual map, thresholds fitted on the training shards: `trainer.evaluation.classical`) are
scored by the same code on the same images. Printed and written to OUT/learning.json and
OUT/learning.md: image AUC with its bootstrap interval, balanced accuracy, the collapse check, pixel
AUC, pixel F1 (at 0.5 and calibrated) over all forged images and per method, train seconds. Block
masking grows to 0.3. OUT/learning.partial.json keeps the finished configurations of a stopped run.

    .venv/bin/python bench/learning.py --out out/bench-learning --steps 120  # 11 configurations: over an hour
    .venv/bin/python bench/learning.py --configs expert-classical --steps 40   # one configuration, quicker
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TILE = 168
SHORT_SIDE = 3 * TILE
METHODS = ("noise", "blur", "resample", "jpeg", "copy-move", "splice")
TRACES = ("noise", "blur", "resample", "jpeg")

CONFIGS: dict[str, dict] = {
    "notes-layout": {"cls_position": "after-verdict", "mask_position": "after-region"},
    "default": {},
    "single-lr": {"head_lr": 1e-4},
    "no-text-loss": {"loss": {"text": 0.0}},
    "llm-free": {"language_model": "none"},
    "vision-lora": {"train_vision": "lora"},
    "vision-full": {"train_vision": "full"},
    "sam-lora": {"train_sam_encoder": "lora"},
    "expert-classical": {"expert": "classical"},
    "expert-forensic": {"expert": "forensic"},
    "expert-classical+vision-full": {"expert": "classical", "train_vision": "full"},
    "expert-classical+block": {"expert": "classical", "block_mask": 0.3},
}
"""One factor at a time from the CLI's defaults (tokens first in the answer, --head-lr 1e-3, --lr for
LoRA): the notes' token layout, one learning rate for all (the old default), the text loss off, no
language model (the LLM-free control), the vision tower or SAM's image encoder trained, an expert view,
block masking (a share growing to 0.3)."""


def _tiles(out: Path) -> tuple[Path, Path]:
    """Cut every bundled photo into TILE x TILE tiles under OUT/tiles-{train,test} (split by photo)."""
    from PIL import Image

    from forgery_synth.synthesis.sample_photos import audit_photo_paths

    dirs = {"train": out / "tiles-train", "test": out / "tiles-test"}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    for i, src in enumerate(sorted(audit_photo_paths(), key=lambda p: p.name)):
        split = "test" if i % 3 == 0 else "train"
        with Image.open(src) as im:
            im = im.convert("RGB")
            scale = SHORT_SIDE / min(im.size)
            im = im.resize((round(im.width * scale), round(im.height * scale)), Image.Resampling.LANCZOS)
        for r in range(im.height // TILE):
            for c in range(min(4, im.width // TILE)):
                tile = im.crop((c * TILE, r * TILE, (c + 1) * TILE, (r + 1) * TILE))
                tile.save(dirs[split] / f"{src.stem}-r{r}c{c}.png")
    return dirs["train"], dirs["test"]


def _shards(out: Path, tiles: Path, name: str, splits: tuple[float, float, float], seed: int) -> Path:
    from forgery_synth.dataset.shard_options import ShardOptions
    from forgery_synth.dataset.shards import build_shards
    from forgery_synth.synthesis.engine import synthesize
    from forgery_synth.synthesis.options import SynthOptions

    samples = out / f"samples-{name}"
    synthesize([tiles], samples, SynthOptions(method="mixed", weights={m: 1.0 for m in METHODS}, count=1,
                                              seed=seed, area=(0.05, 0.25)), workers=2)
    shards = out / f"shards-{name}"
    build_shards(ShardOptions(out=shards, samples=[samples], real=[tiles], templates={"json": 1.0}, splits=splits,
                              min_pixels=TILE * TILE, max_pixels=TILE * TILE, shard_size=256, seed=seed,
                              workers=2))
    return shards


def _figures(metrics: dict) -> dict:
    im, px = metrics["image"], metrics["pixel"]
    ci = metrics.get("ci95", {})
    per = {m: (metrics.get("per_method", {}).get(m, {}).get("pixel", {}) or {}).get("f1") for m in METHODS}
    return {"image_auc": im.get("auc"), "image_auc_ci": ci.get("image_auc"),
            "balanced_accuracy": im.get("balanced_accuracy"), "collapse": im.get("collapse"),
            "pixel_f1": px.get("f1"), "pixel_f1_ci": ci.get("pixel_f1"), "pixel_iou": px.get("iou"), "pixel_auc": px.get("auc"),
            "pixel_f1_per_method": per, "n_fake": im.get("n_fake"), "n_real": im.get("n_real"),
            "calibrated_balanced_accuracy": (im.get("calibrated") or {}).get("balanced_accuracy"),
            "calibrated_pixel_f1": (px.get("calibrated") or {}).get("f1"),
            "thresholds": metrics.get("thresholds")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("out/bench-learning"))
    ap.add_argument("--steps", type=int, default=250, help="optimizer steps per configuration (2 micro-batches each)")
    ap.add_argument("--configs", default=",".join(CONFIGS), help=f"comma list of {', '.join(CONFIGS)}")
    ap.add_argument("--head-lr", type=float, default=None, help="override --head-lr (default: train's)")
    ap.add_argument("--dice", type=float, default=1.0, help="weight of the Dice loss (the other weights stay 1)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-new-tokens", type=int, default=12)
    args = ap.parse_args()

    from transformers.utils import logging as hf_logging

    from trainer.evaluation.classical import fit_classical
    from trainer.evaluation.evaluate import EvalOptions, run_evaluation
    from trainer.evaluation.predict import PredictOptions, load_predictor
    from trainer.training.config import load_config
    from trainer.training.learning import checkpoint_eval_options
    from trainer.training.loop import run_training

    hf_logging.disable_progress_bar()
    names = [n for n in args.configs.split(",") if n]
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        sys.exit(f"unknown configuration(s) {unknown}; choose from {', '.join(CONFIGS)}")
    out = args.out
    if out.exists():
        shutil.rmtree(out)
    t0 = time.perf_counter()
    train_tiles, test_tiles = _tiles(out)
    train = _shards(out, train_tiles, "train", (0.85, 0.15, 0.0), args.seed)
    test = _shards(out, test_tiles, "test", (0.0, 0.0, 1.0), args.seed)
    counts = {n: json.loads((d / "manifest.json").read_text())["splits"] for n, d in (("train", train), ("test", test))}
    data_s = time.perf_counter() - t0
    print(f"data: {len(list(train_tiles.iterdir()))} train tiles, {len(list(test_tiles.iterdir()))} test tiles; "
          + "; ".join(f"{n} shards " + ", ".join(f"{k} {v['count']}" for k, v in c.items() if v["count"])
                      for n, c in counts.items()) + f" ({data_s:.0f} s)", flush=True)
    ev = EvalOptions(split="test", batch_size=8, n_examples=0, save_masks=False)
    results: dict[str, dict] = {}
    for detector in ("ela", "noise"):
        t = time.perf_counter()
        baseline = fit_classical([train], detector, split="train")
        res = run_evaluation([test], baseline, out / "eval" / f"classical-{detector}", ev)
        results[f"classical {detector}"] = {**_figures(res.metrics), "seconds": round(time.perf_counter() - t, 1),
                                            "thresholds": [baseline.pixel_threshold, baseline.image_threshold]}
        print(f"classical {detector}: {json.dumps(results[f'classical {detector}'])}", flush=True)
    for name in names:
        t = time.perf_counter()
        run = out / "runs" / name
        overrides = {"stage": 1, "data": str(train), "out": str(run), "base_model": "tiny", "sam": "tiny",
                     "max_steps": args.steps, "grad_accum": 2, "eval_every": args.steps,
                     "val_samples": 24, "val_mode": "teacher", "mask_size": TILE, "progress": False,
                     "seed": args.seed, **({"head_lr": args.head_lr} if args.head_lr else {}), **CONFIGS[name],
                     "loss": {"mask_dice": args.dice, **CONFIGS[name].get("loss", {})}}
        run_training(load_config(None, overrides), log=lambda line: None)
        train_s = time.perf_counter() - t
        predictor = load_predictor(run / "best", PredictOptions(device="cpu", max_new_tokens=args.max_new_tokens))
        res = run_evaluation([test], predictor, out / "eval" / name, replace(ev, **checkpoint_eval_options(run / "best")))
        results[name] = {**_figures(res.metrics), "train_seconds": round(train_s, 1),
                         "seconds": round(time.perf_counter() - t, 1), "options": CONFIGS[name]}
        print(f"{name}: {json.dumps(results[name])}", flush=True)
        (out / "learning.partial.json").write_text(json.dumps(results, indent=2) + "\n")  # survives an interrupted run
    total = time.perf_counter() - t0
    (out / "learning.json").write_text(json.dumps({"steps": args.steps, "seconds": round(total, 1), "counts": counts,
                                                   "results": results}, indent=2) + "\n")
    table = _table(results)
    (out / "learning.md").write_text(table + "\n")
    print("\n" + table + f"\n\ntotal {total:.0f} s ({args.steps} steps per configuration)")


def _table(results: dict[str, dict]) -> str:
    def f(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.2f}"

    def ci(v: list | None) -> str:
        return f" ({v[0]:.2f}-{v[1]:.2f})" if v else ""

    head = ("| configuration | image AUC (95% CI) | bal. acc. @0.5 | bal. acc. @cal | pixel AUC | pixel F1 @0.5 (95% CI) | "
            "pixel F1 @cal | " + " | ".join(f"F1 {m}" for m in METHODS) + " | collapsed | train s |")
    rows = [head, "|" + "---|" * (9 + len(METHODS))]
    for name, r in results.items():
        per = " | ".join(f(r["pixel_f1_per_method"].get(m)) for m in METHODS)
        rows.append(f"| {name} | {f(r['image_auc'])}{ci(r['image_auc_ci'])} | {f(r['balanced_accuracy'])} | "
                    f"{f(r.get('calibrated_balanced_accuracy'))} | {f(r['pixel_auc'])} | {f(r['pixel_f1'])}{ci(r['pixel_f1_ci'])} | "
                    f"{f(r.get('calibrated_pixel_f1'))} | {per} | {'yes' if r['collapse'] else 'no'} | "
                    f"{r.get('train_seconds', '—')} |")
    return "\n".join(rows)


if __name__ == "__main__":
    main()
