"""The published anchors' evaluation conventions, each under its own field of ``metrics.json["conventions"]``.

The IMDL-BenCo figures (``pixel.f1``, ``pixel.iou``: "origin" mode, per forged image, averaged) are
defined in `trainer.evaluation.metrics`. The others, with where each definition was read:

``f1_double``, ``iou_double`` (IMDL-BenCo ``PixelF1`` / ``PixelIOU`` mode "double"; TruFor's
``max(f1, f1i)``)
    Per forged image with a non-empty mask, ``max(F1, F1 of the inverted binary map)``:
    with TP, FP, FN, TN at the threshold, the inverted map has TP' = FN, FP' = TN, FN' = TP, so
    ``F1' = 2 FN / (2 FN + TN + TP)`` and ``IoU' = FN / (FN + TN + TP)``; averaged over those images.
    Read in scu-zjz/IMDLBenCo ``IMDLBenCo/evaluation/F1.py`` (``torch.max(Cal_F1(TP, TN, FP, FN),
    Cal_F1(FN, FP, TN, TP))``) and ``IOU.py``, and grip-unina/TruFor ``TruFor_train_test/metrics.py``
    (``computeF1(TN, FN, TP, FP)``). IMDL-BenCo's inverted IoU thresholds ``1 - p > t`` (so a
    probability exactly at the threshold is positive in neither map); ours inverts the binary map.

``f1_border``, ``f1_border_double`` (TruFor, border-tolerant)
    grip-unina/TruFor ``metrics.py`` ``extractGTs(gt, erodeKernSize=15, dilateKernSize=11)``: forged
    pixels kept = ``minimum_filter(gt, 15)`` (the mask eroded by a 15x15 square), authentic pixels kept
    = ``not maximum_filter(gt, 11)`` (outside the mask dilated by 11x11); pixels in neither (a band
    around the mask edge) are ignored. As a band in pixels: **7 inside, 5 outside** (Chebyshev
    distance; ``forgery eval --border-band INNER,OUTER``, default ``7,5``; scipy's default 'reflect'
    border as TruFor's). ``f1_border`` = F1 on the kept pixels; ``f1_border_double`` = max with the
    inverted map = TruFor's fixed-threshold ``F1_th``. Images where no forged pixel survives the
    erosion are left out (``border_skipped``); TruFor's script gives them 0 or NaN.

``giou``, ``ciou`` (LISA, FakeShield, SIDA)
    dvlab-research/LISA ``train_ds.py`` ``validate``, copied in zhipeixu/FakeShield ``MFLM/test.py``
    and in SIDA's ``train_SIDA.py`` (read in the sayak2103/SIDA copy of the release): masks are
    ``logits > 0`` (probability > 0.5, as our threshold); per image ``I / U`` of the foreground class, with
    ``acc_iou[union == 0] += 1`` (empty ground truth and empty prediction score 1);
    ``gIoU`` = mean of the per-image IoU, ``cIoU`` = sum of I over sum of U. SIDA scores masks only on
    its "tampered" class (``if cls_labels[0] == 2``: real and fully synthetic images are out); FakeShield
    scores whatever its split's images are. ``giou`` / ``ciou``: forged images with a non-empty
    mask (SIDA's choice). ``giou_with_authentic`` / ``ciou_with_authentic``: authentic images added by
    LISA's rule (IoU 1 when nothing is predicted, else 0; they add 0 to I and their predicted pixels
    to U).

``f1_authentic_inverted``, ``f1_deepid`` (DeepID 2025 localisation track)
    Challenge rules (copied in ZeqinYu/ICCV-DeepID2025-Sunlight ``Background.md``): on a bona fide
    image the positives are the *authentic* pixels (tp = pixels predicted authentic, fn = pixels
    predicted forged), so ``F1 = 2 (N - P) / (2 (N - P) + P)`` with P predicted-forged pixels of N;
    on a forged image the usual forged-positive F1. Final = ``(mean over bona fide + mean over forged)
    / 2``. ``image_from_*["f1_weighted"]``: sklearn ``f1_score(average='weighted')`` (track 1).

``image_from_cls``, ``image_from_text``
    The image-level figures of `metrics.image_metrics` from the cls head's score alone (records with
    ``score_source == "cls"``) and from the answer's verdict alone (``fake`` = 1; unreadable
    verdicts are left out and counted, ``accuracy_unreadable_as_wrong`` counts them as errors).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

#: TruFor's band: ``minimum_filter(gt, 15)`` keeps forged pixels 8+ px inside, ``maximum_filter(gt, 11)``
#: authentic pixels 6+ px outside: (inner, outer) in pixels.
TRUFOR_BAND: tuple[int, int] = (7, 5)

#: One row per convention figure: (field, anchors reporting it, definition in a line).
CONVENTION_ROWS: tuple[tuple[str, str, str], ...] = (
    ("pixel.f1", "IMDL-BenCo (origin), IML-ViT", "per forged image F1, averaged"),
    ("pixel.iou", "IMDL-BenCo (origin)", "per forged image IoU, averaged"),
    ("conventions.f1_double", "IMDL-BenCo (double), TruFor", "per image max(F1, F1 of inverted map), averaged"),
    ("conventions.iou_double", "IMDL-BenCo (double)", "per image max(IoU, IoU of inverted map), averaged"),
    ("conventions.f1_border", "TruFor (band only)", "F1 with a band around the mask edge ignored"),
    ("conventions.f1_border_double", "TruFor (F1_th)", "band ignored and max with the inverted map"),
    ("conventions.giou", "LISA, FakeShield, SIDA", "mean per-image IoU over forged images"),
    ("conventions.ciou", "LISA, FakeShield, SIDA", "sum of intersections / sum of unions, forged images"),
    ("conventions.giou_with_authentic", "LISA rule", "authentic: IoU 1 if nothing predicted, else 0"),
    ("conventions.ciou_with_authentic", "LISA rule", "authentic images add their predicted pixels to U"),
    ("conventions.f1_authentic_inverted", "DeepID", "authentic image: F1 with authentic pixels positive"),
    ("conventions.f1_deepid", "DeepID (localisation)", "(mean F1 forged + mean inverted F1 authentic) / 2"),
    ("conventions.image_from_cls.balanced_accuracy", "TruFor (bACC)", "cls head score > threshold"),
    ("conventions.image_from_cls.accuracy", "SIDA (cls head)", "cls head score > threshold"),
    ("conventions.image_from_cls.f1_weighted", "DeepID (detection)", "sklearn weighted F1 of the cls verdict"),
    ("conventions.image_from_text.accuracy", "FakeShield (DTE-FDM answer)", "verdict word of the answer"),
)


@dataclass
class ConventionScores:
    """The convention figures of one image (scalars, JSON-able; None where undefined).

    Attributes:
        tp, fp, fn: pixel counts at the threshold (cIoU sums them); ``tp`` = intersection,
            ``tp + fp + fn`` = union.
        n_pixels: pixels in the image.
        f1_double, iou_double: max with the inverted map (non-empty masks only).
        f1_border, f1_border_double: TruFor's band ignored (None when nothing forged survives it).
        iou_lisa: per-image IoU with LISA's empty-on-empty = 1 rule (every image).
        f1_inverted: DeepID's authentic-image F1, authentic pixels positive (empty masks only).
    """

    tp: int
    fp: int
    fn: int
    n_pixels: int
    f1_double: float | None
    iou_double: float | None
    f1_border: float | None
    f1_border_double: float | None
    iou_lisa: float | None
    f1_inverted: float | None


def parse_band(text: str) -> tuple[int, int]:
    """``"7,5"`` -> (7, 5); ``"3"`` -> (3, 3).

    Raises:
        ValueError: not one or two integers >= 0.
    """
    parts = [p.strip() for p in text.split(",")]
    try:
        vals = [int(p) for p in parts]
    except ValueError:
        vals = []
    if len(vals) not in (1, 2) or min(vals) < 0:
        raise ValueError(f"--border-band wants INNER,OUTER pixels (integers >= 0), got {text!r}")
    return (vals[0], vals[-1])


def border_regions(gt: np.ndarray, band: tuple[int, int] = TRUFOR_BAND) -> tuple[np.ndarray, np.ndarray]:
    """TruFor's kept pixels: (forged core, authentic far field), both HxW bool.

    Args:
        gt: HxW bool ground truth.
        band: (inner, outer) band in pixels; 0 keeps that side whole.
    """
    from scipy.ndimage import maximum_filter, minimum_filter

    inner, outer = band
    core = minimum_filter(gt, size=2 * inner + 1) if inner else gt
    far = ~maximum_filter(gt, size=2 * outer + 1) if outer else ~gt
    return core, far


def convention_scores(pos: np.ndarray, gt: np.ndarray, band: tuple[int, int] = TRUFOR_BAND) -> ConventionScores:
    """The convention figures of one image.

    Args:
        pos: HxW bool, predicted forged (probability > threshold).
        gt: HxW bool ground truth (True = forged), same shape.
        band: TruFor's band (inner, outer) in pixels.
    """
    n = int(pos.size)
    n_pos = int(np.count_nonzero(pos))
    n_gt = int(np.count_nonzero(gt))
    if n_gt == 0:
        inv = 2 * (n - n_pos) / (2 * (n - n_pos) + n_pos) if n else None
        return ConventionScores(0, n_pos, 0, n, None, None, None, None, 1.0 if n_pos == 0 else 0.0, inv)
    tp = int(np.count_nonzero(pos & gt))
    fp, fn = n_pos - tp, n_gt - tp
    tn = n - tp - fp - fn
    f1, f1_inv = 2 * tp / (2 * tp + fp + fn), 2 * fn / (2 * fn + tn + tp)
    iou, iou_inv = tp / (tp + fp + fn), fn / (fn + tn + tp)
    core, far = border_regions(gt, band)
    n_core = int(np.count_nonzero(core))
    f1_b = f1_bd = None
    if n_core:
        tp_b = int(np.count_nonzero(pos & core))
        fn_b = n_core - tp_b
        fp_b = int(np.count_nonzero(pos & far))
        tn_b = int(np.count_nonzero(far)) - fp_b
        f1_b = 2 * tp_b / (2 * tp_b + fp_b + fn_b)
        f1_bd = max(f1_b, 2 * fn_b / (2 * fn_b + tn_b + tp_b))
    return ConventionScores(tp, fp, fn, n, max(f1, f1_inv), max(iou, iou_inv), f1_b, f1_bd, iou, None)


def _mean(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


def _ciou(items: Sequence[ConventionScores]) -> float | None:
    union = sum(c.tp + c.fp + c.fn for c in items)
    return sum(c.tp for c in items) / union if union else None


def pixel_conventions(forged: Sequence[ConventionScores], authentic: Sequence[ConventionScores],
                      band: tuple[int, int] = TRUFOR_BAND) -> dict[str, Any]:
    """Aggregate the per-image figures (sums and means of scalars: the masks are long gone).

    Args:
        forged: forged images with a non-empty mask and a predicted mask.
        authentic: authentic images with a predicted mask.
        band: the band used, reported beside the figures.

    Returns:
        The pixel fields of ``metrics.json["conventions"]`` (module docstring), ``undefined`` reasons.
    """
    undefined: dict[str, str] = {}
    out: dict[str, Any] = {"n_forged": len(forged), "n_authentic": len(authentic),
                           "border_band_px": {"inner": band[0], "outer": band[1]}}
    out["f1_double"] = _mean([c.f1_double for c in forged])
    out["iou_double"] = _mean([c.iou_double for c in forged])
    out["f1_border"] = _mean([c.f1_border for c in forged])
    out["f1_border_double"] = _mean([c.f1_border_double for c in forged])
    out["n_border"] = sum(1 for c in forged if c.f1_border is not None)
    out["border_skipped"] = len(forged) - out["n_border"]
    out["giou"] = _mean([c.iou_lisa for c in forged])
    out["ciou"] = _ciou(forged)
    both = list(forged) + list(authentic)
    out["giou_with_authentic"] = _mean([c.iou_lisa for c in both])
    out["ciou_with_authentic"] = _ciou(both)
    out["f1_authentic_inverted"] = _mean([c.f1_inverted for c in authentic])
    f1_forged = _mean([2 * c.tp / (2 * c.tp + c.fp + c.fn) for c in forged])
    out["f1_deepid"] = (None if f1_forged is None or out["f1_authentic_inverted"] is None
                        else (f1_forged + out["f1_authentic_inverted"]) / 2)
    if not forged:
        for k in ("f1_double", "iou_double", "f1_border", "f1_border_double", "giou", "ciou", "f1_deepid"):
            undefined[k] = "no forged image with a mask and a predicted mask"
    elif out["f1_border"] is None:
        undefined["f1_border"] = undefined["f1_border_double"] = "no forged pixel survives the border band"
    if not authentic:
        undefined["f1_authentic_inverted"] = "no authentic image with a predicted mask"
        undefined.setdefault("f1_deepid", "needs forged and authentic images")
    if not both:
        undefined["giou_with_authentic"] = undefined["ciou_with_authentic"] = "no image with a predicted mask"
    elif out["ciou_with_authentic"] is None:
        undefined["ciou_with_authentic"] = "no forged pixel and no predicted pixel (empty union)"
    out["undefined"] = undefined
    return out


def text_image_scores(labels: Sequence[int], verdicts: Sequence[str | None]) -> tuple[list[int], list[float], int]:
    """Labels and 0/1 scores of the readable verdicts ("fake" = 1.0), and how many were unreadable."""
    keep = [(y, 1.0 if v == "fake" else 0.0) for y, v in zip(labels, verdicts) if v in ("fake", "real")]
    return [y for y, _ in keep], [s for _, s in keep], len(labels) - len(keep)


def f1_weighted(labels: Sequence[int], predicted: Sequence[int]) -> float | None:
    """sklearn ``f1_score(average='weighted')`` (DeepID's detection F1; symmetric in the labels)."""
    if not labels:
        return None
    from sklearn.metrics import f1_score

    return float(f1_score(np.asarray(labels), np.asarray(predicted), average="weighted", zero_division=0))
