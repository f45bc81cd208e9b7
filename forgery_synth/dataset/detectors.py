"""Two classical forensic detectors: how visible a forgery is without any learning.

Both return an HxW float32 map where larger means "more likely edited"; the audit scores the maps
against the masks (pixel AUC per method), and the learning benchmark uses their high quantile as
an image score, the baseline a trained model has to beat.

- **Error-level analysis** (ELA, Krawetz 2007): re-save the image as JPEG at quality 90 and take the
  absolute difference, averaged over the channels and smoothed over 8x8 blocks. Regions whose
  compression history differs from the rest re-compress differently.
- **Noise-residual variance**: the high-pass residual of the grey image (image minus its 3x3
  median), its local variance over a 15x15 window, and the absolute log-ratio of that to the
  image's median variance. Spliced, blurred, noised or repainted regions carry another noise level.
"""

from __future__ import annotations

import cv2
import numpy as np

ELA_QUALITY = 90
NOISE_WINDOW = 15
IMAGE_SCORE_QUANTILE = 0.99


def ela_map(image: np.ndarray, quality: int = ELA_QUALITY) -> np.ndarray:
    """Error-level map of `image` (HxWx3 uint8 RGB): HxW float32, grey levels, >= 0."""
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("JPEG encoding failed")
    again = cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    diff = np.abs(image.astype(np.float32) - again.astype(np.float32)).mean(axis=2)
    return cv2.blur(diff, (8, 8))


def noise_residual(image: np.ndarray) -> np.ndarray:
    """The high-pass residual of `image` (HxWx3 uint8 RGB): its grey image minus the 3x3 median,
    HxW float32 grey levels: what is left of the sensor noise once the content is taken out."""
    grey = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
    return grey.astype(np.float32) - cv2.medianBlur(grey, 3).astype(np.float32)


def noise_residual_map(image: np.ndarray, window: int = NOISE_WINDOW) -> np.ndarray:
    """Local noise-level inconsistency of `image` (HxWx3 uint8 RGB): HxW float32, >= 0."""
    residual = noise_residual(image)
    mean = cv2.blur(residual, (window, window))
    var = np.maximum(cv2.blur(residual * residual, (window, window)) - mean * mean, 0.0)
    ref = float(np.median(var)) + 1e-3
    return np.abs(np.log((var + 1e-3) / ref)).astype(np.float32)


DETECTORS = {"ela": ela_map, "noise": noise_residual_map}
"""Name -> map function; the names are the ones the audit and the learning benchmark report."""


def image_score(score_map: np.ndarray, quantile: float = IMAGE_SCORE_QUANTILE) -> float:
    """One score per image from a detector map: its high quantile (a few strong pixels decide)."""
    return float(np.quantile(score_map, quantile))


def pixel_auc(score_map: np.ndarray, mask: np.ndarray) -> float | None:
    """ROC AUC of `score_map` against `mask` (HxW, nonzero = forged); None when one class is absent."""
    from sklearn.metrics import roc_auc_score

    truth = (np.asarray(mask) > 0).ravel()
    if truth.all() or not truth.any():
        return None
    return float(roc_auc_score(truth, np.asarray(score_map, np.float64).ravel()))


def separation(image: np.ndarray, mask: np.ndarray) -> float:
    """How well the classical detectors separate the forged pixels from the rest: the larger of
    ``|2 * pixel AUC - 1|`` over `DETECTORS` (0: not at all, 1: perfectly, in either direction).

    image: HxWx3 uint8 RGB; mask: HxW, nonzero = forged. 0.0 when the mask is empty or full.
    """
    best = 0.0
    for fn in DETECTORS.values():
        auc = pixel_auc(fn(image), mask)
        if auc is not None:
            best = max(best, abs(2.0 * auc - 1.0))
    return best
