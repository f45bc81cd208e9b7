"""Parsing a model's answer text: the JSON verdict and polygons, or the free-text verdict word."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from forgery_synth.dataset.answer_tokens import text_verdict

_SPECIAL = re.compile(r"<cls>|<mask_\d+>|<\|[^|>]*\|>")


@dataclass
class ParsedAnswer:
    """What the answer text says.

    Attributes:
        json_valid: the text (special tokens removed) parses as a JSON object.
        verdict: "fake", "real" or None when unreadable.
        polygons: list of polygons, each a list of (x, y) float pairs in image pixels.
    """

    json_valid: bool
    verdict: str | None
    polygons: list[list[tuple[float, float]]]


def parse_answer(text: str) -> ParsedAnswer:
    """Read verdict and polygons from a model answer.

    The answer format is the ``json`` conversation template:
    ``{"result": "fake<cls>", "mask": [[x1, y1, x2, y2, ...], ...]<mask_1>...<mask_32>}``.
    Special tokens are removed before parsing. The verdict is read by the one verdict reader,
    `forgery_synth.dataset.answer_tokens.text_verdict` (the ``"result"`` field, else the word after
    the last "conclusion:"/"结论：", else the last verdict word), so eval, predict, validation and
    the heads' consistency check agree; polygons only from valid JSON.

    Args:
        text: the generated answer.

    Returns:
        The parsed answer.
    """
    clean = _SPECIAL.sub("", text).strip()
    obj: Any = None
    try:
        obj = json.loads(clean)
    except (json.JSONDecodeError, ValueError):
        m = re.search(r"\{.*\}", clean, flags=re.S)
        if m is not None:
            try:
                obj = json.loads(m.group(0))
            except (json.JSONDecodeError, ValueError):
                obj = None
    valid = isinstance(obj, dict)
    polygons: list[list[tuple[float, float]]] = []
    if valid:
        raw = obj.get("mask", [])
        if isinstance(raw, list):
            for poly in raw:
                pts = _polygon(poly)
                if pts:
                    polygons.append(pts)
    return ParsedAnswer(json_valid=valid, verdict=text_verdict(clean), polygons=polygons)


def _polygon(poly: Any) -> list[tuple[float, float]]:
    """A flat [x1, y1, x2, y2, ...] list or a [[x, y], ...] list -> list of points (>= 3)."""
    pts: list[tuple[float, float]] = []
    if not isinstance(poly, list):
        return pts
    try:
        if poly and all(isinstance(v, (int, float)) for v in poly):
            if len(poly) % 2:
                return []
            pts = [(float(poly[i]), float(poly[i + 1])) for i in range(0, len(poly), 2)]
        else:
            pts = [(float(p[0]), float(p[1])) for p in poly if isinstance(p, list) and len(p) == 2]
    except (TypeError, ValueError, IndexError):
        return []
    return pts if len(pts) >= 3 else []
