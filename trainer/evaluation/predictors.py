"""What evaluation asks of a detector: a Predictor gives a ModelOutput per image; ExternalPredictor reads another detector's saved maps."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence

import numpy as np

from trainer.evaluation.predictions import PredictionStore, load_probability_png
from trainer.evaluation.samples import EvalSample


@dataclass
class ModelOutput:
    """What a predictor says about one image.

    Attributes:
        score: image score in [0, 1] or None.
        mask: HxW float32 probabilities in [0, 1] (any size; resized to the image when needed) or None.
        text: the answer text, or None for detectors without text.
        score_source: "cls", "given" or "max_pixel".
        extra: anything to keep in predictions.jsonl (e.g. polygons).
    """

    score: float | None
    mask: np.ndarray | None
    text: str | None = None
    score_source: str = "cls"
    extra: dict[str, Any] = field(default_factory=dict)


class Predictor(Protocol):
    """Anything that turns a batch of samples (and their possibly perturbed pixels) into outputs.

    ``images[i]`` is HxWx3 uint8 RGB. The result has one entry per sample: a ``ModelOutput`` or a
    string (a per-file error message).
    """

    supports_perturbation: bool

    def __call__(self, samples: Sequence[EvalSample], images: Sequence[np.ndarray]) -> list[ModelOutput | str]: ...


class ExternalPredictor:
    """Predictions of another detector (see ``PredictionStore`` for the layouts)."""

    supports_perturbation = False

    def __init__(self, store: PredictionStore) -> None:
        """Wrap an indexed prediction store."""
        self.store = store

    def __call__(self, samples: Sequence[EvalSample], images: Sequence[np.ndarray]) -> list[ModelOutput | str]:
        """Look up each sample's mask and score; a missing prediction is a per-file error."""
        out: list[ModelOutput | str] = []
        for s in samples:
            p = self.store.get(s.id, s.ref)
            if p is None:
                out.append(f"no prediction for {s.id} in {self.store.path}")
                continue
            mask = None
            if p.mask_path is not None:
                try:
                    mask = load_probability_png(p.mask_path)
                except Exception as e:  # noqa: BLE001 - per-file error
                    out.append(f"cannot read predicted mask {p.mask_path}: {type(e).__name__}: {e}")
                    continue
            if p.score is not None:
                score, src = float(np.clip(p.score, 0.0, 1.0)), "given"
            elif mask is not None:
                score, src = float(mask.max()), "max_pixel"
            else:
                out.append(f"prediction for {s.id} has neither a score nor a mask")
                continue
            out.append(ModelOutput(score=score, mask=mask, text=None, score_source=src,
                                   extra={"pred_mask": str(p.mask_path) if p.mask_path else None}))
        return out
