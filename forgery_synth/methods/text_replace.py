"""Text replace: characters of a field (or of a scanned text line) replaced by others.

The paper under the old glyphs is restored (`text_edit.restore`: inpainted, regrained), then the
new characters are printed in the field's font, matched size and colour, blurred as the page
was. On a layout field the old and new text are known and logged; on a scan the old text is
unknown (""), and the new text is digits sized to the line. A digit keeps to digits, a Chinese
character to Chinese characters, a letter to letters of its case (a letter's change redraws the
rest of the field, since letters differ in width)."""

from __future__ import annotations

import numpy as np

from forgery_synth.documents.fonts import load_font
from forgery_synth.methods.base import MethodOptions
from forgery_synth.methods.forgery import Forgery
from forgery_synth.methods.text_edit import (
    COMMON_CJK,
    NoText,
    blur_of,
    char_class,
    clip_rect,
    draw_text,
    grain_of,
    place_log,
    places,
    rect_mask,
    restore,
)

NAME = "text-replace"
POOLS = {"digit": "0123456789", "cjk": COMMON_CJK, "upper": "ABCDEFGHIJKLMNOPQRSTUVWXYZ",
         "lower": "abcdefghijklmnopqrstuvwxyz"}


def _other(ch: str, rng: np.random.Generator) -> str:
    pool = [c for c in POOLS[char_class(ch)] if c != ch]
    return pool[int(rng.integers(len(pool)))]


def _field_params(place: dict, rng: np.random.Generator, image: np.ndarray, blur: float) -> dict | None:
    text, cells = place["text"], place["cells"]
    if len(cells) != len(text):
        return None
    starts = [i for i, ch in enumerate(text) if char_class(ch) in POOLS]
    if not starts:
        return None
    i = starts[int(rng.integers(len(starts)))]
    cls = char_class(text[i])
    j = i + 1
    limit = i + int(rng.integers(1, 4))
    while j < min(limit, len(text)) and char_class(text[j]) == cls:
        j += 1
    new_chars = "".join(_other(ch, rng) for ch in text[i:j])
    font = load_font(place["font"], place["font_size"])
    scale = (cells[-1][2] - cells[0][0]) / max(1.0, font.getlength(text))
    size = max(6, round(place["font_size"] * scale))
    drawn, end = new_chars, j
    if cls in ("upper", "lower"):  # letters differ in width: the rest of the field is printed again
        drawn, end = new_chars + text[j:], len(text)
    x0 = cells[i][0]
    width = load_font(place["font"], size).getlength(drawn)
    box = place["box"]
    rect = clip_rect([x0 - 1, box[1], max(cells[end - 1][2], x0 + width) + 2, box[3]], image.shape)
    origin = [round(float(x0), 2), round(float(place["origin"][1] + cells[i][1] - cells[0][1]), 2)]
    return {"rect": rect, "old_text": text, "new_text": text[:i] + new_chars + text[j:], "span": [i, j],
            "old_chars": text[i:j], "new_chars": new_chars,
            "draw": {"text": drawn, "origin": origin, "font": place["font"], "size": size, "colour": place["colour"],
                     "blur": blur},
            "place": place_log(place, "digits" if cls == "digit" else "field")}


def _line_params(place: dict, rng: np.random.Generator, image: np.ndarray, blur: float) -> dict:
    x0, y0, x1, y1 = place["box"]
    h = y1 - y0
    width = int(min(x1 - x0, max(h, h * rng.uniform(2, 6))))
    start = x0 + int(rng.integers(0, max(1, x1 - x0 - width + 1)))
    size = place["font_size"]
    font = load_font("sans", size)
    digits = "".join(str(int(d)) for d in rng.integers(0, 10, max(1, int(width / (0.56 * size)))))
    while len(digits) > 1 and font.getlength(digits) > width - 2:
        digits = digits[:-1]
    _, top, _, bottom = font.getbbox(digits, anchor="la")
    origin = [float(start + 1), float(y0 + (h - (bottom - top)) / 2 - top)]
    return {"rect": clip_rect([start, y0 - 1, start + width, y1 + 1], image.shape), "old_text": "", "new_text": digits,
            "span": [0, 0], "old_chars": "", "new_chars": digits,
            "draw": {"text": digits, "origin": origin, "font": "sans", "size": size, "colour": place["colour"], "blur": blur},
            "place": place_log(place)}


def get_params(image: np.ndarray, rng: np.random.Generator, options: MethodOptions, donor: np.ndarray | None = None) -> dict:
    """Draw the place (a layout field, else a detected text line), the characters and their replacement."""
    found, source = places(image, options.layout)
    blur = blur_of(options.layout if source == "layout" else None)
    order = rng.permutation(len(found))
    for k in order:
        place = found[int(k)]
        edit = (_field_params(place, rng, image, blur) if source == "layout" else _line_params(place, rng, image, blur))
        if edit is not None:
            break
    else:
        raise NoText("text-replace: no field has letters or digits to replace")
    return {"op": NAME, "places_from": source, **edit, "grain": grain_of(image, edit["rect"]),
            "grain_seed": int(rng.integers(2**31))}


def apply(image: np.ndarray, params: dict, donor: np.ndarray | None = None) -> Forgery:
    """Restore the paper in the rectangle, print the new characters; HxWx3 uint8 in, Forgery out."""
    rect = params["rect"]
    out = restore(image, rect, params["grain"], params["grain_seed"])
    d = params["draw"]
    out = draw_text(out, rect, d["text"], d["origin"], d["font"], d["size"], d["colour"], d["blur"])
    return Forgery(image=out, mask=rect_mask(rect, image.shape), op=params)
