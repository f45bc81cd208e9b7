"""`forgery eval`: run a predictor over evaluation sources, score it, write the report.

Two kinds of predictor:
    * ``ExternalPredictor``: predictions another detector already made (``--predictions``);
      masks are looked up by image name, no image is run through anything, so no perturbation.
    * a model predictor (``trainer.predict.ModelPredictor``, ``--checkpoint``): runs on the
      (possibly perturbed) image pixels.

Outputs in ``out``: ``metrics.json``, ``predictions.jsonl`` (one ``EvalRecord`` per image of the
clean run), ``report.html`` with ``plots/`` and ``examples/``, and with a model predictor
``masks/<id>.png`` (probabilities as 0–255 grey levels, reusable as ``--predictions``).

Image score when a prediction carries none: the maximum pixel probability of its mask
(``score_source = "max_pixel"``); the report says so.
"""

from __future__ import annotations

import heapq
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Protocol, Sequence

import numpy as np
from PIL import Image

from trainer.eval_data import EvalSample, PredictionStore, SourceOptions, load_probability_png, open_source
from trainer.metrics import EvalRecord, MetricOptions, parse_answer, pixel_scores, summarize
from trainer.perturb import UNITS, Perturbation, apply_perturbation, resize_probabilities

#: Figures compared across robustness conditions: (section, key).
ROBUST_KEYS: tuple[tuple[str, str], ...] = (
    ("image", "accuracy"), ("image", "balanced_accuracy"), ("image", "f1"), ("image", "auc"),
    ("pixel", "f1"), ("pixel", "iou"), ("pixel", "auc"), ("authentic", "false_alarm_rate"))


@dataclass
class ModelOutput:
    """What a predictor says about one image.

    Attributes:
        score: image score in [0, 1] or None.
        mask: HxW float32 probabilities in [0, 1] (any size; resized to the image when needed) or None.
        text: the answer text, or None for detectors without text.
        score_source: "cls", "given" or "max_pixel".
        extra: anything to keep in predictions.jsonl (e.g. polygons).
    """

    score: float | None
    mask: np.ndarray | None
    text: str | None = None
    score_source: str = "cls"
    extra: dict[str, Any] = field(default_factory=dict)


class Predictor(Protocol):
    """Anything that turns a batch of samples (and their possibly perturbed pixels) into outputs.

    ``images[i]`` is HxWx3 uint8 RGB. The result has one entry per sample: a ``ModelOutput`` or a
    string (a per-file error message).
    """

    supports_perturbation: bool

    def __call__(self, samples: Sequence[EvalSample], images: Sequence[np.ndarray]) -> list[ModelOutput | str]: ...


class ExternalPredictor:
    """Predictions of another detector (see ``PredictionStore`` for the layouts)."""

    supports_perturbation = False

    def __init__(self, store: PredictionStore) -> None:
        """Wrap an indexed prediction store."""
        self.store = store

    def __call__(self, samples: Sequence[EvalSample], images: Sequence[np.ndarray]) -> list[ModelOutput | str]:
        """Look up each sample's mask and score; a missing prediction is a per-file error."""
        out: list[ModelOutput | str] = []
        for s in samples:
            p = self.store.get(s.id, s.ref)
            if p is None:
                out.append(f"no prediction for {s.id} in {self.store.path}")
                continue
            mask = None
            if p.mask_path is not None:
                try:
                    mask = load_probability_png(p.mask_path)
                except Exception as e:  # noqa: BLE001 - per-file error
                    out.append(f"cannot read predicted mask {p.mask_path}: {type(e).__name__}: {e}")
                    continue
            if p.score is not None:
                score, src = float(np.clip(p.score, 0.0, 1.0)), "given"
            elif mask is not None:
                score, src = float(mask.max()), "max_pixel"
            else:
                out.append(f"prediction for {s.id} has neither a score nor a mask")
                continue
            out.append(ModelOutput(score=score, mask=mask, text=None, score_source=src,
                                   extra={"pred_mask": str(p.mask_path) if p.mask_path else None}))
        return out


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
    """

    threshold: float = 0.5
    split: str | None = "test"
    perturbations: list[Perturbation] = field(default_factory=list)
    batch_size: int = 4
    seed: int = 0
    limit: int | None = None
    n_examples: int = 6
    save_masks: bool = True


@dataclass
class Example:
    """A thumbnail triple kept for the report: image, ground truth and predicted mask."""

    record: EvalRecord
    image: np.ndarray
    gt: np.ndarray | None
    pred: np.ndarray | None


class ExampleKeeper:
    """Keeps the ``k`` best and ``k`` worst images (by pixel F1 for forged images; by predicted
    area for authentic ones, which count as worst when they raise a false alarm) with thumbnails."""

    THUMB = 256

    def __init__(self, k: int) -> None:
        """Keep up to ``k`` examples in each list."""
        self.k = k
        self._best: list[tuple[float, int, Example]] = []
        self._worst: list[tuple[float, int, Example]] = []
        self._n = 0

    def offer(self, rec: EvalRecord, image: np.ndarray, gt: np.ndarray | None, pred: np.ndarray | None) -> None:
        """Consider one evaluated image (arrays at the image's resolution)."""
        if self.k <= 0 or rec.pixel is None:
            return
        if rec.label == 1 and rec.pixel.f1 is not None:
            quality = rec.pixel.f1
        elif rec.label == 0:
            quality = 1.0 - rec.pixel.predicted_area
        else:
            return
        self._n += 1
        need_best = len(self._best) < self.k or quality > self._best[0][0]
        need_worst = len(self._worst) < self.k or -quality > self._worst[0][0]
        if not (need_best or need_worst):
            return
        ex = self._thumb(rec, image, gt, pred)
        if need_best and rec.label == 1:
            heapq.heappush(self._best, (quality, self._n, ex))
            if len(self._best) > self.k:
                heapq.heappop(self._best)
        if need_worst:
            heapq.heappush(self._worst, (-quality, self._n, ex))
            if len(self._worst) > self.k:
                heapq.heappop(self._worst)

    def _thumb(self, rec: EvalRecord, image: np.ndarray, gt: np.ndarray | None, pred: np.ndarray | None) -> Example:
        h, w = image.shape[:2]
        f = min(1.0, self.THUMB / max(h, w))
        size = (max(1, round(w * f)), max(1, round(h * f)))

        def rs(a: np.ndarray, mode: Image.Resampling) -> np.ndarray:
            return np.asarray(Image.fromarray(a).resize(size, mode))

        img = rs(image, Image.Resampling.BILINEAR)
        g = rs((gt.astype(np.uint8) * 255), Image.Resampling.NEAREST) > 127 if gt is not None else None
        p = rs((np.clip(pred, 0, 1) * 255).astype(np.uint8), Image.Resampling.BILINEAR).astype(np.float32) / 255 \
            if pred is not None else None
        return Example(record=rec, image=img, gt=g, pred=p)

    @property
    def best(self) -> list[Example]:
        """Best first."""
        return [e for _, _, e in sorted(self._best, key=lambda t: (-t[0], t[1]))]

    @property
    def worst(self) -> list[Example]:
        """Worst first."""
        return [e for _, _, e in sorted(self._worst, key=lambda t: (-t[0], t[1]))]


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


def _safe_name(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", s)[:120] or "image"


def evaluate_condition(sources: Sequence[Path], predictor: Predictor, opt: EvalOptions,
                       perturbation: Perturbation | None = None, keeper: ExampleKeeper | None = None,
                       mask_dir: Path | None = None, progress: Callable[[str], None] | None = None) -> list[EvalRecord]:
    """Evaluate every sample of ``sources`` under one condition (clean when ``perturbation`` is None).

    Args:
        sources: evaluation sources (see ``trainer.eval_data.open_source``).
        predictor: the predictor.
        opt: options.
        perturbation: degradation applied to each image before prediction.
        keeper: collects report examples (clean run only).
        mask_dir: where to write predicted masks as PNG (clean run with a model only).
        progress: called with one line per per-file error.

    Returns:
        One record per sample, in source order.
    """
    mopt = MetricOptions(threshold=opt.threshold)
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
                    _fill(rec, s, out, mopt, keeper, mask_dir, used_names)
                if rec.error is not None and progress is not None:
                    progress(f"error: {rec.image}: {rec.error}")
                records.append(rec)
                s.image = None
                s.mask = None
    return records


def _fill(rec: EvalRecord, s: EvalSample, out: ModelOutput, mopt: MetricOptions, keeper: ExampleKeeper | None,
          mask_dir: Path | None, used_names: set[str]) -> None:
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
                   progress: Callable[[str], None] | None = None, info: dict[str, Any] | None = None) -> EvalResult:
    """Evaluate, then write ``metrics.json``, ``predictions.jsonl`` and ``report.html`` into ``out``.

    Args:
        sources: one or more evaluation sources.
        predictor: what makes the predictions.
        out: output folder (created).
        opt: options.
        progress: receives one line per per-file error and per finished condition.
        info: extra facts for metrics.json and the report (e.g. checkpoint path).

    Returns:
        The result; ``n_scored == 0`` means nothing was evaluated.

    Raises:
        ValueError: perturbations requested from a predictor that cannot run on pixels, or an
            unreadable source (before anything is written).
    """
    from trainer.report import write_report  # matplotlib only when a report is written

    o = opt or EvalOptions()
    if o.perturbations and not predictor.supports_perturbation:
        raise ValueError("perturbations need a model that runs on the perturbed pixels (use --checkpoint)")
    out.mkdir(parents=True, exist_ok=True)
    mask_dir = None
    if o.save_masks and predictor.supports_perturbation:
        mask_dir = out / "masks"
        mask_dir.mkdir(exist_ok=True)
    keeper = ExampleKeeper(o.n_examples)
    records = evaluate_condition(sources, predictor, o, None, keeper, mask_dir, progress)
    mopt = MetricOptions(threshold=o.threshold)
    metrics = summarize(records, mopt)
    sources_info = [str(s) for s in sources]
    n_scored = sum(1 for r in records if r.error is None)
    metrics["run"] = {"sources": sources_info, "split": o.split, "threshold": o.threshold,
                      "score_sources": metrics["counts"]["score_sources"], **(info or {})}
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
    write_report(out, metrics, records, keeper)
    return EvalResult(metrics=metrics, records=records, n_scored=n_scored, out=out)
