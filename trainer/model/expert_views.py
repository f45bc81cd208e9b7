"""Expert views: forensic residuals of the image, given to the model as extra mask-path channels.

The research notes ask for "expert-model features": hand-made views in which traces of editing are
easier to see than in the RGB pixels the backbone and SAM look at. One function,
:func:`expert_view`, makes them for training (``trainer.training.data.make_batch``) and for
inference (``ForensicsModel.score_batch``: predict, eval, validation) alike.

=====  ====  ==================================================================================
kind   K     channels (each ``clip(raw, -T, T) / T``: a fixed scale, the same for every image)
=====  ====  ==================================================================================
none   0     no expert view (the model without an expert head)
noise  1     the noise residual of the grey image: grey minus its 3x3 median
             (:func:`forgery_synth.dataset.detectors.noise_residual`), T = 8 grey levels, [-1, 1]
srm    3     the three SRM high-pass residuals of the grey image (Fridrich & Kodovsky 2012; the
             three filters of RGB-N and ManTra-Net: 2nd-order 3x3 / 4, KV 5x5 / 12, 1st-order
             horizontal / 2), ``cv2.filter2D``, truncated at T = 3 grey levels, [-1, 1]
ela    1     error-level analysis at JPEG quality 90, smoothed over 8x8 blocks
             (:func:`forgery_synth.dataset.detectors.ela_map`), T = 16 grey levels, [0, 1]
classical 2  the two classical detectors' maps, the baseline's own evidence: the noise-level
             inconsistency (:func:`forgery_synth.dataset.detectors.noise_residual_map`, the
             absolute log-ratio of the local residual variance to the image's median, T = 4) and
             the ELA map (T = 16); [0, 1] each
forensic 21 a bank of classical evidence for a learned combination (the expert head is wider and
             deeper for it, ``trainer.model.expert_head``): the two classical maps; ELA at quality 75;
             for each of the four residuals (noise, three SRM), the log-ratio of its local variance
             over 7, 15 and 31 px windows to the image's median variance (T = 4: scale-free, so a
             noise level *different from the rest* is what stands out, in any photo); the same for
             the Laplacian over 7 and 15 px (sharpness: blur, resampling); the four residuals
             themselves (T = 3). [-1, 1] / [0, 1]
prnu   1     the local correlation of the image's noise residual with its camera's sensor
             fingerprint ``K * I`` over 64 x 64 windows
             (:func:`forgery_synth.fingerprints.prnu.correlation_map`), T = 0.25, [-1, 1]: high where
             the pixels came from the source's camera, near 0 in a splice from another camera or a
             painted region. Needs the fingerprint of each image (``forgery train --fingerprints
             DIR``, :class:`forgery_synth.fingerprints.bank.FingerprintBank`); an image of an unknown
             camera, or one without a fingerprint, gets all zeros ("no evidence"; the bank counts
             each such sample by reason and training logs the counts)
=====  ====  ==================================================================================

The scale is fixed (never the image's own statistics) so that a value means the same residual in
every image: a noisier region *is* larger. The one exception is the classical noise map, which is
relative to the image's own median noise level by definition (it measures inconsistency). The views are computed from the uint8 image at its own
resolution (residuals are per-pixel facts) and then mapped, the whole image onto the mask frame,
with nearest-neighbour sampling (:func:`expert_batch`): averaging would cancel a zero-mean residual
when the frame is smaller than the image, nearest keeps each sample's true value and so the local
residual statistics the expert head reads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:
    import torch

EXPERTS = ("none", "noise", "srm", "ela", "classical", "forensic", "prnu")
"""The expert views ``forgery train --expert`` offers."""

_CHANNELS = {"none": 0, "noise": 1, "srm": 3, "ela": 1, "classical": 2, "forensic": 21, "prnu": 1}
PRNU_TRUNCATION = 0.25
NOISE_TRUNCATION = 8.0
SRM_TRUNCATION = 3.0
ELA_TRUNCATION = 16.0
NOISE_MAP_TRUNCATION = 4.0
LOG_VARIANCE_TRUNCATION = 4.0
VARIANCE_WINDOWS = (7, 15, 31)
SHARPNESS_WINDOWS = (7, 15)

SRM_FILTERS = (
    np.array([[0, 0, 0, 0, 0], [0, -1, 2, -1, 0], [0, 2, -4, 2, 0], [0, -1, 2, -1, 0], [0, 0, 0, 0, 0]],
             np.float32) / 4.0,
    np.array([[-1, 2, -2, 2, -1], [2, -6, 8, -6, 2], [-2, 8, -12, 8, -2], [2, -6, 8, -6, 2], [-1, 2, -2, 2, -1]],
             np.float32) / 12.0,
    np.array([[0, 0, 0, 0, 0], [0, 0, 0, 0, 0], [0, 1, -2, 1, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]],
             np.float32) / 2.0,
)
"""The three SRM kernels (5x5, normalised so that each is a residual in grey levels)."""


def check_expert(kind: str) -> str:
    """``kind`` if it names an expert view, else ValueError listing :data:`EXPERTS`."""
    if kind not in _CHANNELS:
        raise ValueError(f"expert must be one of {', '.join(EXPERTS)}, got {kind!r}")
    return kind


def expert_channels(kind: str) -> int:
    """Channels K of the ``kind`` view (0 for "none")."""
    return _CHANNELS[check_expert(kind)]


def _truncate(raw: np.ndarray, t: float) -> np.ndarray:
    return (np.clip(raw, -t, t) / t).astype(np.float32)


def expert_view(image: np.ndarray, kind: str, fingerprint: np.ndarray | None = None) -> np.ndarray:
    """The ``kind`` view of ``image`` (HxWx3 uint8 RGB, 0-255): HxWxK float32 (module table for
    the channels and their ranges). Deterministic: the same image gives the same bytes.
    ``fingerprint``: for "prnu", the image's camera fingerprint on the image's pixels (HxW float,
    `FingerprintBank.for_log`), None: unknown (zeros)."""
    import cv2

    from forgery_synth.dataset.detectors import ela_map, noise_residual, noise_residual_map

    check_expert(kind)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an H x W x 3 uint8 image, got {image.shape} {image.dtype}")
    h, w = image.shape[:2]
    if kind == "none":
        return np.zeros((h, w, 0), np.float32)
    if kind == "prnu":
        if fingerprint is None:
            return np.zeros((h, w, 1), np.float32)
        from forgery_synth.fingerprints.prnu import correlation_map

        return _truncate(correlation_map(image, fingerprint), PRNU_TRUNCATION)[..., None]
    if kind == "noise":
        return _truncate(noise_residual(image), NOISE_TRUNCATION)[..., None]
    if kind == "ela":
        return _truncate(ela_map(image), ELA_TRUNCATION)[..., None]
    if kind == "classical":
        return np.stack([_truncate(noise_residual_map(image), NOISE_MAP_TRUNCATION),
                         _truncate(ela_map(image), ELA_TRUNCATION)], axis=-1)
    grey = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY).astype(np.float32)
    residuals = [cv2.filter2D(grey, cv2.CV_32F, k, borderType=cv2.BORDER_REFLECT_101) for k in SRM_FILTERS]
    if kind == "srm":
        return _truncate(np.stack(residuals, axis=-1), SRM_TRUNCATION)
    residuals = [noise_residual(image), *residuals]
    channels = [_truncate(noise_residual_map(image), NOISE_MAP_TRUNCATION), _truncate(ela_map(image), ELA_TRUNCATION),
                _truncate(ela_map(image, 75), ELA_TRUNCATION)]
    channels += [_relative_log_variance(r, w) for r in residuals for w in VARIANCE_WINDOWS]
    laplacian = cv2.Laplacian(grey, cv2.CV_32F)
    channels += [_relative_log_variance(laplacian, w) for w in SHARPNESS_WINDOWS]
    channels += [_truncate(r, SRM_TRUNCATION) for r in residuals]
    return np.stack(channels, axis=-1)


def _relative_log_variance(residual: np.ndarray, window: int) -> np.ndarray:
    """log(local variance over ``window`` / the image's median local variance), truncated at
    LOG_VARIANCE_TRUNCATION and scaled to [-1, 1] (HxW float32)."""
    import cv2

    mean = cv2.blur(residual, (window, window))
    var = np.maximum(cv2.blur(residual * residual, (window, window)) - mean * mean, 0.0)
    return _truncate(np.log((var + 1e-3) / (float(np.median(var)) + 1e-3)), LOG_VARIANCE_TRUNCATION)


def expert_batch(images: Sequence[np.ndarray], kind: str, size_hw: tuple[int, int],
                 fingerprints: Sequence[np.ndarray | None] | None = None) -> "torch.Tensor":
    """:func:`expert_view` of each image (HxWx3 uint8), the whole image mapped onto the mask frame
    ``size_hw`` = (h, w) by nearest-neighbour sampling -> B x K x h x w float32 tensor.
    ``fingerprints``: one per image for "prnu" (None, or a None entry: unknown, zeros)."""
    import cv2
    import torch

    h, w = int(size_hw[0]), int(size_hw[1])
    k = expert_channels(kind)
    out = np.zeros((len(images), k, h, w), np.float32)
    if fingerprints is not None and len(fingerprints) != len(images):
        raise ValueError(f"{len(fingerprints)} fingerprints for {len(images)} images")
    for i, image in enumerate(images):
        view = expert_view(image, kind, fingerprints[i] if fingerprints is not None else None)
        for c in range(k):
            out[i, c] = cv2.resize(view[..., c], (w, h), interpolation=cv2.INTER_NEAREST)
    return torch.from_numpy(out)
