"""Pixel scores of one image against its mask: F1, IoU and AUC at the threshold, and F1 over the grid.

The definitions are in `trainer.evaluation.metrics`'s docstring (the one place they are written); the
other anchors' conventions (double F1, TruFor's border band, gIoU/cIoU, DeepID) in
`trainer.evaluation.conventions`'s."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sklearn.metrics import roc_auc_score

from trainer.evaluation.conventions import TRUFOR_BAND, ConventionScores, convention_scores

#: Threshold grid for the best-threshold figures and the pooled pixel PR curve (100 values).
GRID: np.ndarray = np.round(np.arange(100) / 100.0, 2)


@dataclass
class MetricOptions:
    """Options of the metrics.

    Attributes:
        threshold: decision threshold in [0, 1]; positive means strictly greater.
        border_band: TruFor's ignored band around the mask edge, (inside, outside) in pixels.
    """

    threshold: float = 0.5
    border_band: tuple[int, int] = TRUFOR_BAND


@dataclass
class PixelResult:
    """Pixel figures of one image (all in [0, 1]; None where undefined).

    Attributes:
        f1, iou, auc: as in the module docstring (forged images with a non-empty mask only).
        auc_reason: why ``auc`` is None, else None.
        predicted_area: fraction of pixels with probability > threshold.
        any_positive: whether at least one pixel is > threshold.
        best_f1: F1 at this image's own best grid threshold (forged images only).
        gt_area: fraction of ground-truth forged pixels.
        curve: int64 array (3, len(GRID)) with TP, FP, FN at each grid threshold, or None.
        conv: the other anchors' figures of this image (`trainer.evaluation.conventions`).
    """

    f1: float | None
    iou: float | None
    auc: float | None
    auc_reason: str | None
    predicted_area: float
    any_positive: bool
    best_f1: float | None
    gt_area: float
    curve: np.ndarray | None = field(default=None, repr=False)
    conv: ConventionScores | None = None


def pixel_scores(pred: np.ndarray, gt: np.ndarray | None, options: MetricOptions | None = None) -> PixelResult:
    """Pixel figures of one image.

    Args:
        pred: HxW float probabilities in [0, 1] (any float dtype; uint8 is read as level/255).
        gt: HxW bool ground truth (True = forged), same shape as ``pred``, or None for an
            authentic image (treated as all False).
        options: threshold.

    Returns:
        The image's PixelResult; F1/IoU/AUC/best_f1 are None when ``gt`` has no forged pixel.

    Raises:
        ValueError: when the shapes differ.
    """
    opt = options or MetricOptions()
    p = _as_prob(pred)
    g = np.zeros(p.shape, bool) if gt is None else np.asarray(gt, bool)
    if g.shape != p.shape:
        raise ValueError(f"prediction shape {p.shape} differs from mask shape {g.shape}")
    pos = p > opt.threshold
    n = p.size
    predicted_area = float(pos.sum()) / n if n else 0.0
    n_gt = int(g.sum())
    gt_area = n_gt / n if n else 0.0
    conv = convention_scores(pos, g, opt.border_band)
    if n_gt == 0:
        return PixelResult(None, None, None, "no forged pixel in the ground truth", predicted_area,
                           bool(pos.any()), None, gt_area, None, conv)
    tp = int(np.count_nonzero(pos & g))
    fp = int(np.count_nonzero(pos & ~g))
    fn = n_gt - tp
    f1 = 2 * tp / (2 * tp + fp + fn)
    iou = tp / (tp + fp + fn)
    auc: float | None
    reason: str | None = None
    if n_gt == n:
        auc, reason = None, "every pixel is forged (one class)"
    else:
        auc = float(roc_auc_score(g.ravel(), p.ravel()))
    pos_sorted = np.sort(p[g])
    neg_sorted = np.sort(p[~g])
    tps = n_gt - np.searchsorted(pos_sorted, GRID, side="right")
    fps = neg_sorted.size - np.searchsorted(neg_sorted, GRID, side="right")
    fns = n_gt - tps
    curve = np.stack([tps, fps, fns]).astype(np.int64)
    f1s = _f1_curve(curve)
    return PixelResult(f1, iou, auc, reason, predicted_area, bool(pos.any()), float(f1s.max()), gt_area, curve, conv)


def _as_prob(pred: np.ndarray) -> np.ndarray:
    a = np.asarray(pred)
    if a.dtype == np.uint8:
        return a.astype(np.float32) / 255.0
    return a.astype(np.float32, copy=False)


def _f1_curve(curve: np.ndarray) -> np.ndarray:
    tp, fp, fn = curve.astype(np.float64)
    den = 2 * tp + fp + fn
    return np.where(den > 0, 2 * tp / np.maximum(den, 1), 0.0)
