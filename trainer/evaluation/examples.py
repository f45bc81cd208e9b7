"""The example images a report shows: the best and worst predictions per method, kept while streaming."""

from __future__ import annotations

import heapq
import re
from dataclasses import dataclass

import numpy as np
from PIL import Image

from trainer.evaluation.metrics import EvalRecord


@dataclass
class Example:
    """A thumbnail triple kept for the report: image, ground truth and predicted mask."""

    record: EvalRecord
    image: np.ndarray
    gt: np.ndarray | None
    pred: np.ndarray | None


class ExampleKeeper:
    """Keeps the ``k`` best and ``k`` worst images with thumbnails: forged images by pixel F1,
    authentic ones by the share of pixels left unflagged; a wrong image verdict (a missed forgery, a
    false alarm) drops an image below every right one."""

    THUMB = 256

    def __init__(self, k: int, threshold: float = 0.5) -> None:
        """Keep up to ``k`` examples in each list; `threshold` decides which verdicts were wrong."""
        self.k = k
        self.threshold = threshold
        self._best: list[tuple[float, int, Example]] = []
        self._worst: list[tuple[float, int, Example]] = []
        self._n = 0

    def offer(self, rec: EvalRecord, image: np.ndarray, gt: np.ndarray | None, pred: np.ndarray | None) -> None:
        """Consider one evaluated image (arrays at the image's resolution)."""
        if self.k <= 0 or rec.pixel is None:
            return
        called_fake = rec.score is not None and rec.score > self.threshold
        if rec.label == 1 and rec.pixel.f1 is not None:
            quality = rec.pixel.f1 - (0.0 if called_fake or rec.score is None else 1.0)  # a missed forgery ranks low
        elif rec.label == 0:
            quality = (1.0 - rec.pixel.predicted_area) - (1.0 if called_fake else 0.0)  # a false alarm ranks lowest
        else:
            return
        self._n += 1
        need_best = len(self._best) < self.k or quality > self._best[0][0]
        need_worst = len(self._worst) < self.k or -quality > self._worst[0][0]
        if not (need_best or need_worst):
            return
        ex = self._thumb(rec, image, gt, pred)
        if need_best and rec.label == 1:
            heapq.heappush(self._best, (quality, self._n, ex))
            if len(self._best) > self.k:
                heapq.heappop(self._best)
        if need_worst:
            heapq.heappush(self._worst, (-quality, self._n, ex))
            if len(self._worst) > self.k:
                heapq.heappop(self._worst)

    def _thumb(self, rec: EvalRecord, image: np.ndarray, gt: np.ndarray | None, pred: np.ndarray | None) -> Example:
        h, w = image.shape[:2]
        f = min(1.0, self.THUMB / max(h, w))
        size = (max(1, round(w * f)), max(1, round(h * f)))

        def rs(a: np.ndarray, mode: Image.Resampling) -> np.ndarray:
            return np.asarray(Image.fromarray(a).resize(size, mode))

        img = rs(image, Image.Resampling.BILINEAR)
        g = rs((gt.astype(np.uint8) * 255), Image.Resampling.NEAREST) > 127 if gt is not None else None
        p = rs((np.clip(pred, 0, 1) * 255).astype(np.uint8), Image.Resampling.BILINEAR).astype(np.float32) / 255 \
            if pred is not None else None
        return Example(record=rec, image=img, gt=g, pred=p)

    @property
    def best(self) -> list[Example]:
        """Best first."""
        return [e for _, _, e in sorted(self._best, key=lambda t: (-t[0], t[1]))]

    @property
    def worst(self) -> list[Example]:
        """Worst first."""
        return [e for _, _, e in sorted(self._worst, key=lambda t: (-t[0], t[1]))]


def _safe_name(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", s)[:120] or "image"
