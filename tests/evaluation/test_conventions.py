"""The anchors' conventions (trainer/evaluation/conventions.py) on hand-made cases whose values are known by hand."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.ndimage import maximum_filter, minimum_filter
from typer.testing import CliRunner

from cli import app
from trainer.evaluation.conventions import (
    ConventionScores,
    border_regions,
    convention_scores,
    parse_band,
    pixel_conventions,
)
from trainer.evaluation.metrics import EvalRecord, summarize
from trainer.evaluation.pixel_metrics import MetricOptions, pixel_scores

runner = CliRunner()


def _row(*bits: int) -> np.ndarray:
    return np.array([bits], bool)


def test_double_f1_and_iou_by_hand() -> None:
    gt = _row(1, 1, 0, 0, 0, 0)
    # tp=1 fp=1 fn=1 tn=3: F1 = 2/4, inverted F1 = 2*1/(2+3+1) = 1/3; IoU = 1/3, inverted 1/(1+3+1)
    c = convention_scores(_row(1, 0, 1, 0, 0, 0), gt, (0, 0))
    assert c.f1_double == pytest.approx(0.5) and c.iou_double == pytest.approx(1 / 3)
    # tp=0 fp=3 fn=2 tn=1: F1 = 0, inverted F1 = 4/(4+1+0) = 0.8; inverted IoU = 2/(2+1+0)
    c = convention_scores(_row(0, 0, 1, 1, 1, 0), gt, (0, 0))
    assert c.f1_double == pytest.approx(0.8) and c.iou_double == pytest.approx(2 / 3)


def test_an_inverted_prediction_gets_the_double_f1_of_the_exact_map() -> None:
    gt = np.zeros((6, 6), bool)
    gt[1:4, 2:5] = True
    exact, inverted = pixel_scores(gt.astype(np.float32), gt), pixel_scores((~gt).astype(np.float32), gt)
    assert inverted.f1 == 0.0 and exact.f1 == 1.0
    assert inverted.conv.f1_double == exact.f1 == exact.conv.f1_double
    assert inverted.conv.iou_double == exact.iou == 1.0


def _square() -> np.ndarray:
    gt = np.zeros((20, 20), bool)
    gt[5:15, 5:15] = True  # 100 forged pixels
    return gt


def test_border_band_ignores_only_the_pixels_near_the_mask_edge() -> None:
    gt, band = _square(), (2, 1)
    core, far = border_regions(gt, band)
    assert core.sum() == 36 and core[7:13, 7:13].all()  # eroded by 2 px
    assert far.sum() == 400 - 144 and not far[4:16, 4:16].any()  # outside the mask grown by 1 px
    grown = np.zeros_like(gt)
    grown[4:16, 4:16] = True  # wrong only in the 1-px outer band
    shrunk = np.zeros_like(gt)
    shrunk[7:13, 7:13] = True  # wrong only in the 2-px inner band
    for pred in (grown, shrunk):
        c = convention_scores(pred, gt, band)
        assert c.f1_border == 1.0 and c.f1_border_double == 1.0
    assert convention_scores(grown, gt, band).f1_double == pytest.approx(200 / 244)  # tp 100, fp 44
    one_off = gt.copy()
    one_off[2, 10] = True  # 3 px above the mask: outside the band, so it counts
    assert convention_scores(one_off, gt, band).f1_border == pytest.approx(72 / 73)  # tp 36, fp 1, fn 0
    near = gt.copy()
    near[4, 10] = True  # 1 px above the mask: in the band, ignored
    assert convention_scores(near, gt, band).f1_border == 1.0


def test_default_band_is_trufors_15_erosion_and_11_dilation_with_reflected_image_edges() -> None:
    rng = np.random.default_rng(0)
    gt = np.zeros((60, 70), bool)
    gt[10:45, 20:50] = True
    gt[rng.random(gt.shape) < 0.02] = True
    core, far = border_regions(gt)
    assert np.array_equal(core, minimum_filter(gt, 15)) and np.array_equal(far, ~maximum_filter(gt, 11))
    half = np.zeros((20, 20), bool)
    half[:, :10] = True  # touches the image edge: not eroded from there ('reflect', as TruFor's scipy call)
    assert border_regions(half, (2, 0))[0].sum() == 20 * 8


def test_border_f1_is_undefined_when_nothing_forged_survives_the_band() -> None:
    gt = np.zeros((20, 20), bool)
    gt[5:8, 5:8] = True  # 3x3: a 7-px erosion leaves nothing
    c = convention_scores(gt, gt)
    assert c.f1_border is None and c.f1_double == 1.0
    agg = pixel_conventions([c], [])
    assert agg["border_skipped"] == 1 and agg["f1_border"] is None and "f1_border" in agg["undefined"]


def _forged(n: int, n_gt: int, n_hit: int) -> tuple[np.ndarray, np.ndarray]:
    """A 1xN row: the first n_gt pixels forged, the first n_hit of them predicted."""
    gt, pred = np.zeros((1, n), bool), np.zeros((1, n), bool)
    gt[0, :n_gt] = True
    pred[0, :n_hit] = True
    return pred, gt


def test_ciou_differs_from_giou_where_image_sizes_differ() -> None:
    a = convention_scores(*_forged(100, 1, 1), (0, 0))  # IoU 1, I = 1, U = 1
    b = convention_scores(*_forged(100, 50, 25), (0, 0))  # IoU 0.5, I = 25, U = 50
    agg = pixel_conventions([a, b], [], (0, 0))
    assert agg["giou"] == pytest.approx(0.75)
    assert agg["ciou"] == pytest.approx(26 / 51)


def test_authentic_images_by_lisa_and_deepid_rules() -> None:
    clean = convention_scores(np.zeros((10, 10), bool), np.zeros((10, 10), bool))
    noisy_pred = np.zeros((10, 10), bool)
    noisy_pred[:2] = True  # 20 of 100 pixels predicted forged
    noisy = convention_scores(noisy_pred, np.zeros((10, 10), bool))
    assert clean.iou_lisa == 1.0 and clean.f1_inverted == 1.0
    assert noisy.iou_lisa == 0.0 and noisy.f1_inverted == pytest.approx(160 / 180)  # tp 80, fn 20, fp 0
    forged = convention_scores(*_forged(100, 1, 1), (0, 0))
    agg = pixel_conventions([forged], [clean, noisy], (0, 0))
    assert agg["giou"] == 1.0 and agg["ciou"] == 1.0  # forged images only (SIDA's choice)
    assert agg["giou_with_authentic"] == pytest.approx(2 / 3)
    assert agg["ciou_with_authentic"] == pytest.approx(1 / 21)  # I = 1, U = 1 + 0 + 20
    assert agg["f1_authentic_inverted"] == pytest.approx(17 / 18)
    assert agg["f1_deepid"] == pytest.approx((1 + 17 / 18) / 2)


def _rec(i: int, label: int, pred: np.ndarray | None, gt: np.ndarray | None, score: float | None = None,
         source: str = "cls", verdict: str | None = None) -> EvalRecord:
    px = None if pred is None else pixel_scores(pred.astype(np.float32), gt, MetricOptions(border_band=(0, 0)))
    return EvalRecord(id=f"r{i}", image=f"r{i}.png", label=label, score=score, score_source=source, pixel=px,
                      text=f"answer {i}", text_verdict=verdict)


def test_summarize_puts_each_convention_under_its_field() -> None:
    p1, g1 = _forged(100, 1, 1)
    p2, g2 = _forged(100, 50, 25)
    empty = np.zeros((1, 100), bool)
    recs = [_rec(0, 1, p1, g1, 0.9, verdict="fake"), _rec(1, 1, p2, g2, 0.4, verdict="real"),
            _rec(2, 1, p1, empty, 0.8, verdict="fake"),  # forged, empty mask: out of every pixel figure
            _rec(3, 0, empty, None, 0.3, verdict="fake"), _rec(4, 0, p2, None, 0.6, verdict=None),
            _rec(5, 0, None, None, 0.1, source="given", verdict="real")]
    cv = summarize(recs, MetricOptions(border_band=(0, 0)))["conventions"]
    assert cv["n_forged"] == 2 and cv["n_authentic"] == 2
    assert cv["giou"] == pytest.approx(0.75) and cv["ciou"] == pytest.approx(26 / 51)
    assert cv["giou_with_authentic"] == pytest.approx(2.5 / 4)  # 1, 0.5, 1 (nothing predicted), 0 (25 px)
    assert cv["ciou_with_authentic"] == pytest.approx(26 / 76)
    assert cv["border_band_px"] == {"inner": 0, "outer": 0}
    cls = cv["image_from_cls"]  # records 0-4 (record 5's score is given): verdicts 1 0 1 0 1 vs labels 1 1 1 0 0
    assert cls["n"] == 5 and cls["accuracy"] == pytest.approx(3 / 5)
    txt = cv["image_from_text"]  # readable: 0 fake/1, 1 real/1, 2 fake/1, 3 fake/0, 5 real/0
    assert txt["n"] == 5 and txt["n_unreadable"] == 1 and txt["accuracy"] == pytest.approx(3 / 5)
    assert txt["accuracy_unreadable_as_wrong"] == pytest.approx(3 / 6) and txt["auc"] is None
    assert txt["f1_weighted"] == pytest.approx(0.6)  # fake: P 2/3 R 2/3; real: P 1/2 R 1/2; weights 3/5, 2/5


def test_parse_band() -> None:
    assert parse_band("7,5") == (7, 5) and parse_band(" 3 ") == (3, 3) and parse_band("0,0") == (0, 0)
    for bad in ("a", "-1,2", "1,2,3", ""):
        with pytest.raises(ValueError, match="--border-band"):
            parse_band(bad)


def test_eval_cli_writes_the_conventions(tmp_path: Path, casia_layout, prediction_folder) -> None:
    truth = casia_layout(tmp_path / "casia", n_fake=2, n_real=1)
    prediction_folder(tmp_path / "pred", truth, quality="perfect", scores={k: 0.5 for k in truth})
    out = tmp_path / "out"
    base = ["eval", "--predictions", str(tmp_path / "pred"), "--data", str(tmp_path / "casia"), "--out", str(out)]
    assert runner.invoke(app, base + ["--border-band", "x"]).exit_code == 2
    r = runner.invoke(app, base + ["--border-band", "1,2"])
    assert r.exit_code == 0, r.output
    assert "conventions: F1 double 1.0000" in r.output and "(band 1,2 px)" in r.output
    m = json.loads((out / "metrics.json").read_text())
    cv = m["conventions"]
    assert cv["f1_double"] == cv["f1_border"] == cv["giou"] == cv["ciou"] == cv["f1_deepid"] == 1.0
    assert cv["border_band_px"] == {"inner": 1, "outer": 2} and m["run"]["border_band_px"] == [1, 2]
    assert cv["image_from_cls"]["n"] == 0 and cv["image_from_cls"]["accuracy"] is None  # scores were given
    html = (out / "report.html").read_text()
    assert "Conventions of the published anchors" in html and "conventions.f1_border_double" in html


def test_records_keep_only_scalars_for_the_conventions() -> None:
    p, g = _forged(100, 50, 25)
    rec = _rec(0, 1, p, g, 0.9)
    assert isinstance(rec.pixel.conv, ConventionScores)
    conv = rec.to_json()["pixel"]["conv"]
    assert conv["tp"] == 25 and conv["fp"] == 0 and conv["fn"] == 25
    assert all(v is None or isinstance(v, (int, float)) for v in conv.values())


@pytest.mark.imdlbenco
def test_per_image_f1_and_iou_match_imdlbencos_own_evaluators() -> None:
    """IMDL-BenCo's PixelF1 / PixelIOU (modes origin and double) against ours on random cases (its 1e-8
    epsilons aside). Runs where the ``imdlbenco`` package imports, e.g. in a venv of its own."""
    ev = pytest.importorskip("IMDLBenCo.evaluation", exc_type=ImportError)
    import torch

    rng = np.random.default_rng(16)
    for case in range(40):
        h, w = int(rng.integers(4, 40)), int(rng.integers(4, 40))
        gt = rng.random((h, w)) < rng.uniform(0.05, 0.9)
        gt[0, 0] = True
        prob = rng.random((h, w)).astype(np.float32)
        if case % 3 == 0:
            prob = np.where(gt, prob * 0.4 + 0.6, prob * 0.6).astype(np.float32)  # a good detector
        elif case % 3 == 1:
            prob = 1 - np.where(gt, prob * 0.4 + 0.6, prob * 0.6).astype(np.float32)  # an inverted one
        ours = pixel_scores(prob, gt)
        p_t = torch.from_numpy(prob)[None, None]
        g_t = torch.from_numpy(gt.astype(np.float32))[None, None]
        theirs = {mode: (float(ev.PixelF1(0.5, mode).batch_update(p_t, g_t)[0]),
                         float(ev.PixelIOU(0.5, mode).batch_update(p_t, g_t)[0])) for mode in ("origin", "double")}
        assert ours.f1 == pytest.approx(theirs["origin"][0], abs=1e-6), case
        assert ours.iou == pytest.approx(theirs["origin"][1], abs=1e-6), case
        assert ours.conv.f1_double == pytest.approx(theirs["double"][0], abs=1e-6), case
        assert ours.conv.iou_double == pytest.approx(theirs["double"][1], abs=1e-6), case
