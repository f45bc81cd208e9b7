"""Metrics against sklearn and hand-computed cases (trainer/metrics.py)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    f1_score,
    jaccard_score,
    roc_auc_score,
)

from trainer.evaluation.answers import parse_answer
from trainer.evaluation.metrics import (
    EvalRecord,
    image_metrics,
    pooled_pixel_curve,
    summarize,
)
from trainer.evaluation.pixel_metrics import MetricOptions, pixel_scores


def test_image_metrics_match_sklearn() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    s = np.clip(rng.random(200) * 0.6 + y * 0.3, 0, 1)
    s[:5] = 0.5  # exactly at the threshold: negative (strictly greater is positive)
    m = image_metrics(y, s)
    pred = (s > 0.5).astype(int)
    assert m["accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred))
    assert m["f1"] == pytest.approx(f1_score(y, pred))
    assert m["auc"] == pytest.approx(roc_auc_score(y, s))
    assert m["tp"] + m["fp"] + m["tn"] + m["fn"] == 200


def test_threshold_is_strict() -> None:
    m = image_metrics([1, 0], [0.5, 0.5])
    assert m["tp"] == 0 and m["fn"] == 1 and m["tn"] == 1
    m = image_metrics([1, 0], [0.51, 0.5])
    assert m["accuracy"] == 1.0


def test_all_real_all_fake_constant() -> None:
    all_real = image_metrics([0, 0, 0], [0.1, 0.2, 0.3])
    assert all_real["auc"] is None and "one class" in all_real["undefined"]["auc"]
    assert all_real["f1"] is None and all_real["accuracy"] == 1.0 and all_real["balanced_accuracy"] == 1.0
    all_fake = image_metrics([1, 1], [0.9, 0.2])
    assert all_fake["auc"] is None and all_fake["f1"] == pytest.approx(2 / 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert all_fake["balanced_accuracy"] == pytest.approx(balanced_accuracy_score([1, 1], [1, 0]))
    const = image_metrics([0, 1, 0, 1], [0.7] * 4)
    assert const["auc"] == 0.5 and "auc_note" in const["undefined"]
    assert const["accuracy"] == 0.5 and const["f1"] == pytest.approx(2 / 3)
    empty = image_metrics([], [])
    assert empty["accuracy"] is None and empty["auc"] is None


def test_pixel_scores_hand_computed() -> None:
    gt = np.zeros((4, 4), bool)
    gt[:2, :2] = True  # 4 forged pixels
    pred = np.zeros((4, 4), np.float32)
    pred[:2, :1] = 0.9  # 2 TP
    pred[3, 3] = 0.8  # 1 FP
    pred[2, 2] = 0.5  # at threshold: negative
    r = pixel_scores(pred, gt)
    # TP 2, FP 1, FN 2: F1 = 4 / 7, IoU = 2 / 5
    assert r.f1 == pytest.approx(4 / 7)
    assert r.iou == pytest.approx(2 / 5)
    assert r.iou == pytest.approx(jaccard_score(gt.ravel(), pred.ravel() > 0.5))
    assert r.f1 == pytest.approx(f1_score(gt.ravel(), pred.ravel() > 0.5))
    assert r.auc == pytest.approx(roc_auc_score(gt.ravel(), pred.ravel()))
    assert r.predicted_area == pytest.approx(3 / 16) and r.any_positive
    assert r.best_f1 is not None and r.best_f1 >= r.f1


def test_pixel_uint8_levels() -> None:
    gt = np.array([[True, False]])
    assert pixel_scores(np.array([[128, 127]], np.uint8), gt).f1 == 1.0
    assert pixel_scores(np.array([[127, 0]], np.uint8), gt).f1 == 0.0


def test_pixel_degenerate() -> None:
    pred = np.full((3, 3), 0.9, np.float32)
    empty = pixel_scores(pred, np.zeros((3, 3), bool))
    assert empty.f1 is None and empty.auc is None and empty.any_positive and empty.predicted_area == 1.0
    full = pixel_scores(pred, np.ones((3, 3), bool))
    assert full.f1 == 1.0 and full.auc is None and "one class" in (full.auc_reason or "")
    no_pred = pixel_scores(np.zeros((3, 3), np.float32), np.eye(3, dtype=bool))
    assert no_pred.f1 == 0.0 and no_pred.iou == 0.0 and no_pred.auc == 0.5
    with pytest.raises(ValueError):
        pixel_scores(np.zeros((2, 2)), np.zeros((3, 3), bool))


def _rec(i: int, label: int, score: float, pred: np.ndarray | None, gt: np.ndarray | None,
         method: str = "copy-move", dataset: str = "a", **kw: object) -> EvalRecord:
    px = pixel_scores(pred, gt) if pred is not None else None
    return EvalRecord(id=str(i), image=f"{i}.png", label=label, score=score, method=method if label else "authentic",
                      dataset=dataset, pixel=px, **kw)  # type: ignore[arg-type]


def test_summarize_averages_per_forged_image_and_separates_authentic() -> None:
    gt = np.zeros((4, 4), bool)
    gt[:2] = True
    perfect = gt.astype(np.float32)
    half = np.zeros((4, 4), np.float32)
    half[0] = 1.0
    recs = [
        _rec(0, 1, 0.9, perfect, gt),
        _rec(1, 1, 0.8, half, gt, method="splice"),
        _rec(2, 0, 0.1, np.zeros((4, 4), np.float32), None),
        _rec(3, 0, 0.7, np.eye(4, dtype=np.float32), None, dataset="b"),
        EvalRecord(id="bad", image="bad.png", label=1, score=None, error="cannot decode"),
    ]
    s = summarize(recs)
    assert s["pixel"]["n"] == 2
    # F1: (1 + 2/3) / 2; IoU: (1 + 1/2) / 2
    assert s["pixel"]["f1"] == pytest.approx((1 + 2 / 3) / 2)
    assert s["pixel"]["iou"] == pytest.approx(0.75)
    assert s["authentic"]["n"] == 2
    assert s["authentic"]["false_alarm_rate"] == 0.5
    assert s["authentic"]["mean_predicted_area"] == pytest.approx((0 + 4 / 16) / 2)
    assert s["image"]["n"] == 4 and s["counts"]["errors"] == 1
    assert set(s["per_method"]) == {"copy-move", "splice"}
    assert s["per_method"]["splice"]["image"]["n"] == 3  # the splice image plus both authentic ones
    assert set(s["per_dataset"]) == {"a", "b"}
    assert s["image_best_threshold"]["f1"] == 1.0
    assert s["pixel_best_threshold"]["f1_per_image_oracle"] >= s["pixel"]["f1"]
    json.dumps(s)  # JSON-able, no NaN
    curve = pooled_pixel_curve(recs)
    assert curve is not None and len(curve["precision"]) == 100


def test_summarize_empty_and_all_errors() -> None:
    s = summarize([EvalRecord(id="x", image="x", label=1, score=None, error="boom")])
    assert s["image"]["auc"] is None and s["pixel"]["f1"] is None and s["authentic"]["n"] == 0
    json.dumps(s)


def test_parse_answer_and_text_summary() -> None:
    a = parse_answer('{"result": "fake<cls>", "mask": [[1, 2, 10, 2, 10, 12]]<mask_1><mask_2>}')
    assert a.json_valid and a.verdict == "fake" and a.polygons == [[(1.0, 2.0), (10.0, 2.0), (10.0, 12.0)]]
    b = parse_answer('{"result": "real", "mask": []}')
    assert b.json_valid and b.verdict == "real" and b.polygons == []
    c = parse_answer("The image looks authentic to me")
    assert not c.json_valid and c.verdict == "real"
    d = parse_answer('{"result": "fake", "mask": [[[1, 1], [5, 1], [5, 5]]]')
    assert not d.json_valid and d.verdict == "fake"
    assert parse_answer("结论：该图像经过篡改").verdict == "fake"
    assert parse_answer("???").verdict is None
    recs = [
        _rec(0, 1, 0.9, None, None, text="x", json_valid=True, text_verdict="fake"),
        _rec(1, 0, 0.8, None, None, text="y", json_valid=False, text_verdict="real"),
        _rec(2, 0, 0.1, None, None, text="z", json_valid=True, text_verdict=None),
    ]
    t = summarize(recs, MetricOptions())["text"]
    assert t["json_valid_rate"] == pytest.approx(2 / 3)
    assert t["n_compared"] == 2 and t["verdict_agreement_rate"] == 0.5
    assert t["text_accuracy"] == 1.0
