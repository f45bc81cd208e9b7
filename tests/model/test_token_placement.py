"""Inference puts `<cls>` and `<mask_i>` exactly where the shard builder put them in training."""

from __future__ import annotations

import numpy as np
import pytest

from forgery_synth.dataset import conversations as conv
from trainer.model.answer_text import (
    place_forensic_tokens,
    strip_forensic_tokens,
    text_verdict,
)


def _answers() -> list[tuple[str, str, str]]:
    """(template, label, answer) for every template, language and label the builder writes."""
    mask = np.zeros((60, 80), np.uint8)
    mask[10:30, 20:50] = 255
    log = {"method": "copy-move", "mask_area": 0.12,
           "ops": [{"op": "copy-move", "angle": 12.5, "scale": 0.9, "flip": True, "blend": "poisson"},
                   {"op": "jpeg", "scope": "global", "quality": 85}]}
    out = []
    for lang in conv.LANGS:
        for label in ("fake", "real"):
            out.append(("json", label, conv.json_answer(label, [[1, 2, 30, 4, 5, 40]] if label == "fake" else [])))
            out.append(("explain", label, conv.explain_answer(label, log, mask if label == "fake" else mask * 0, 1, lang)))
            out.append(("conclusion", label, conv.conclusion_answer(label, lang)))
        for side in ("left", "right"):
            for label in ("fake", "real"):
                out.append(("pair", label, conv.pair_answer(label, side, log, mask if label == "fake" else mask * 0, lang)))
    return out


@pytest.mark.parametrize("template, label, answer", _answers())
def test_training_answers_round_trip(template, label, answer):
    placed = place_forensic_tokens(strip_forensic_tokens(answer))
    if template == "conclusion":  # no mask tokens in training; inference appends them after <cls>
        assert placed.startswith(answer)
    else:
        assert placed == answer
    assert text_verdict(answer) == label
