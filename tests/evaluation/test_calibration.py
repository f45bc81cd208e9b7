"""Thresholds calibrated on validation: the image threshold maximises balanced accuracy (ties: the
middle of the best interval), the pixel threshold maximises the mean per-image F1 on the grid."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.evaluation.calibration import (
    PIXEL_GRID,
    balanced_accuracy_at,
    calibrate,
    image_threshold,
    pixel_at,
    pixel_threshold,
)


def test_the_image_threshold_is_the_middle_of_the_interval_that_separates_the_classes():
    labels = [0, 0, 0, 1, 1, 1]
    scores = [0.20, 0.30, 0.35, 0.45, 0.48, 0.60]  # every score < 0.5: at 0.5 all are "real"
    t = image_threshold(labels, scores)
    assert t == pytest.approx((0.35 + 0.45) / 2)
    y, s = np.array(labels), np.array(scores)
    assert balanced_accuracy_at(y, s, t) == 1.0
    assert balanced_accuracy_at(y, s, 0.5) == pytest.approx(2 / 3)


def test_the_image_threshold_maximises_balanced_accuracy_on_overlapping_scores():
    rng = np.random.default_rng(0)
    labels = np.r_[np.zeros(40, int), np.ones(10, int)]  # imbalanced: accuracy and balanced accuracy differ
    scores = np.clip(np.r_[rng.normal(0.3, 0.1, 40), rng.normal(0.45, 0.1, 10)], 0, 1)
    t = image_threshold(labels, scores)
    best = max(balanced_accuracy_at(labels, scores, float(c)) for c in np.r_[0.0, np.unique(scores)])
    assert balanced_accuracy_at(labels, scores, t) == pytest.approx(best)
    assert image_threshold([1, 1], [0.2, 0.9]) is None  # one class: nothing to calibrate


def _disc(h: int, r: int) -> np.ndarray:
    yy, xx = np.mgrid[:h, :h]
    return (yy - h // 2) ** 2 + (xx - h // 2) ** 2 <= r * r


def test_the_pixel_threshold_maximises_the_mean_f1_of_the_forged_images():
    gt = _disc(32, 8)
    prob = np.where(gt, 0.32, 0.08).astype(np.float32)  # the forged region scores 0.32: F1 0 at 0.5
    assert pixel_at(prob, gt, 0.5)["f1"] == 0.0
    t = pixel_threshold([(prob, gt), (prob, np.zeros_like(gt))])  # an image without forged pixels is left out
    assert t == pytest.approx(0.2)  # grid points 0.10 .. 0.30 all give F1 1: the middle of that run
    assert pixel_at(prob, gt, t) == {"any_positive": True, "f1": 1.0, "iou": 1.0}
    assert pixel_threshold([(prob, np.zeros_like(gt))]) is None


def test_calibrate_records_the_thresholds_and_the_figures_at_half_and_at_them():
    gt = _disc(32, 8)
    prob = np.where(gt, 0.32, 0.08).astype(np.float32)
    rec = calibrate([0, 0, 1, 1], [0.2, 0.3, 0.4, 0.45], [(prob, gt), (prob, gt)])
    assert rec["calibrated"] and rec["n_val"] == 4 and rec["n_forged_masks"] == 2
    assert rec["image"] == pytest.approx(0.35) and rec["pixel"] == pytest.approx(0.2)
    assert rec["at_0.5"] == {"image_balanced_accuracy": 0.5, "pixel_f1": 0.0}
    assert rec["at_calibrated"] == {"image_balanced_accuracy": 1.0, "pixel_f1": 1.0}
    none = calibrate([1, 1], [0.4, 0.6], [])
    assert (none["image"], none["pixel"], none["calibrated"]) == (0.5, 0.5, False)
