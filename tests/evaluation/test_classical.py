"""The classical baseline: thresholds fitted on the training split, outputs that say "above the fitted
threshold" at 0.5, and the same metrics code as the model's."""

from __future__ import annotations

import numpy as np
import pytest

from forgery_synth.dataset.detectors import DETECTORS, image_score
from trainer.evaluation.classical import _f1, fit_classical
from trainer.evaluation.evaluate import EvalOptions, run_evaluation
from trainer.evaluation.readers import open_source
from trainer.evaluation.samples import SourceOptions


@pytest.fixture(scope="module")
def shards(tmp_path_factory, build_small):
    root, _, _ = build_small(tmp_path_factory.mktemp("classical"), splits=(0.5, 0.0, 0.5), templates={"json": 1.0})
    return root


@pytest.mark.parametrize("detector", list(DETECTORS))
def test_fitted_thresholds_decide_at_one_half(shards, detector):
    fitted = fit_classical([shards], detector, split="train")
    samples = [s for s in open_source(shards, SourceOptions(split="test")) if s.image is not None]
    outputs = fitted(samples, [s.image for s in samples])
    for s, out in zip(samples, outputs):
        raw = DETECTORS[detector](s.image)
        assert out.mask.shape == raw.shape and out.mask.dtype == np.float32
        assert np.array_equal(out.mask > 0.5, raw > fitted.pixel_threshold)
        assert (out.score > 0.5) == (image_score(raw) > fitted.image_threshold)


def test_pixel_threshold_is_the_best_mean_f1_on_training_images(shards):
    fitted = fit_classical([shards], "noise", split="train")
    forged = [s for s in open_source(shards, SourceOptions(split="train")) if s.label == 1 and s.mask.any()]
    maps = [DETECTORS["noise"](s.image) for s in forged]

    def mean_f1(t: float) -> float:
        return float(np.mean([_f1(m > t, s.mask) for m, s in zip(maps, forged)]))

    best = mean_f1(fitted.pixel_threshold)
    pooled = np.concatenate([m.ravel() for m in maps])
    for q in (0.6, 0.8, 0.9, 0.99):
        assert best >= mean_f1(float(np.quantile(pooled, q))) - 1e-9


def test_scored_by_the_evaluation_code(shards, tmp_path):
    fitted = fit_classical([shards], "ela", split="train")
    res = run_evaluation([shards], fitted, tmp_path / "eval", EvalOptions(split="test", n_examples=0, save_masks=False))
    assert res.n_scored > 0 and res.metrics["image"]["auc"] is not None and res.metrics["pixel"]["f1"] is not None


def test_fitting_needs_both_labels(tmp_path, make_shards):
    make_shards(tmp_path, split="train", n_fake=2, n_real=0)
    with pytest.raises(ValueError, match="forged and authentic"):
        fit_classical([tmp_path], "ela", split="train")
    with pytest.raises(ValueError, match="detector must be one of"):
        fit_classical([tmp_path], "sobel")
