"""Text splice: something from another document pasted in: a red round seal stamp (rendered, as
a forger's scanned stamp is), or a text line of the donor page over a field or line of this one
(the paper under the old text restored first, the donor's line scaled to the line height).

A donor without text lines gives a seal. The seal's text is a company name from `faker` in the
page's language; its ink texture, angle and size are logged, so the render replays exactly."""

from __future__ import annotations

import cv2
import numpy as np

from forgery_synth.documents.layouts import LOCALES
from forgery_synth.documents.seal import render_seal, stamp
from forgery_synth.documents.text_lines import detect_text_lines
from forgery_synth.methods.base import MethodOptions
from forgery_synth.methods.forgery import Forgery
from forgery_synth.methods.text_edit import clip_rect, grain_of, place_log, places, rect_mask, restore

NAME = "text-splice"
SEAL_SHARE = 0.4
"""The share of splices that press a seal when the donor has text lines too."""


def _seal(image: np.ndarray, rng: np.random.Generator, lang: str) -> dict:
    from faker import Faker

    h, w = image.shape[:2]
    diameter = int(min(h, w) * rng.uniform(0.18, 0.3))
    fake = Faker(LOCALES[lang])
    fake.seed_instance(int(rng.integers(2**31)))
    text = fake.company()[:16]
    x = int(rng.integers(0, max(1, w - diameter)))
    y = int(rng.integers(0, max(1, h - diameter)))
    return {"place": {"kind": "seal"}, "seal": {"text": text, "diameter": diameter, "x": x, "y": y,
                                               "ink_seed": int(rng.integers(2**31)),
                                               "angle": round(float(rng.uniform(-25, 25)), 2)},
            "old_text": "", "new_text": text}


def _line(image: np.ndarray, rng: np.random.Generator, found: list[dict], donor_lines: list[list[int]]) -> dict:
    target = found[int(rng.integers(len(found)))]
    tx0, ty0, tx1, ty1 = target["box"]
    dx0, dy0, dx1, dy1 = donor_lines[int(rng.integers(len(donor_lines)))]
    height = ty1 - ty0
    width = max(1, round((dx1 - dx0) * height / max(1, dy1 - dy0)))
    width = min(width, image.shape[1] - tx0)
    rect = clip_rect([tx0, ty0, max(tx1, tx0 + width), ty1], image.shape)
    return {"place": place_log(target), "donor_box": [dx0, dy0, dx1, dy1],
            "paste": [tx0, ty0, tx0 + width, ty0 + height], "rect": rect, "old_text": target["text"], "new_text": "",
            "grain": grain_of(image, rect), "grain_seed": int(rng.integers(2**31))}


def get_params(image: np.ndarray, rng: np.random.Generator, options: MethodOptions, donor: np.ndarray | None = None) -> dict:
    """Draw a seal, or a donor text line and the field (or line) it covers."""
    if donor is None:
        raise ValueError("text-splice needs a donor document (use --donors DIR)")
    lang = (options.layout or {}).get("lang") or str(rng.choice(sorted(LOCALES)))
    donor_lines = detect_text_lines(donor)
    found, source = places(image, options.layout)  # a page without text is rejected, as by the other text methods
    if not donor_lines or rng.random() < SEAL_SHARE:
        return {"op": NAME, "what": "seal", "places_from": source, **_seal(image, rng, lang)}
    return {"op": NAME, "what": "line", "places_from": source, **_line(image, rng, found, donor_lines)}


def apply(image: np.ndarray, params: dict, donor: np.ndarray | None = None) -> Forgery:
    """Press the seal, or restore the paper and paste the donor's line; HxWx3 uint8 in, Forgery out."""
    if params["what"] == "seal":
        s = params["seal"]
        colour, alpha = render_seal(s["text"], s["diameter"], s["ink_seed"], angle=s["angle"])
        out, footprint = stamp(image, colour, alpha, s["x"], s["y"])
        return Forgery(image=out, mask=footprint.astype(np.uint8) * 255, op=params)
    if donor is None:
        raise ValueError("text-splice of a line needs its donor document")
    rect = params["rect"]
    out = restore(image, rect, params["grain"], params["grain_seed"])
    dx0, dy0, dx1, dy1 = params["donor_box"]
    px0, py0, px1, py1 = params["paste"]
    piece = cv2.resize(np.ascontiguousarray(donor[dy0:dy1, dx0:dx1]), (px1 - px0, py1 - py0), interpolation=cv2.INTER_AREA)
    x0, y0, x1, y1 = rect
    cx1, cy1 = min(px1, x1), min(py1, y1)
    out[py0:cy1, px0:cx1] = piece[: cy1 - py0, : cx1 - px0]
    return Forgery(image=out, mask=rect_mask(rect, image.shape), op=params)
