"""Detection and localisation metrics, defined so the numbers compare with IMDL-BenCo.

Definitions (IMDL-BenCo's ``IMDLBenCo/evaluation/`` F1.py, AUC.py, IOU.py are the reference):

Threshold
    A prediction is *positive* (forged) when it is **strictly greater** than the threshold
    (default 0.5), for image scores and for pixel probabilities alike. A mask PNG holding
    probabilities as 0–255 grey levels is read as ``level / 255``, so a pixel is positive when its
    level is 128 or more.

Ground truth
    Image label 1 = forged ("fake"), 0 = authentic ("real"). Ground-truth masks are binarised as
    ``grey > 127`` by the readers (``trainer/evaluation/samples.py``); here they arrive as HxW bool.

Image level (one score per image, the sigmoid of the cls head, or a given score)
    Over all images with a label and a score: with TP, FP, TN, FN counted at the threshold,
    ``accuracy = (TP + TN) / N``;
    ``balanced_accuracy`` = mean of the per-class recalls over the classes present
    (``TP / (TP + FN)`` and ``TN / (TN + FP)``; sklearn's ``balanced_accuracy_score``);
    ``f1 = 2 TP / (2 TP + FP + FN)`` with fake as the positive class (sklearn's ``f1_score``;
    IMDL-BenCo's ImageF1 equals it up to its 1e-9 epsilons);
    ``auc`` = area under the ROC curve of the raw scores (sklearn's ``roc_auc_score``, as
    IMDL-BenCo's ImageAUC). AUC is undefined (``null`` plus a reason under ``undefined``) when
    only one class is present; F1 is undefined when ``2 TP + FP + FN = 0`` (no forged image and no
    forged verdict).

Pixel level (forged images only, each scored at the image's own resolution)
    For each forged image whose ground-truth mask has at least one forged pixel:
    ``f1 = 2 TP / (2 TP + FP + FN)``, ``iou = TP / (TP + FP + FN)`` (IMDL-BenCo's PixelF1 and
    PixelIOU "origin" mode, without their 1e-8 epsilons) and ``auc`` = ROC AUC of the pixel
    probabilities against the mask (tie-aware, sklearn's ``roc_auc_score``; IMDL-BenCo's PixelAUC
    integrates an argsort without grouping ties, which differs only where probabilities tie).
    Each figure is then averaged over those images (the per-image mean, as IMDL-BenCo reports).
    Pixel AUC of one image is undefined when its mask covers every pixel; such images are left
    out of the AUC mean only (counted in ``auc_undefined``). Forged images with an empty mask
    (only global traces) are left out of all pixel figures and counted in ``skipped_empty_mask``;
    IMDL-BenCo would score them 0.

Authentic images (reported apart, never averaged into the pixel figures)
    ``false_alarm_rate`` = share of authentic images with at least one predicted pixel above
    the threshold; ``mean_predicted_area`` = mean over them of the fraction of pixels above the
    threshold. (IMDL-BenCo scores them pixel-F1 = 0, which hides false alarms; we do not.)

Best-threshold figures (optimistic; only under their own names)
    ``image_best_threshold``: the threshold on the fixed grid 0.00, 0.01, ..., 0.99 that
    maximises image F1, with the F1 and balanced accuracy it gives. ``pixel_best_threshold``:
    ``f1_per_image_oracle`` (each image at its own best grid threshold, then averaged) and
    ``f1_fixed_best`` (the one grid threshold that maximises the mean per-image F1).

Text
    ``json_valid_rate``: share of answers that parse as a JSON object once the special tokens
    (``<cls>``, ``<mask_i>``) are removed. ``verdict_agreement_rate``: share of answers with a
    readable verdict ("fake"/"real") that agree with the head's verdict (score > threshold).

Other anchors' conventions (``conventions``)
    IMDL-BenCo/TruFor "double" F1, TruFor's border-tolerant F1, LISA/FakeShield/SIDA gIoU and
    cIoU, DeepID's authentic-inclusive F1, image figures from the cls head and from the text verdict
    apart: defined, with the code each was read in, in `trainer.evaluation.conventions`.

Breakdowns
    ``per_method[m]``: the same figures over the images forged by method ``m`` together with all
    authentic images (so the image-level AUC for one method stays defined).
    ``per_dataset[d]``: the same figures over the images of dataset ``d``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np
from sklearn.metrics import roc_auc_score

from trainer.evaluation.conventions import f1_weighted, pixel_conventions, text_image_scores
from trainer.evaluation.intervals import (
    bootstrap_image_ci,
    bootstrap_mean_ci,
    collapse_words,
)
from trainer.evaluation.pixel_metrics import GRID, MetricOptions, PixelResult, _f1_curve


@dataclass
class EvalRecord:
    """Everything the metrics need about one evaluated image (scalars only, JSON-able).

    Attributes:
        id: sample key or file stem.
        image: path or shard member name of the image.
        label: 1 forged, 0 authentic, None unknown.
        score: image score in [0, 1] or None.
        score_source: "cls" (model head), "given" (scores.csv / JSONL), "max_pixel" (max of
            the predicted probabilities, used when no score was given).
        method: forgery method ("authentic" for real images) or None.
        dataset: dataset name (the source's name) or None.
        pixel: pixel figures, or None when no mask was predicted or the ground truth is unknown.
        text: the model's answer text, or None (no text model).
        json_valid: whether ``text`` parses as JSON (see ``parse_answer``), None without text.
        text_verdict: "fake", "real" or None.
        error: a per-file error message; records with an error are excluded from every figure.
        extra: free-form paths (predicted mask, overlay) for the report.
    """

    id: str
    image: str
    label: int | None
    score: float | None
    score_source: str = "cls"
    method: str | None = None
    dataset: str | None = None
    pixel: PixelResult | None = None
    text: str | None = None
    json_valid: bool | None = None
    text_verdict: str | None = None
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The record as a JSON-able dict (the pixel curve is dropped, NaN becomes None)."""
        d = asdict(self)
        if self.pixel is not None:
            d["pixel"].pop("curve", None)
        return _clean(d)


def image_metrics(labels: Sequence[int], scores: Sequence[float], options: MetricOptions | None = None) -> dict[str, Any]:
    """Image-level figures (see the module docstring).

    Args:
        labels: N ints in {0, 1} (1 = forged).
        scores: N floats in [0, 1].
        options: threshold.

    Returns:
        ``{"n", "n_fake", "n_real", "threshold", "accuracy", "balanced_accuracy", "f1", "auc",
        "precision", "recall", "tp", "fp", "tn", "fn", "undefined": {name: reason}}``; figures that
        cannot be computed are None with their reason under "undefined".
    """
    opt = options or MetricOptions()
    y = np.asarray(labels, dtype=np.int64)
    s = np.asarray(scores, dtype=np.float64)
    out: dict[str, Any] = {"n": int(y.size), "n_fake": int((y == 1).sum()), "n_real": int((y == 0).sum()),
                           "threshold": opt.threshold}
    undefined: dict[str, str] = {}
    if y.size == 0:
        for k in ("accuracy", "balanced_accuracy", "f1", "auc", "precision", "recall"):
            out[k] = None
            undefined[k] = "no labelled image with a score"
        out.update(tp=0, fp=0, tn=0, fn=0, undefined=undefined)
        return out
    pred = s > opt.threshold
    tp = int(np.sum(pred & (y == 1)))
    fp = int(np.sum(pred & (y == 0)))
    tn = int(np.sum(~pred & (y == 0)))
    fn = int(np.sum(~pred & (y == 1)))
    out["accuracy"] = (tp + tn) / y.size
    recalls = []
    if tp + fn:
        recalls.append(tp / (tp + fn))
    if tn + fp:
        recalls.append(tn / (tn + fp))
    out["balanced_accuracy"] = float(np.mean(recalls))
    if 2 * tp + fp + fn:
        out["f1"] = 2 * tp / (2 * tp + fp + fn)
    else:
        out["f1"] = None
        undefined["f1"] = "no forged image and no forged verdict"
    if tp + fp:
        out["precision"] = tp / (tp + fp)
    else:
        out["precision"] = None
        undefined["precision"] = "no forged verdict"
    if tp + fn:
        out["recall"] = tp / (tp + fn)
    else:
        out["recall"] = None
        undefined["recall"] = "no forged image"
    if out["n_fake"] == 0 or out["n_real"] == 0:
        out["auc"] = None
        undefined["auc"] = "only one class present (" + ("all authentic" if out["n_fake"] == 0 else "all forged") + ")"
    else:
        out["auc"] = float(roc_auc_score(y, s))
        if np.all(s == s[0]):
            undefined["auc_note"] = "constant scores: AUC is 0.5 by construction"
    out.update(tp=tp, fp=fp, tn=tn, fn=fn, undefined=undefined)
    return out


def image_best_threshold(labels: Sequence[int], scores: Sequence[float]) -> dict[str, Any]:
    """The grid threshold that maximises image F1 (optimistic; reported under its own name).

    Returns:
        ``{"threshold", "f1", "balanced_accuracy"}`` or ``{"threshold": None, ..., "reason"}``.
    """
    y = np.asarray(labels, dtype=np.int64)
    s = np.asarray(scores, dtype=np.float64)
    if y.size == 0 or not (y == 1).any():
        return {"threshold": None, "f1": None, "balanced_accuracy": None, "reason": "no forged image"}
    best: tuple[float, float, float] | None = None
    for t in GRID:
        m = image_metrics(y, s, MetricOptions(threshold=float(t)))
        f1 = m["f1"] or 0.0
        if best is None or f1 > best[1]:
            best = (float(t), f1, m["balanced_accuracy"])
    assert best is not None
    return {"threshold": best[0], "f1": best[1], "balanced_accuracy": best[2]}


def summarize(records: Iterable[EvalRecord], options: MetricOptions | None = None,
              breakdowns: bool = True) -> dict[str, Any]:
    """All figures over a set of records (records with an error are counted, never scored).

    Args:
        records: evaluated images.
        options: threshold.
        breakdowns: also compute ``per_method`` and ``per_dataset``.

    Returns:
        ``{"image", "image_best_threshold", "pixel", "pixel_best_threshold", "authentic", "text",
        "conventions", "counts", "per_method", "per_dataset"}`` (see the module docstring); JSON-able.
    """
    opt = options or MetricOptions()
    recs = list(records)
    ok = [r for r in recs if r.error is None]
    scored = [r for r in ok if r.label is not None and r.score is not None]
    labels = [int(r.label) for r in scored]  # type: ignore[arg-type]
    scores = [float(r.score) for r in scored]  # type: ignore[arg-type]
    out: dict[str, Any] = {
        "image": image_metrics(labels, scores, opt),
        "image_best_threshold": image_best_threshold(labels, scores),
        "pixel": _pixel_summary(ok),
        "pixel_best_threshold": _pixel_best(ok),
        "authentic": _authentic_summary(ok),
        "text": _text_summary(ok, opt),
        "conventions": _conventions(ok, opt),
        "counts": {"records": len(recs), "errors": len(recs) - len(ok),
                   "unlabelled": sum(1 for r in ok if r.label is None),
                   "score_sources": _count(r.score_source for r in scored)},
    }
    out["image"]["collapse"] = collapse_words(out["image"])
    pixel_f1 = [r.pixel.f1 for r in _forged_with_pixels(ok)]
    pixel_iou = [r.pixel.iou for r in _forged_with_pixels(ok)]
    out["ci95"] = {**{f"image_{k}": v for k, v in bootstrap_image_ci(labels, scores, opt.threshold).items()},
                   "pixel_f1": bootstrap_mean_ci(pixel_f1), "pixel_iou": bootstrap_mean_ci(pixel_iou)} \
        if breakdowns else {}
    if breakdowns:
        methods = sorted({r.method or "unknown" for r in ok if r.label == 1})
        authentic = [r for r in ok if r.label == 0]
        out["per_method"] = {m: summarize([r for r in ok if r.label == 1 and (r.method or "unknown") == m] + authentic,
                                          opt, breakdowns=False) for m in methods}
        datasets = sorted({r.dataset or "unknown" for r in ok})
        out["per_dataset"] = ({d: summarize([r for r in ok if (r.dataset or "unknown") == d], opt, breakdowns=False)
                               for d in datasets} if len(datasets) > 1 else {})
    return _clean(out)


def _forged_with_pixels(recs: list[EvalRecord]) -> list[EvalRecord]:
    return [r for r in recs if r.label == 1 and r.pixel is not None and r.pixel.f1 is not None]


def _pixel_summary(recs: list[EvalRecord]) -> dict[str, Any]:
    forged = _forged_with_pixels(recs)
    skipped = sum(1 for r in recs if r.label == 1 and r.pixel is not None and r.pixel.f1 is None)
    no_pred = sum(1 for r in recs if r.label == 1 and r.pixel is None)
    out: dict[str, Any] = {"n": len(forged), "skipped_empty_mask": skipped, "no_prediction_or_mask": no_pred,
                           "resolution": "native (each image at its own size)"}
    undefined: dict[str, str] = {}
    if not forged:
        out.update(f1=None, iou=None, auc=None, auc_n=0)
        undefined["f1"] = undefined["iou"] = undefined["auc"] = "no forged image with a mask and a predicted mask"
    else:
        out["f1"] = float(np.mean([r.pixel.f1 for r in forged]))  # type: ignore[union-attr]
        out["iou"] = float(np.mean([r.pixel.iou for r in forged]))  # type: ignore[union-attr]
        aucs = [r.pixel.auc for r in forged if r.pixel.auc is not None]  # type: ignore[union-attr]
        out["auc"] = float(np.mean(aucs)) if aucs else None
        out["auc_n"] = len(aucs)
        out["auc_undefined"] = len(forged) - len(aucs)
        if not aucs:
            undefined["auc"] = "every forged image's mask covers the whole image"
    out["undefined"] = undefined
    return out


def _pixel_best(recs: list[EvalRecord]) -> dict[str, Any]:
    forged = [r for r in _forged_with_pixels(recs) if r.pixel.curve is not None]  # type: ignore[union-attr]
    if not forged:
        return {"f1_per_image_oracle": None, "f1_fixed_best": {"threshold": None, "f1": None},
                "reason": "no forged image with a mask and a predicted mask"}
    f1s = np.stack([_f1_curve(r.pixel.curve) for r in forged])  # type: ignore[union-attr,arg-type]
    mean = f1s.mean(axis=0)
    k = int(np.argmax(mean))
    return {"f1_per_image_oracle": float(f1s.max(axis=1).mean()),
            "f1_fixed_best": {"threshold": float(GRID[k]), "f1": float(mean[k])}}


def pooled_pixel_curve(records: Iterable[EvalRecord]) -> dict[str, list[float]] | None:
    """Precision and recall of the pixels of all forged images pooled, at each GRID threshold.

    Returns:
        ``{"threshold", "precision", "recall"}`` lists (len(GRID)) or None without forged pixels.
    """
    curves = [r.pixel.curve for r in records if r.error is None and r.label == 1 and r.pixel is not None
              and r.pixel.curve is not None]
    if not curves:
        return None
    tp, fp, fn = np.sum(np.stack(curves), axis=0).astype(np.float64)
    prec = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), 1.0)
    rec = tp / np.maximum(tp + fn, 1)
    return {"threshold": GRID.tolist(), "precision": prec.tolist(), "recall": rec.tolist()}


def _authentic_summary(recs: list[EvalRecord]) -> dict[str, Any]:
    real = [r for r in recs if r.label == 0 and r.pixel is not None]
    out: dict[str, Any] = {"n": len(real)}
    if not real:
        out.update(false_alarm_rate=None, mean_predicted_area=None,
                   undefined={"false_alarm_rate": "no authentic image with a predicted mask"})
        return out
    out["false_alarm_rate"] = float(np.mean([r.pixel.any_positive for r in real]))  # type: ignore[union-attr]
    out["mean_predicted_area"] = float(np.mean([r.pixel.predicted_area for r in real]))  # type: ignore[union-attr]
    out["undefined"] = {}
    return out


def _text_summary(recs: list[EvalRecord], opt: MetricOptions) -> dict[str, Any]:
    with_text = [r for r in recs if r.text is not None]
    out: dict[str, Any] = {"n": len(with_text)}
    if not with_text:
        out.update(json_valid_rate=None, verdict_agreement_rate=None, n_compared=0,
                   undefined={"json_valid_rate": "no answer text (no text model)"})
        return out
    out["json_valid_rate"] = float(np.mean([bool(r.json_valid) for r in with_text]))
    cmp = [r for r in with_text if r.text_verdict is not None and r.score is not None]
    out["n_compared"] = len(cmp)
    out["verdict_readable_rate"] = len([r for r in with_text if r.text_verdict is not None]) / len(with_text)
    if cmp:
        out["verdict_agreement_rate"] = float(np.mean(
            [(r.text_verdict == "fake") == (float(r.score) > opt.threshold) for r in cmp]))  # type: ignore[arg-type]
        labelled = [r for r in cmp if r.label is not None]
        out["text_accuracy"] = (float(np.mean([(r.text_verdict == "fake") == (r.label == 1) for r in labelled]))
                                if labelled else None)
        out["undefined"] = {}
    else:
        out["verdict_agreement_rate"] = None
        out["text_accuracy"] = None
        out["undefined"] = {"verdict_agreement_rate": "no answer with a readable verdict"}
    return out


def _conventions(recs: list[EvalRecord], opt: MetricOptions) -> dict[str, Any]:
    """The other anchors' figures (`trainer.evaluation.conventions`), from per-image scalars only."""
    forged = [r.pixel.conv for r in _forged_with_pixels(recs) if r.pixel.conv is not None]  # type: ignore[union-attr]
    real = [r.pixel.conv for r in recs if r.label == 0 and r.pixel is not None and r.pixel.conv is not None]
    out = pixel_conventions(forged, real, opt.border_band)
    cls = [r for r in recs if r.label is not None and r.score is not None and r.score_source == "cls"]
    y = [int(r.label) for r in cls]  # type: ignore[arg-type]
    s = [float(r.score) for r in cls]  # type: ignore[arg-type]
    out["image_from_cls"] = _image_short(y, s, opt, "no score from a cls head (given or max-pixel scores only)")
    texts = [r for r in recs if r.label is not None and r.text is not None]
    ty, ts, unreadable = text_image_scores([int(r.label) for r in texts], [r.text_verdict for r in texts])  # type: ignore[arg-type]
    im = _image_short(ty, ts, opt, "no readable verdict in an answer text")
    im["auc"] = None
    im.setdefault("undefined", {})["auc"] = "a verdict word is binary: no ranking"
    im["n_unreadable"] = unreadable
    im["accuracy_unreadable_as_wrong"] = (im["accuracy"] * len(ty) / len(texts)) if texts and ty else None
    out["image_from_text"] = im
    return out


def _image_short(y: list[int], s: list[float], opt: MetricOptions, reason: str) -> dict[str, Any]:
    if not y:
        keys = ("accuracy", "balanced_accuracy", "f1", "f1_weighted", "auc", "precision", "recall")
        return {"n": 0, **{k: None for k in keys}, "undefined": {k: reason for k in keys}}
    m = image_metrics(y, s, opt)
    short = {k: m[k] for k in ("n", "n_fake", "n_real", "accuracy", "balanced_accuracy", "f1", "auc",
                               "precision", "recall")}
    short["f1_weighted"] = f1_weighted(y, [int(v > opt.threshold) for v in s])
    short["undefined"] = dict(m["undefined"])
    return short


def _count(it: Iterable[str]) -> dict[str, int]:
    d: dict[str, int] = {}
    for k in it:
        d[k] = d.get(k, 0) + 1
    return d


def _clean(x: Any) -> Any:
    """NaN/inf -> None, numpy scalars -> Python, recursively."""
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x
