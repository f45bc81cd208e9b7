"""The classical baseline a trained model has to beat: error-level analysis or the noise-residual map,
calibrated on training images, as a `Predictor` so it is scored by exactly the metrics the model is.

A detector (`forgery_synth.dataset.detectors.DETECTORS`) gives a map per image; its image score is the
map's high quantile (`detectors.image_score`). Two thresholds are fitted on the training split, never
on the images scored: the pixel threshold that maximises the mean per-image F1 over the forged training
images, and the image threshold that maximises balanced accuracy. Outputs are the map and the score
passed through a logistic centred on those thresholds, so "positive" (> 0.5) means "above the fitted
threshold" and every AUC equals the raw map's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from forgery_synth.dataset.detectors import DETECTORS, image_score
from trainer.evaluation.predictors import ModelOutput
from trainer.evaluation.samples import EvalSample, SourceOptions

PIXEL_CANDIDATES = 64
"""Pixel thresholds tried: this many quantiles of the pooled training map values."""


def _logistic(x: np.ndarray | float, centre: float, scale: float) -> np.ndarray | float:
    return 1.0 / (1.0 + np.exp(-(np.asarray(x, np.float64) - centre) / max(scale, 1e-9)))


@dataclass
class ClassicalPredictor:
    """A classical detector with fitted thresholds (see the module docstring)."""

    detector: str
    pixel_threshold: float
    pixel_scale: float
    image_threshold: float
    image_scale: float
    supports_perturbation = True

    def __call__(self, samples: Sequence[EvalSample], images: Sequence[np.ndarray]) -> list[ModelOutput | str]:
        """images: HxWx3 uint8 RGB each -> score in [0, 1] and an HxW float32 mask in [0, 1] per image."""
        fn = DETECTORS[self.detector]
        out: list[ModelOutput | str] = []
        for image in images:
            m = fn(image)
            score = float(_logistic(image_score(m), self.image_threshold, self.image_scale))
            mask = _logistic(m, self.pixel_threshold, self.pixel_scale).astype(np.float32)
            out.append(ModelOutput(score=score, mask=mask, text=None, score_source="given",
                                   extra={"detector": self.detector}))
        return out


def _f1(pred: np.ndarray, gt: np.ndarray) -> float:
    tp = float((pred & gt).sum())
    denom = float(pred.sum() + gt.sum())
    return 2.0 * tp / denom if denom else 0.0


def fit_classical(sources: Sequence[Path], detector: str, *, split: str = "train",
                  limit: int | None = None) -> ClassicalPredictor:
    """Fit `detector`'s two thresholds on the `split` samples of `sources` (shard directories or any
    evaluation source); raises ValueError when the split lacks forged or authentic images."""
    from trainer.evaluation.readers import open_source

    if detector not in DETECTORS:
        raise ValueError(f"detector must be one of {', '.join(DETECTORS)}, got {detector!r}")
    fn = DETECTORS[detector]
    maps, masks, labels, scores = [], [], [], []
    for source in sources:
        for s in open_source(Path(source), SourceOptions(split=split)):
            if s.image is None or s.label is None:
                continue
            m = fn(s.image)
            labels.append(int(s.label))
            scores.append(image_score(m))
            if s.label == 1 and s.mask is not None and s.mask.any():
                maps.append(m)
                masks.append(s.mask)
            if limit is not None and len(labels) >= limit:
                break
    if not maps or len(set(labels)) < 2:
        raise ValueError(f"fitting {detector} needs forged and authentic images in the {split} split")
    pooled = np.concatenate([m.ravel() for m in maps])
    candidates = np.unique(np.quantile(pooled, np.linspace(0.5, 0.995, PIXEL_CANDIDATES)))
    f1s = [np.mean([_f1(m > t, g) for m, g in zip(maps, masks)]) for t in candidates]
    pixel_t = float(candidates[int(np.argmax(f1s))])
    y, sc = np.asarray(labels), np.asarray(scores, np.float64)
    cuts = np.unique(sc)
    bal = [0.5 * (float((sc[y == 1] > t).mean()) + float((sc[y == 0] <= t).mean())) for t in cuts]
    image_t = float(cuts[int(np.argmax(bal))])
    return ClassicalPredictor(detector=detector, pixel_threshold=pixel_t, pixel_scale=float(pooled.std() / 20 or 1.0),
                              image_threshold=image_t, image_scale=float(np.std(scores) / 20 or 1.0))
