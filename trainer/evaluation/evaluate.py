"""`forgery eval`: run a predictor over evaluation sources, score it, write the report.

Two kinds of predictor:
    * ``ExternalPredictor``: predictions another detector already made (``--predictions``);
      masks are looked up by image name, no image is run through anything, so no perturbation.
    * a model predictor (``trainer.evaluation.predict.ModelPredictor``, ``--checkpoint``): runs on the
      (possibly perturbed) image pixels.

Outputs in ``out``: ``metrics.json``, ``predictions.jsonl`` (one ``EvalRecord`` per image of the
clean run), ``report.html`` with ``plots/`` and ``examples/``, and with a model predictor
``masks/<id>.png`` (probabilities as 0–255 grey levels, reusable as ``--predictions``).

With a checkpoint, ``metrics.json`` also holds the figures at the thresholds the training run
calibrated on validation (``image.calibrated``, ``pixel.calibrated``; the fixed-threshold figures stay
the comparable ones), the thresholds record (``thresholds``) and the run's losses against their chance
values (``learning``, when the checkpoint has learning.json).

Image score when a prediction carries none: the maximum pixel probability of its mask
(``score_source = "max_pixel"``); the report says so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
from PIL import Image

from trainer.evaluation.answers import parse_answer
from trainer.evaluation.calibration import calibrated_figures, pixel_at
from trainer.evaluation.conventions import TRUFOR_BAND
from trainer.evaluation.examples import ExampleKeeper, _safe_name
from trainer.evaluation.metrics import EvalRecord, summarize
from trainer.evaluation.perturb import (
    UNITS,
    Perturbation,
    apply_perturbation,
    resize_probabilities,
)
from trainer.evaluation.pixel_metrics import MetricOptions, pixel_scores
from trainer.evaluation.predictors import ModelOutput, Predictor
from trainer.evaluation.readers import open_source
from trainer.evaluation.samples import EvalSample, SourceOptions

#: Figures compared across robustness conditions: (section, key).
ROBUST_KEYS: tuple[tuple[str, str], ...] = (
    ("image", "accuracy"), ("image", "balanced_accuracy"), ("image", "f1"), ("image", "auc"),
    ("pixel", "f1"), ("pixel", "iou"), ("pixel", "auc"), ("authentic", "false_alarm_rate"))


@dataclass
class EvalOptions:
    """Options of one evaluation.

    Attributes:
        threshold: decision threshold for scores and pixels (strictly greater is positive).
        split: shard split to read.
        perturbations: robustness conditions evaluated after the clean run.
        batch_size: images per predictor call.
        seed: seed of the noise perturbation.
        limit: evaluate at most this many samples per source (None: all).
        n_examples: best and worst examples shown in the report (each).
        save_masks: write ``masks/<id>.png`` for model predictions.
        border_band: TruFor's ignored band around the mask edge, (inside, outside) pixels.
        calibrated: the checkpoint's thresholds (trainer.model.checkpoint.load_thresholds): the figures
            at them are reported as ``image.calibrated`` and ``pixel.calibrated`` beside the ones at
            ``threshold`` (None: not reported, e.g. for --predictions).
        learning: the checkpoint's training summary (trainer.training.learning), copied to metrics.json.
    """

    threshold: float = 0.5
    split: str | None = "test"
    perturbations: list[Perturbation] = field(default_factory=list)
    batch_size: int = 4
    seed: int = 0
    limit: int | None = None
    n_examples: int = 6
    save_masks: bool = True
    border_band: tuple[int, int] = TRUFOR_BAND
    calibrated: dict[str, Any] | None = None
    learning: dict[str, Any] | None = None


@dataclass
class EvalResult:
    """Outcome of ``run_evaluation``.

    Attributes:
        metrics: the content of metrics.json.
        records: the clean run's records.
        n_scored: records without an error.
        out: the output folder.
    """

    metrics: dict[str, Any]
    records: list[EvalRecord]
    n_scored: int
    out: Path


def _batched(it: Iterable[EvalSample], n: int) -> Iterator[list[EvalSample]]:
    batch: list[EvalSample] = []
    for s in it:
        batch.append(s)
        if len(batch) == n:
            yield batch
            batch = []
    if batch:
        yield batch


PROGRESS_EVERY = 10
"""`progress` hears how many images are scored every this many."""


def evaluate_condition(sources: Sequence[Path], predictor: Predictor, opt: EvalOptions,
                       perturbation: Perturbation | None = None, keeper: ExampleKeeper | None = None,
                       mask_dir: Path | None = None, progress: Callable[[str], None] | None = None) -> list[EvalRecord]:
    """Evaluate every sample of ``sources`` under one condition (clean when ``perturbation`` is None).

    Args:
        sources: evaluation sources (see ``trainer.evaluation.readers.open_source``).
        predictor: the predictor.
        opt: options.
        perturbation: degradation applied to each image before prediction.
        keeper: collects report examples (clean run only).
        mask_dir: where to write predicted masks as PNG (clean run with a model only).
        progress: called with one line per per-file error, a count every `PROGRESS_EVERY` images ("so
            far") and the final count ("in all").

    Returns:
        One record per sample, in source order.
    """
    mopt = MetricOptions(threshold=opt.threshold, border_band=opt.border_band)
    records: list[EvalRecord] = []
    index = 0
    used_names: set[str] = set()
    for src in sources:
        samples = open_source(src, SourceOptions(split=opt.split))
        if opt.limit is not None:
            samples = (s for i, s in enumerate(samples) if i < opt.limit)
        for batch in _batched(samples, max(1, opt.batch_size)):
            good = [s for s in batch if s.error is None and s.image is not None]
            images: list[np.ndarray] = []
            for s in good:
                img = s.image
                assert img is not None
                if perturbation is not None:
                    img = apply_perturbation(img, perturbation, opt.seed, index)
                index += 1
                images.append(img)
            try:
                outs: list[ModelOutput | str] = predictor(good, images) if good else []
            except Exception as e:  # noqa: BLE001 - a failing batch must not end the run
                outs = [f"prediction failed: {type(e).__name__}: {e}"] * len(good)
            by_id = {id(s): o for s, o in zip(good, outs)}
            for s in batch:
                rec = EvalRecord(id=s.id, image=s.ref, label=s.label, score=None, method=s.method, dataset=s.dataset)
                if s.error is not None:
                    rec.error = s.error
                elif isinstance(by_id.get(id(s)), str):
                    rec.error = str(by_id[id(s)])
                else:
                    out = by_id[id(s)]
                    assert isinstance(out, ModelOutput) and s.image is not None
                    _fill(rec, s, out, mopt, keeper, mask_dir, used_names,
                          None if opt.calibrated is None else float(opt.calibrated["pixel"]))
                if rec.error is not None and progress is not None:
                    progress(f"error: {rec.image}: {rec.error}")
                records.append(rec)
                s.image = None
                s.mask = None
            if progress is not None and len(records) % PROGRESS_EVERY < len(batch):
                progress(f"{len(records)} image(s) scored so far")
    if progress is not None:
        progress(f"{len(records)} image(s) scored in all")
    return records


def _fill(rec: EvalRecord, s: EvalSample, out: ModelOutput, mopt: MetricOptions, keeper: ExampleKeeper | None,
          mask_dir: Path | None, used_names: set[str], calibrated_pixel: float | None = None) -> None:
    assert s.image is not None
    h, w = s.image.shape[:2]
    rec.score = None if out.score is None else float(out.score)
    rec.score_source = out.score_source
    rec.extra.update(out.extra)
    pred = out.mask
    if pred is not None:
        if pred.shape != (h, w):
            rec.extra["mask_resized_from"] = [int(pred.shape[1]), int(pred.shape[0])]
            pred = resize_probabilities(pred, h, w)
        if s.mask is not None:
            rec.pixel = pixel_scores(pred, s.mask, mopt)
            if calibrated_pixel is not None:  # the figures at the checkpoint's calibrated pixel threshold
                rec.extra["pixel_calibrated"] = pixel_at(pred, s.mask, calibrated_pixel)
        if mask_dir is not None:
            name = _safe_name(s.id)
            while name in used_names:
                name = name + "_"
            used_names.add(name)
            path = mask_dir / f"{name}.png"
            Image.fromarray(np.rint(np.clip(pred, 0, 1) * 255).astype(np.uint8)).save(path)
            rec.extra["pred_mask"] = str(path)
    if out.text is not None:
        rec.text = out.text
        parsed = parse_answer(out.text)
        rec.json_valid = parsed.json_valid
        rec.text_verdict = parsed.verdict
    if keeper is not None:
        keeper.offer(rec, s.image, s.mask, pred)


def _figures(summary: dict[str, Any]) -> dict[str, float | None]:
    return {f"{sec}.{key}": summary.get(sec, {}).get(key) for sec, key in ROBUST_KEYS}


def robustness_table(clean: dict[str, Any], conditions: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Figures per condition and their drop from the clean run (clean minus perturbed).

    Returns:
        ``{"units": {...}, "clean": {figure: value}, "conditions": {name: {"figures": {...},
        "drop": {...}}}}``; a drop is None where either value is undefined. For
        ``authentic.false_alarm_rate`` a positive drop means *fewer* false alarms.
    """
    base = _figures(clean)
    table: dict[str, Any] = {"units": dict(UNITS), "clean": base, "conditions": {}}
    for name, summ in conditions.items():
        figs = _figures(summ)
        drop = {k: (None if base[k] is None or figs[k] is None else float(base[k]) - float(figs[k]))  # type: ignore[arg-type]
                for k in figs}
        table["conditions"][name] = {"figures": figs, "drop": drop}
    return table


def run_evaluation(sources: Sequence[Path], predictor: Predictor, out: Path, opt: EvalOptions | None = None,
                   progress: Callable[[str], None] | None = None, info: dict[str, Any] | None = None,
                   baselines: dict[str, dict[str, Any]] | None = None) -> EvalResult:
    """Evaluate, then write ``metrics.json``, ``predictions.jsonl`` and ``report.html`` into ``out``.

    Args:
        sources: one or more evaluation sources.
        predictor: what makes the predictions.
        out: output folder (created).
        opt: options.
        progress: receives one line per per-file error and per finished condition.
        info: extra facts for metrics.json and the report (e.g. checkpoint path).
        baselines: other detectors' metrics.json on the same images, by name, for the report's
            "Classical baselines" table (the demo's ELA and noise detectors).

    Returns:
        The result; ``n_scored == 0`` means nothing was evaluated.

    Raises:
        ValueError: perturbations requested from a predictor that cannot run on pixels, or an
            unreadable source (before anything is written).
    """
    from trainer.evaluation.report import (
        write_report,  # matplotlib only when a report is written
    )

    o = opt or EvalOptions()
    if o.perturbations and not predictor.supports_perturbation:
        raise ValueError("perturbations need a model that runs on the perturbed pixels (use --checkpoint)")
    out.mkdir(parents=True, exist_ok=True)
    mask_dir = None
    if o.save_masks and predictor.supports_perturbation:
        mask_dir = out / "masks"
        mask_dir.mkdir(exist_ok=True)
    keeper = ExampleKeeper(o.n_examples, o.threshold)
    records = evaluate_condition(sources, predictor, o, None, keeper, mask_dir, progress)
    mopt = MetricOptions(threshold=o.threshold, border_band=o.border_band)
    metrics = summarize(records, mopt)
    sources_info = [str(s) for s in sources]
    n_scored = sum(1 for r in records if r.error is None)
    metrics["run"] = {"sources": sources_info, "split": o.split, "threshold": o.threshold,
                      "border_band_px": list(o.border_band),
                      "score_sources": metrics["counts"]["score_sources"], **(info or {})}
    if o.calibrated is not None:
        metrics["image"]["calibrated"], metrics["pixel"]["calibrated"] = calibrated_figures(records, o.calibrated)
        metrics["thresholds"] = o.calibrated
    if o.learning is not None:
        metrics["learning"] = o.learning
    if "max_pixel" in metrics["counts"]["score_sources"]:
        metrics["run"]["score_note"] = ("images without a given score use the maximum pixel probability "
                                        "of their predicted mask as the image score")
    if o.perturbations and n_scored:
        conds: dict[str, dict[str, Any]] = {}
        for p in o.perturbations:
            recs = evaluate_condition(sources, predictor, o, p, None, None, None)
            conds[p.name] = summarize(recs, mopt, breakdowns=False)
            if progress is not None:
                progress(f"robustness {p.name}: done")
        metrics["robustness"] = robustness_table(metrics, conds)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    with open(out / "predictions.jsonl", "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r.to_json(), ensure_ascii=False) + "\n")
    write_report(out, metrics, records, keeper, baselines)
    return EvalResult(metrics=metrics, records=records, n_scored=n_scored, out=out)
