"""Bootstrap intervals for the headline figures, and the words a small or collapsed test set needs.

A test split of 12 images gives an AUC whose 95% interval spans most of [0, 1]; the report says so
instead of printing four decimals. Intervals are percentile bootstraps over images (resampled with
replacement, each class resampled apart so both stay present), seeded, so a report is reproducible.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

SMALL_SAMPLE = 30
"""Fewer images than this in a class: the report warns that its figures are noisy."""
MIN_N = 5
"""Fewer images than this behind a figure (a method's row, a class): the figure is not shown."""
RESAMPLES = 1000


def bootstrap_image_ci(labels: Sequence[int], scores: Sequence[float], threshold: float = 0.5,
                       resamples: int = RESAMPLES, seed: int = 0) -> dict[str, list[float] | None]:
    """95% intervals of image accuracy, balanced accuracy and AUC: ``{name: [lo, hi] or None}``."""
    from sklearn.metrics import roc_auc_score

    y = np.asarray(labels, int)
    s = np.asarray(scores, float)
    out: dict[str, list[float] | None] = {"accuracy": None, "balanced_accuracy": None, "auc": None}
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    if len(pos) == 0 or len(neg) == 0:
        return out
    rng = np.random.default_rng(seed)
    acc, bal, auc = [], [], []
    for _ in range(resamples):
        idx = np.concatenate([rng.choice(pos, len(pos)), rng.choice(neg, len(neg))])
        yy, ss = y[idx], s[idx]
        pred = ss > threshold
        acc.append(float((pred == (yy == 1)).mean()))
        bal.append(float((pred[yy == 1].mean() + (~pred[yy == 0]).mean()) / 2))
        auc.append(float(roc_auc_score(yy, ss)))
    for name, values in (("accuracy", acc), ("balanced_accuracy", bal), ("auc", auc)):
        out[name] = [round(float(np.percentile(values, 2.5)), 4), round(float(np.percentile(values, 97.5)), 4)]
    return out


def bootstrap_mean_ci(values: Sequence[float], resamples: int = RESAMPLES, seed: int = 0) -> list[float] | None:
    """95% interval of a mean of per-image values (e.g. pixel F1), or None for fewer than two."""
    v = np.asarray([x for x in values if x is not None], float)
    if v.size < 2:
        return None
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, (resamples, v.size))].mean(1)
    return [round(float(np.percentile(means, 2.5)), 4), round(float(np.percentile(means, 97.5)), 4)]


def paired_bootstrap_diff(labels: Sequence[int], a: Any, b: Any, statistic: Any, resamples: int = RESAMPLES,
                          seed: int = 0) -> list[float] | None:
    """95% interval of ``mean_s statistic(y, a[s]) - mean_s statistic(y, b[s])``, paired over seeds and images.

    ``labels``: N ints (1 forged); ``a``, ``b``: S x N floats (one row per seed, the same images in the
    same columns for both; NaN where a figure has no value). Each resample draws S seeds with
    replacement and the images with replacement, each class apart, and uses the same draw for both
    arms, so what the two have in common (the seed's data order, an image's difficulty) cancels.
    ``statistic(y, v) -> float`` (NaN when undefined; such resamples are left out). None when fewer
    than half the resamples give a value.
    """
    y = np.asarray(labels, int)
    A, B = np.atleast_2d(np.asarray(a, float)), np.atleast_2d(np.asarray(b, float))
    rng = np.random.default_rng(seed)
    classes = [np.flatnonzero(y == c) for c in (0, 1) if (y == c).any()]
    diffs = []
    for _ in range(resamples):
        rows = rng.integers(0, A.shape[0], A.shape[0])
        idx = np.concatenate([rng.choice(c, len(c)) for c in classes])
        d = np.mean([statistic(y[idx], A[r, idx]) - statistic(y[idx], B[r, idx]) for r in rows])
        if np.isfinite(d):
            diffs.append(d)
    if len(diffs) < resamples / 2:
        return None
    return [round(float(np.percentile(diffs, 2.5)), 4), round(float(np.percentile(diffs, 97.5)), 4)]


def collapse_words(image: dict[str, Any]) -> str | None:
    """In words, when every image got the same verdict although both classes are present."""
    n_fake, n_real = image.get("n_fake", 0), image.get("n_real", 0)
    if not n_fake or not n_real:
        return None
    tp, fp, tn, fn = (image.get(k, 0) for k in ("tp", "fp", "tn", "fn"))
    if tp + fp == n_fake + n_real:
        return (f"The model called every image forged (TP {tp}, FP {fp}, TN 0, FN 0): it has collapsed to one "
                f"class, and its false-alarm rate on the {n_real} authentic images is 1.0.")
    if tn + fn == n_fake + n_real:
        return (f"The model called every image authentic (TN {tn}, FN {fn}, TP 0, FP 0): it has collapsed to one "
                f"class and detects none of the {n_fake} forged images.")
    return None
