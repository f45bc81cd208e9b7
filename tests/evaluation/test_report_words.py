"""The report warns in words: a collapse, a small test set, figures resting on too few images."""

from __future__ import annotations

import re

import numpy as np

from trainer.evaluation.intervals import (
    MIN_N,
    bootstrap_image_ci,
    bootstrap_mean_ci,
    collapse_words,
)
from trainer.evaluation.metrics import image_metrics
from trainer.evaluation.report import _breakdown, _drop, summary_box


def test_collapse_is_said_in_words():
    everything_fake = image_metrics([1] * 6 + [0] * 6, [0.9] * 12)
    assert "every image forged" in collapse_words(everything_fake) and "1.0" in collapse_words(everything_fake)
    everything_real = image_metrics([1] * 6 + [0] * 6, [0.1] * 12)
    assert "every image authentic" in collapse_words(everything_real)
    assert collapse_words(image_metrics([1, 0, 1, 0], [0.9, 0.1, 0.2, 0.8])) is None
    assert collapse_words(image_metrics([1, 1], [0.9, 0.9])) is None  # one class only: not a collapse


def test_summary_box_leads_with_the_collapse_and_the_small_sample():
    im = image_metrics([1] * 6 + [0] * 6, [0.9] * 12)
    im["collapse"] = collapse_words(im)
    metrics = {"image": im, "pixel": {"n": 6, "f1": 0.03}, "authentic": {"n": 6, "false_alarm_rate": 1.0},
               "ci95": {"image_auc": [0.2, 0.9]}}
    box = summary_box(metrics, absent=["resample"])
    assert "6 forged and 6 authentic images" in box
    assert "collapsed" in box and "Small test set" in box and "resample" in box and "95% CI 0.20–0.90" in box


def test_intervals_are_wide_for_few_images_and_narrow_for_many():
    rng = np.random.default_rng(0)
    few = bootstrap_image_ci([1] * 6 + [0] * 6, rng.random(12))["auc"]
    many_y = [1] * 300 + [0] * 300
    many = bootstrap_image_ci(many_y, np.r_[rng.random(300) * 0.6 + 0.4, rng.random(300) * 0.6])["auc"]
    assert few[1] - few[0] > 0.4 and many[1] - many[0] < 0.1
    assert bootstrap_mean_ci([0.5]) is None


def test_a_method_row_on_one_image_shows_no_auc():
    row = {"one": {"image": {"n_fake": 1, "recall": 1.0, "auc": 1.0}, "pixel": {"n": 1, "f1": 0.9}},
           "many": {"image": {"n_fake": MIN_N, "recall": 0.5, "auc": 0.8123}, "pixel": {"n": MIN_N, "f1": 0.4}}}
    table = _breakdown("Per method", row)
    one = re.search(r"<tr><td>one</td>(.*?)</tr>", table).group(1)
    assert "1.000" not in one and f"n &lt; {MIN_N}" in one
    assert "0.812" in table and "0.8123" not in table


def test_drops_never_read_minus_zero():
    assert _drop(-0.00001) == "0.000" and _drop(0.123) == "+0.123" and _drop(-0.05) == "-0.050"


def test_eval_refuses_bad_options_before_loading_torch(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    code = ("import sys; from typer.testing import CliRunner; from cli import app; "
            f"r = CliRunner().invoke(app, ['eval', '--data', {str(tmp_path)!r}, '--out', {str(tmp_path / 'o')!r}]); "
            "print(r.exit_code, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.split() == ["2", "False"], out.stdout + out.stderr


def test_a_false_alarm_is_the_worst_example():
    from trainer.evaluation.examples import ExampleKeeper
    from trainer.evaluation.metrics import EvalRecord
    from trainer.evaluation.pixel_metrics import pixel_scores

    keeper = ExampleKeeper(1, threshold=0.5)
    image = np.zeros((8, 8, 3), np.uint8)
    gt = np.zeros((8, 8), bool)
    for rid, score, area in (("quiet-but-flagged", 0.9, 0.0), ("noisy-but-right", 0.2, 0.3)):
        pred = np.zeros((8, 8), np.float32)
        pred[: int(8 * area)] = 1.0
        rec = EvalRecord(id=rid, image=rid, label=0, score=score, method=None, dataset=None)
        rec.pixel = pixel_scores(pred, gt)
        keeper.offer(rec, image, gt, pred)
    assert keeper.worst[0].record.id == "quiet-but-flagged"  # the wrong verdict, not the larger area


def test_a_paired_bootstrap_difference_cancels_what_both_arms_share():
    import numpy as np

    from trainer.evaluation.intervals import paired_bootstrap_diff

    rng = np.random.default_rng(0)
    labels = np.array([0, 1] * 20)
    difficulty = rng.normal(0, 1, (3, 40))  # per seed and image, shared by both arms

    def mean(y, v):
        return float(v.mean())

    same = paired_bootstrap_diff(labels, difficulty, difficulty, mean, resamples=200)
    assert same == [0.0, 0.0]
    lo, hi = paired_bootstrap_diff(labels, difficulty + 0.1, difficulty, mean, resamples=200)
    assert lo == hi == 0.1  # a constant shift is exact once the shared part cancels
    lo, hi = paired_bootstrap_diff(labels, difficulty + 0.1 + rng.normal(0, 0.05, (3, 40)), difficulty, mean, resamples=200)
    assert 0 < lo < 0.1 < hi
