"""Parsing a model's answer text: the JSON verdict and polygons, or the free-text verdict word."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

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
    Special tokens are removed before parsing. When the text is not valid JSON, the verdict is
    still read from the first standalone "fake"/"real"/"forged"/"authentic" word (English) or
    "伪造"/"篡改"/"真实" (Chinese), and polygons are not read.

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
    verdict: str | None = None
    polygons: list[list[tuple[float, float]]] = []
    if valid:
        verdict = _verdict_word(str(obj.get("result", "")))
        raw = obj.get("mask", [])
        if isinstance(raw, list):
            for poly in raw:
                pts = _polygon(poly)
                if pts:
                    polygons.append(pts)
    if verdict is None:
        verdict = _verdict_word(clean)
    return ParsedAnswer(json_valid=valid, verdict=verdict, polygons=polygons)


def _verdict_word(s: str) -> str | None:
    low = s.lower()
    m = re.search(r"\b(fake|forged|tampered|manipulated|real|authentic|genuine)\b", low)
    zh = re.search(r"(伪造|篡改|真实)", s)
    hits: list[tuple[int, str]] = []
    if m is not None:
        hits.append((m.start(), "real" if m.group(1) in ("real", "authentic", "genuine") else "fake"))
    if zh is not None:
        hits.append((zh.start(), "real" if zh.group(1) == "真实" else "fake"))
    if not hits:
        return None
    return min(hits)[1]


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
