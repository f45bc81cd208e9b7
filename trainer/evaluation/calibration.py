"""Decision thresholds calibrated on the validation split (IMDL-BenCo's rule: the fixed-0.5 figures
stay reported beside the calibrated ones, under their own names).

Image threshold: on the cls score, the one that maximises balanced accuracy (positive = strictly
greater). The sorted distinct scores cut [0, 1] into intervals on which the predictions do not
change; the best intervals (adjacent ones merged) are found, and the threshold is the middle of the
widest (ties in balanced accuracy: the middle of the best interval, not its edge). Pixel threshold:
on the mask probabilities, the one of the grid 0.05, 0.10, ..., 0.95 that maximises the mean F1 over
forged images with a non-empty mask (per image F1, then averaged, as ``pixel.f1``); ties: the middle
of the best run of grid points. Either is None when the split cannot fix it (one class; no forged mask).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

PIXEL_GRID: np.ndarray = np.round(np.arange(1, 20) * 0.05, 2)
"""Candidate pixel thresholds: 0.05 ... 0.95."""


def _middle_of_best(values: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> float:
    """The middle of the widest run of adjacent candidates whose ``values`` equal the maximum;
    candidate i covers [lo[i], hi[i]] (runs are merged: [lo of the first, hi of the last])."""
    best = values.max()
    top = np.isclose(values, best, rtol=0, atol=1e-12)
    runs: list[tuple[float, float]] = []
    i = 0
    while i < len(values):
        if top[i]:
            j = i
            while j + 1 < len(values) and top[j + 1]:
                j += 1
            runs.append((float(lo[i]), float(hi[j])))
            i = j + 1
        else:
            i += 1
    a, b = max(runs, key=lambda r: r[1] - r[0])
    return (a + b) / 2


def balanced_accuracy_at(labels: np.ndarray, scores: np.ndarray, threshold: float) -> float:
    """Mean of the recalls of forged (label 1) and authentic (label 0) images at ``threshold``."""
    pred = scores > threshold
    return float((pred[labels == 1].mean() + (~pred[labels == 0]).mean()) / 2)


def image_threshold(labels: Sequence[int], scores: Sequence[float]) -> float | None:
    """The cls-score threshold that maximises balanced accuracy on (labels, scores) (see the module
    docstring), or None without both classes."""
    y, s = np.asarray(labels, int), np.clip(np.asarray(scores, float), 0.0, 1.0)
    if len(set(y.tolist())) < 2:
        return None
    cuts = np.unique(s)
    lo = np.concatenate([[0.0], cuts])  # interval k: [lo[k], hi[k]); threshold inside it
    hi = np.concatenate([cuts, [1.0]])
    mids = (lo + hi) / 2
    bal = np.array([balanced_accuracy_at(y, s, t) for t in mids])
    # a threshold equal to a cut belongs to the interval above it (positive = strictly greater)
    return _middle_of_best(bal, lo, hi)


def _f1(prob: np.ndarray, gt: np.ndarray, t: float) -> float:
    pos = prob > t
    tp = np.count_nonzero(pos & gt)
    den = np.count_nonzero(pos) + np.count_nonzero(gt)
    return 2 * tp / den if den else 0.0


def pixel_threshold(masks: Sequence[tuple[np.ndarray, np.ndarray]]) -> float | None:
    """The grid threshold that maximises the mean per-image pixel F1 over ``masks`` ((probabilities
    HxW float in [0, 1], ground truth HxW bool) of forged images), or None when none has a forged pixel."""
    pairs = [(np.asarray(p, np.float32), np.asarray(g, bool)) for p, g in masks if np.asarray(g).any()]
    if not pairs:
        return None
    mean = np.array([np.mean([_f1(p, g, float(t)) for p, g in pairs]) for t in PIXEL_GRID])
    return _middle_of_best(mean, PIXEL_GRID, PIXEL_GRID)


def calibrate(labels: Sequence[int], scores: Sequence[float],
              masks: Sequence[tuple[np.ndarray, np.ndarray]]) -> dict[str, Any]:
    """Thresholds and the figures at 0.5 and at them, for checkpoints' ``thresholds.json``:
    ``{"image", "pixel", "calibrated", "n_val", "n_forged_masks", "at_0.5": {...}, "at_calibrated": {...}}``;
    a threshold the split cannot fix stays 0.5 (``calibrated`` False when neither could be fixed)."""
    t_img, t_px = image_threshold(labels, scores), pixel_threshold(masks)
    y, s = np.asarray(labels, int), np.asarray(scores, float)
    pairs = [(p, g) for p, g in masks if np.asarray(g).any()]

    def figures(ti: float, tp: float) -> dict[str, float | None]:
        both = len(set(y.tolist())) == 2
        return {"image_balanced_accuracy": balanced_accuracy_at(y, s, ti) if both else None,
                "pixel_f1": float(np.mean([_f1(np.asarray(p, np.float32), np.asarray(g, bool), tp) for p, g in pairs]))
                if pairs else None}

    image = 0.5 if t_img is None else t_img
    pixel = 0.5 if t_px is None else t_px
    return {"image": image, "pixel": pixel, "calibrated": t_img is not None or t_px is not None,
            "image_calibrated": t_img is not None, "pixel_calibrated": t_px is not None,
            "n_val": int(len(y)), "n_forged_masks": len(pairs),
            "at_0.5": figures(0.5, 0.5), "at_calibrated": figures(image, pixel)}


def pixel_at(prob: np.ndarray, gt: np.ndarray | None, threshold: float) -> dict[str, Any]:
    """One image's pixel figures at ``threshold`` (strictly greater is positive): ``f1``, ``iou`` (None
    when ``gt`` has no forged pixel) and ``any_positive``; ``prob`` HxW float in [0, 1], ``gt`` HxW bool."""
    pos = np.asarray(prob, np.float32) > threshold
    g = np.zeros(pos.shape, bool) if gt is None else np.asarray(gt, bool)
    out: dict[str, Any] = {"any_positive": bool(pos.any()), "f1": None, "iou": None}
    if g.any():
        tp = int(np.count_nonzero(pos & g))
        fp, fn = int(np.count_nonzero(pos & ~g)), int(np.count_nonzero(~pos & g))
        out["f1"], out["iou"] = 2 * tp / (2 * tp + fp + fn), tp / (tp + fp + fn)
    return out


def calibrated_figures(records: Sequence[Any], thresholds: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(``image.calibrated``, ``pixel.calibrated``) of an evaluation: the image figures of ``records``
    (trainer.evaluation.metrics.EvalRecord) at the checkpoint's image threshold, and the pixel figures at
    its pixel threshold (read from each record's ``extra["pixel_calibrated"]``, filled by the evaluation);
    ``thresholds``: trainer.model.checkpoint.load_thresholds's record."""
    from trainer.evaluation.metrics import image_metrics
    from trainer.evaluation.pixel_metrics import MetricOptions

    note = (f"calibrated on {thresholds.get('n_val', '?')} validation sample(s)" if thresholds.get("calibrated")
            else "the checkpoint has no calibrated thresholds (no validation ran): these are the 0.5 figures")
    ok = [r for r in records if r.error is None and r.label is not None and r.score is not None]
    im = image_metrics([int(r.label) for r in ok], [float(r.score) for r in ok],
                       MetricOptions(threshold=float(thresholds["image"])))
    image = {k: im.get(k) for k in ("threshold", "accuracy", "balanced_accuracy", "f1", "precision", "recall")}
    image["note"] = note
    scored = [(r.label, r.extra["pixel_calibrated"]) for r in records
              if r.error is None and "pixel_calibrated" in r.extra]
    forged = [p for label, p in scored if label == 1 and p["f1"] is not None]
    authentic = [p for label, p in scored if label == 0]
    pixel = {"threshold": float(thresholds["pixel"]), "n": len(forged),
             "f1": float(np.mean([p["f1"] for p in forged])) if forged else None,
             "iou": float(np.mean([p["iou"] for p in forged])) if forged else None,
             "false_alarm_rate": float(np.mean([p["any_positive"] for p in authentic])) if authentic else None,
             "note": note}
    return image, pixel
