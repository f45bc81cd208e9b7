"""Robustness perturbations applied to evaluation images (IMDL-BenCo's robustness protocol).

Option syntax: ``KIND:V1,V2,...``, e.g. ``jpeg:50,70,90 resize:0.5,0.75 blur:3 noise:5``.

Kinds and units:
    ``jpeg:Q``    re-encode as JPEG at quality Q (integer 1–100; OpenCV's encoder, 4:2:0 chroma
                  subsampling, as albumentations' ImageCompression that IMDL-BenCo uses).
    ``resize:F``  rescale both sides by factor F (> 0; area interpolation when shrinking,
                  bilinear when enlarging). The predicted mask is resized back to the original
                  size (bilinear on probabilities) and scored there.
    ``blur:K``    Gaussian blur with an odd kernel size K >= 3 pixels; sigma is OpenCV's default
                  for that kernel, ``0.3 * ((K - 1) * 0.5 - 1) + 0.8`` (IMDL-BenCo's GaussianBlur
                  levels are kernel sizes too).
    ``noise:S``   additive Gaussian noise with **standard deviation S in 0–255 pixel units**,
                  independent per pixel and channel, then rounded and clipped to 0–255.
                  IMDL-BenCo's noise levels (3–23) are *variances* (albumentations ``var_limit``):
                  its level V is our ``noise:sqrt(V)`` (e.g. V = 9 -> ``noise:3``); SAFIRE's levels
                  are standard deviations like ours.

Every perturbation is deterministic: the noise of sample i under seed s is drawn from
``numpy.random.default_rng([s, i])``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

UNITS: dict[str, str] = {
    "jpeg": "JPEG quality (1-100)",
    "resize": "scale factor of both sides",
    "blur": "Gaussian kernel size in pixels (odd)",
    "noise": "Gaussian noise standard deviation in 0-255 units (IMDL-BenCo variance V = std^2)",
}


@dataclass(frozen=True)
class Perturbation:
    """One degradation.

    Attributes:
        kind: "jpeg", "resize", "blur" or "noise".
        value: its level in the units of ``UNITS[kind]``.
    """

    kind: str
    value: float

    @property
    def name(self) -> str:
        """``kind:value`` as the user wrote it (integers without a decimal point)."""
        v = int(self.value) if float(self.value).is_integer() else self.value
        return f"{self.kind}:{v}"


def parse_perturbations(specs: list[str]) -> list[Perturbation]:
    """Parse ``["jpeg:50,70", "noise:5", ...]`` (items may also be space separated in one string).

    Raises:
        ValueError: unknown kind or a level out of range, with a message naming it.
    """
    out: list[Perturbation] = []
    for spec in [t for s in specs for t in s.split()]:
        if ":" not in spec:
            raise ValueError(f"perturbation {spec!r}: expected KIND:V1,V2 (kinds: {', '.join(UNITS)})")
        kind, vals = spec.split(":", 1)
        kind = kind.strip().lower()
        if kind not in UNITS:
            raise ValueError(f"perturbation {spec!r}: unknown kind {kind!r} (kinds: {', '.join(UNITS)})")
        for v in vals.split(","):
            try:
                x = float(v)
            except ValueError:
                raise ValueError(f"perturbation {spec!r}: {v!r} is not a number") from None
            _check(kind, x, spec)
            p = Perturbation(kind, x)
            if p not in out:
                out.append(p)
    return out


def _check(kind: str, x: float, spec: str) -> None:
    if not math.isfinite(x):
        raise ValueError(f"perturbation {spec!r}: level must be finite")
    if kind == "jpeg" and not (1 <= x <= 100 and x.is_integer()):
        raise ValueError(f"perturbation {spec!r}: JPEG quality must be an integer 1-100")
    if kind == "resize" and not (0 < x <= 8):
        raise ValueError(f"perturbation {spec!r}: resize factor must be in (0, 8]")
    if kind == "blur" and not (x >= 3 and x.is_integer() and int(x) % 2 == 1):
        raise ValueError(f"perturbation {spec!r}: blur kernel size must be an odd integer >= 3")
    if kind == "noise" and not (0 <= x <= 255):
        raise ValueError(f"perturbation {spec!r}: noise standard deviation must be in 0-255")


def apply_perturbation(image: np.ndarray, p: Perturbation, seed: int = 0, index: int = 0) -> np.ndarray:
    """Degrade one image.

    Args:
        image: HxWx3 uint8 RGB.
        p: the perturbation.
        seed: run seed; index: the sample's position (both seed the noise).

    Returns:
        H'xW'x3 uint8 RGB (H', W' differ from H, W only for ``resize``; at least 1 pixel each).
    """
    if p.kind == "jpeg":
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(p.value)])
        if not ok:
            raise RuntimeError("OpenCV failed to encode JPEG")
        return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    if p.kind == "resize":
        h, w = image.shape[:2]
        nh, nw = max(1, round(h * p.value)), max(1, round(w * p.value))
        interp = cv2.INTER_AREA if p.value < 1 else cv2.INTER_LINEAR
        return cv2.resize(image, (nw, nh), interpolation=interp)
    if p.kind == "blur":
        k = int(p.value)
        return cv2.GaussianBlur(image, (k, k), 0)
    if p.kind == "noise":
        rng = np.random.default_rng([seed, index])
        noisy = image.astype(np.float32) + rng.normal(0.0, p.value, image.shape).astype(np.float32)
        return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
    raise ValueError(f"unknown perturbation kind {p.kind!r}")


def resize_probabilities(prob: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of an HxW float32 probability map to ``height`` x ``width`` (values stay in [0, 1])."""
    if prob.shape == (height, width):
        return prob
    out = cv2.resize(prob.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    return np.clip(out, 0.0, 1.0)
