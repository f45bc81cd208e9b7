"""`forgery demo`: the whole pipeline on real photos that ship with scikit-image, on a CPU.

    photos ─► synth (every method, inpaint with the tiny pipeline; authentic) ─► samples
    samples ─► build-shards ─► train stage 1 ─► 2 ─► 3 (tiny Qwen2.5-VL + tiny SAM) ─► eval (test split)
                                                                                    └► report.html, contact sheet
    --quick also: ablate (a 2x2 grid, one seed: QUICK_GRID) ─► table.md, report.html

Nothing is downloaded and no pretrained weight is used: the tiny models are random, so the
numbers show that the pipeline runs end to end, not what a trained 3B model reaches. Each step
is a library call the CLI also exposes; the demo just chains them with small settings.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

POST = "jpeg:75-95"
"""Every demo sample, real or fake, ends as a JPEG of a quality from this range."""
SYNTH_METHODS = ("copy-move", "splice", "erase", "inpaint", "jpeg", "resample", "contrast", "noise", "blur")


@dataclass(frozen=True)
class DemoPlan:
    """How big each step is. `full` takes 4 to 7 minutes on a 2-core box (bench/README.md, Demo);
    `quick` is for CI."""

    photos: int = 10
    count: int = 1
    photo_side: int = 512
    frame_pixels: int = 112 * 112
    stage_steps: tuple[int, int, int] = (200, 80, 80)
    grad_accum: int = 2
    val_samples: int = 12
    max_new_tokens: int = 48
    estimate_minutes: float = 6.0
    expert: str = "forensic"
    """The expert view of the model: the best configuration of bench/learning.py (bench/README.md, Learning)."""
    ablation: bool = False
    """Run `forgery ablate` on QUICK_GRID (docs/ablation/quick-grid.yaml holds the same grid)."""
    splits: tuple[float, float, float] = (0.5, 0.2, 0.3)
    """Train/val/test shares of the photos: 10 photos give 5/2/3, so the test split holds 3 photos."""


QUICK_GRID = {
    "base": {"base_model": "tiny", "sam": "tiny", "max_steps": 2, "grad_accum": 2, "lr": 0.001, "val_samples": 2,
             "val_mode": "teacher"},
    "axes": {"stages": [[1], [1, 2]], "lora_alpha": [32, 8]},
    "seeds": [0],
    "eval": {"split": "test", "max_new_tokens": 8},
}
"""The demo's ablation: 4 cells sharing one stage-1 run (stage 1 trains no LoRA) and two stage-2 runs."""


PLANS = {
    "full": DemoPlan(),
    "quick": DemoPlan(photos=6, photo_side=256, frame_pixels=56 * 56, stage_steps=(6, 4, 4), grad_accum=2,
                      val_samples=4, max_new_tokens=16, estimate_minutes=2.0, ablation=True),
}


@dataclass
class DemoResult:
    """Where everything went, and the headline numbers."""

    out: Path
    report: Path
    sheet: Path
    checkpoint: Path
    samples: int
    shards: dict[str, int]
    metrics: dict
    seconds: dict[str, float] = field(default_factory=dict)
    baselines: dict[str, dict] = field(default_factory=dict)
    """Per classical detector (ela, noise), fitted on the train split: the test split's metrics.json."""
    val_collapse: str | None = None
    """What the last validation said, in words, when the model's answers collapsed to one class."""
    ablation: Path | None = None
    """The ablation's table.md (quick plan only)."""


def _prepare_photos(dest: Path, plan: DemoPlan) -> list[Path]:
    """The bundled photos, scaled so their long side is at most `plan.photo_side`, under their own names."""
    from PIL import Image

    from forgery_synth.synthesis.sample_photos import sample_photo_paths

    dest.mkdir(parents=True, exist_ok=True)
    paths = []
    for src in sample_photo_paths()[: plan.photos]:
        target = dest / src.name  # the names `forgery sample-photos` gives them; JPEGs stay JPEG (quality 95)
        if not target.exists():
            with Image.open(src) as im:
                im = im.convert("RGB")
                scale = min(1.0, plan.photo_side / max(im.size))
                im = im.resize((round(im.width * scale), round(im.height * scale)), Image.Resampling.LANCZOS)
                im.save(target, **({"quality": 95} if src.suffix.lower() in (".jpg", ".jpeg") else {}))
        paths.append(target)
    return paths


def run_demo(out: str | Path, *, quick: bool = False, log: Callable[[str], None] = print) -> DemoResult:
    """Run every step into `out` (created); returns the paths and headline metrics."""
    from trainer.model.quiet import quiet_libraries

    # "Loading weights" bars for every tiny model and library notices would drown the summary; the
    # trainer's own warnings (e.g. a collapse to one class) still show.
    with quiet_libraries():
        return _run_demo(Path(out), PLANS["quick" if quick else "full"], log)


def _run_demo(out: Path, plan: DemoPlan, log: Callable[[str], None]) -> DemoResult:
    from forgery_synth.dataset.contact_sheet import make_contact_sheet
    from forgery_synth.dataset.shard_options import ShardOptions
    from forgery_synth.dataset.shards import build_shards
    from forgery_synth.methods.inpaint_config import InpaintConfig
    from forgery_synth.synthesis.engine import synthesize
    from forgery_synth.synthesis.options import SynthOptions
    from trainer.evaluation.evaluate import EvalOptions, run_evaluation
    from trainer.evaluation.predict import PredictOptions, load_predictor
    from trainer.training.config import load_config
    from trainer.training.learning import checkpoint_eval_options
    from trainer.training.loop import run_training

    seconds: dict[str, float] = {}
    log(f"forgery demo: about {plan.estimate_minutes:g} minutes on a quiet 2-core machine (longer under load); "
        f"everything goes to {out}")

    def step(name: str) -> Callable[[], None]:
        start = time.perf_counter()
        log(f"\n== {name}")

        def done() -> None:
            seconds[name] = round(time.perf_counter() - start, 1)
            log(f"   ({seconds[name]:.0f} s)")

        return done

    done = step("photos: the real photos bundled with scikit-image")
    photos = _prepare_photos(out / "photos", plan)
    log(f"   {len(photos)} photos in {out / 'photos'}")
    done()

    done = step("synth: forgeries by every method (inpaint: tiny random pipeline, not photographic) and "
                "authentic samples, all through the same JPEG post chain so compression never predicts the label")
    samples = out / "samples"
    written = 0
    for method in (*SYNTH_METHODS, "authentic"):
        count = plan.count * (3 if method == "authentic" else 1)
        options = SynthOptions(method=method, count=count, seed=0, area=(0.03, 0.15), post=POST)
        if method == "inpaint":
            options.inpaint = InpaintConfig(model="tiny", device="cpu", steps=4, batch_size=1)
        report = synthesize(photos, samples, options)
        written += report.produced
        log(f"   {method:<9} {report.produced} sample(s), {len(report.rejects)} reject(s)")
    done()

    done = step("build-shards: conversations (json, explain, conclusion, pair; zh and en), split by source photo")
    shards = out / "shards"
    build_shards(ShardOptions(
        out=shards, samples=[samples], splits=plan.splits, real_ratio=0.5,
        min_pixels=28 * 28, max_pixels=plan.frame_pixels, shard_size=64, seed=0, resume=shards.exists(),
    ))
    manifest = json.loads((shards / "manifest.json").read_text())
    split_counts = {split: entry["count"] for split, entry in manifest["splits"].items()}
    log(f"   {split_counts} samples; manifest {shards / 'manifest.json'}")
    done()

    done = step("audit: can the label be told from trivial features or one-label sentences? (forgery audit)")
    from forgery_synth.dataset.audit import audit

    audit_report = audit(shards, out / "audit")
    aucs = {k: v for k, v in audit_report.summary["feature_auc"].items() if v is not None}
    worst = max(aucs, key=aucs.get) if aucs else None
    if worst:
        log(f"   highest trivial-feature AUC: {worst} {aucs[worst]:.3f} (threshold {audit_report.summary['threshold']:g}; "
            f"{audit_report.summary['groups']} photos, so the figures are noisy)")
    for failure in audit_report.failures:
        log(f"   shortcut: {failure}")
    log(f"   {'no shortcut found' if audit_report.passed else 'see'} {out / 'audit' / 'audit.html'}")
    done()

    checkpoint = None
    for stage, steps in zip((1, 2, 3), plan.stage_steps):
        done = step(f"train stage {stage}: tiny Qwen2.5-VL + tiny SAM, {steps} optimizer steps")
        run = out / "runs" / f"stage{stage}"
        overrides = {
            "stage": stage, "data": str(shards), "out": str(run), "base_model": "tiny", "sam": "tiny",
            "init_from": str(checkpoint) if checkpoint else None, "max_steps": steps, "grad_accum": plan.grad_accum,
            "lr": 1e-3, "eval_every": steps, "save_every": 0, "val_samples": plan.val_samples,
            "val_mode": "teacher", "progress": False, "seed": 0, "expert": plan.expert if stage == 1 else None,
        }
        result = run_training(load_config(None, overrides), log=lambda line: log("   " + line))
        checkpoint = run / "best" if (run / "best").is_dir() else run / "last"
        log(f"   {result.steps} steps; checkpoint {checkpoint}")
        done()

    done = step("baseline: the classical detectors (ELA, noise residual), thresholds fitted on the train split, "
                "scored on the same test images by the same code")
    from trainer.evaluation.classical import fit_classical

    baselines = {}
    for detector in ("ela", "noise"):
        try:
            fitted = fit_classical([shards], detector, split="train")
        except ValueError as exc:
            log(f"   no {detector} baseline: {exc}")
            continue
        res = run_evaluation([shards], fitted, out / "eval-classical" / detector,
                             EvalOptions(split="test", batch_size=8, n_examples=0, save_masks=False))
        baselines[detector] = res.metrics
    done()

    done = step("eval: the stage-3 model on the test split (generate the answer, then read the heads)")
    predictor = load_predictor(checkpoint, PredictOptions(device="cpu", max_new_tokens=plan.max_new_tokens))
    evaluation = run_evaluation([shards], predictor, out / "eval",
                                EvalOptions(split="test", batch_size=1, n_examples=4, **checkpoint_eval_options(checkpoint)),
                                progress=lambda line: log("   " + line),
                                info={"checkpoint": str(checkpoint), "demo": "tiny random models"},
                                baselines=baselines)
    val_collapse = _val_collapse(out / "runs" / "stage3" / "val.jsonl")
    done()

    done = step("inspect: a contact sheet of the shards")
    sheet = out / "sheet.png"
    make_contact_sheet([shards], sheet, n=20, cover=True)  # every method, template and language
    done()

    ablation = None
    if plan.ablation:
        done = step("ablate: a 2x2 grid (stages [1] / [1, 2] x lora_alpha 32 / 8), one seed, each cell evaluated on "
                    "the test split (forgery ablate)")
        from trainer.ablation.grid import load_grid
        from trainer.ablation.run import execute
        from trainer.ablation.run import plan as plan_tasks
        from trainer.ablation.table import write_table

        grid = load_grid(QUICK_GRID, shards, out / "ablation")
        outcome = execute(plan_tasks(grid, shards, out / "ablation"), out / "ablation", log=lambda line: None)
        for name, why in outcome.failed.items():
            log(f"   failed: {name}: {why}")
        if not outcome.failed:
            ablation = write_table(grid, out / "ablation", resamples=200)["md"]
            log(f"   {len(outcome.trained)} training run(s) for {len(grid.cells)} cells; table {ablation}")
        done()

    m = evaluation.metrics
    return DemoResult(out=out, report=out / "eval" / "report.html", sheet=sheet, checkpoint=checkpoint,
                      samples=written, shards=split_counts, metrics=m, seconds=seconds, baselines=baselines,
                      val_collapse=val_collapse, ablation=ablation)


def _val_collapse(val_log: Path) -> str | None:
    """The words for a collapse in the last validation line of a run (None when it did not collapse)."""
    if not val_log.is_file():
        return None
    lines = [ln for ln in val_log.read_text().splitlines() if ln.strip()]
    last = json.loads(lines[-1]) if lines else {}
    if not last.get("collapsed"):
        return None
    return (f"at step {last['step']} validation called every image {last['collapsed_to']}: the model collapsed "
            "to one class")
