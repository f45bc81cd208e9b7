"""Other detectors' saved predictions (probability maps and scores) matched to evaluation samples."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from trainer.evaluation.readers import _resolve


@dataclass
class ExternalPrediction:
    """One prediction of another detector.

    Attributes:
        score: image score in [0, 1], or None when not given.
        mask_path: a grayscale PNG of probabilities (0–255 = 0–1), or None.
    """

    score: float | None
    mask_path: Path | None


class PredictionStore:
    """Predictions made by another detector, looked up by image name.

    Two layouts:
      * a folder of mask PNGs named like the images (``<stem>.png``; ``<stem>.mask.png``,
        ``<stem>_mask.png``, ``<stem>_pred.png`` are accepted too) with an optional
        ``scores.csv`` (header ``image,score``; ``image`` is a file name, stem or path);
      * a JSONL file of ``{"image", "score", "mask"}`` (``mask`` a PNG path relative to the
        JSONL's folder, or null; ``score`` may be null or absent).

    Lookup is by image stem (case-sensitive), falling back to the lower-cased stem.
    """

    _SUFFIXES = (".mask", "_mask", "_pred", "_prediction", "-mask", "-pred")

    def __init__(self, path: Path) -> None:
        """Index the predictions under ``path``.

        Raises:
            ValueError: when ``path`` is neither a folder nor a JSONL file, or a JSONL line or
                scores.csv row is malformed.
        """
        self.path = path
        self.entries: dict[str, ExternalPrediction] = {}
        if path.is_dir():
            for p in sorted(path.iterdir()):
                if p.suffix.lower() != ".png" or not p.is_file():
                    continue
                stem = p.stem
                for suf in self._SUFFIXES:
                    if stem.endswith(suf):
                        stem = stem[: -len(suf)]
                        break
                self.entries.setdefault(stem, ExternalPrediction(None, p))
            csv_path = path / "scores.csv"
            if csv_path.is_file():
                with open(csv_path, newline="", encoding="utf-8") as f:
                    for n, row in enumerate(csv.DictReader(f), 2):
                        try:
                            stem = Path(row["image"]).stem
                            score = float(row["score"])
                        except (KeyError, TypeError, ValueError) as e:
                            raise ValueError(f"{csv_path}:{n}: expected columns image,score ({e})") from e
                        prev = self.entries.get(stem, ExternalPrediction(None, None))
                        self.entries[stem] = ExternalPrediction(score, prev.mask_path)
        elif path.is_file() and path.suffix in (".jsonl", ".ndjson"):
            with open(path, encoding="utf-8") as f:
                for n, line in enumerate(f, 1):
                    if not line.strip():
                        continue
                    try:
                        row = json.loads(line)
                        stem = Path(row["image"]).stem
                        score = None if row.get("score") is None else float(row["score"])
                        mask = None if not row.get("mask") else _resolve(row["mask"], path.parent)
                    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
                        raise ValueError(f"{path}:{n}: expected {{\"image\", \"score\", \"mask\"}} ({e})") from e
                    self.entries[stem] = ExternalPrediction(score, mask)
        else:
            raise ValueError(f"{path}: predictions must be a folder of mask PNGs or a .jsonl file")
        self._lower = {k.lower(): v for k, v in self.entries.items()}

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, sample_id: str, ref: str = "") -> ExternalPrediction | None:
        """The prediction for a sample (by id, then by the stem of its image path), or None."""
        for k in (sample_id, Path(ref.split(":")[-1]).stem if ref else ""):
            if not k:
                continue
            if k in self.entries:
                return self.entries[k]
            if k.lower() in self._lower:
                return self._lower[k.lower()]
        return None


def load_probability_png(path: Path) -> np.ndarray:
    """A grayscale probability PNG as HxW float32 in [0, 1] (level / 255; 16-bit: / 65535).

    RGB PNGs are averaged over channels.
    """
    with Image.open(path) as im:
        im.load()
        if im.mode in ("I;16", "I;16B", "I"):
            return (np.asarray(im, dtype=np.float64) / 65535.0).astype(np.float32)
        if im.mode not in ("L", "RGB"):
            im = im.convert("RGB")
        a = np.asarray(im, dtype=np.float32)
    if a.ndim == 3:
        a = a.mean(axis=2)
    return a / 255.0
