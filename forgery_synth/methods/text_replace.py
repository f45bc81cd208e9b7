"""Text replace: characters of a field (or of a scanned text line) replaced by others.

The paper under the old glyphs is restored (`text_edit.restore`: inpainted, regrained), then the
new characters are printed in the field's font, matched size and colour, blurred as the page
was. On a layout field the old and new text are known and logged, and the new text is a valid value
of the field (`documents.field_values`: a date that exists in the field's format, a name or company
from faker, digits where digits stood); a change of digits into digits keeps the rest of the field,
any other change prints the rest of the field again (letters differ in width). On a scan the old
text is unknown (""), and the new text is digits sized to the line."""

from __future__ import annotations

import numpy as np

from forgery_synth.documents.field_values import new_value
from forgery_synth.documents.fonts import load_font
from forgery_synth.methods.base import MethodOptions
from forgery_synth.methods.forgery import Forgery
from forgery_synth.methods.text_edit import (
    NoText,
    blur_of,
    clip_rect,
    draw_text,
    grain_of,
    place_log,
    places,
    rect_mask,
    restore,
)

NAME = "text-replace"
GROW = 1.15
"""New text may run this much wider than the old (plus a character); wider is printed smaller, as a
forger fits a longer name into the field."""


def _changed_span(old: str, new: str) -> tuple[int, int, int]:
    """(i, j_old, j_new): old[i:j_old] became new[i:j_new] (common prefix and suffix left out)."""
    i = 0
    while i < min(len(old), len(new)) and old[i] == new[i]:
        i += 1
    k = 0
    while k < min(len(old), len(new)) - i and old[-1 - k] == new[-1 - k]:
        k += 1
    return i, len(old) - k, len(new) - k


def _field_params(place: dict, rng: np.random.Generator, image: np.ndarray, blur: float, lang: str) -> dict | None:
    text, cells = place["text"], place["cells"]
    if len(cells) != len(text):
        return None
    new_text = new_value(place.get("key"), text, lang, rng)
    if new_text is None:
        return None
    i, j, j_new = _changed_span(text, new_text)
    digits_only = j - i == j_new - i and (text[i:j] + new_text[i:j_new]).isdigit()
    font = load_font(place["font"], place["font_size"])
    scale = (cells[-1][2] - cells[0][0]) / max(1.0, font.getlength(text))
    size = max(6, round(place["font_size"] * scale))
    drawn, end = new_text[i:j_new], j
    if not digits_only:  # letters and words differ in width: the rest of the field is printed again
        drawn, end = new_text[i:], len(text)
    x0 = cells[i][0] if i < len(cells) else cells[-1][2]
    old_width = cells[end - 1][2] - x0 if end > i else 0.0
    width = load_font(place["font"], size).getlength(drawn)
    room = old_width * GROW + size
    if width > room:
        size = max(6, int(size * room / width))
        width = load_font(place["font"], size).getlength(drawn)
    box = place["box"]
    right = max(cells[end - 1][2] if end > i else x0, x0 + width)
    rect = clip_rect([x0 - 1, box[1], right + 2, box[3]], image.shape)
    cell = cells[min(i, len(cells) - 1)]
    origin = [round(float(x0), 2), round(float(place["origin"][1] + cell[1] - cells[0][1]), 2)]
    return {"rect": rect, "old_text": text, "new_text": new_text, "span": [i, j],
            "old_chars": text[i:j], "new_chars": new_text[i:j_new],
            "draw": {"text": drawn, "origin": origin, "font": place["font"], "size": size, "colour": place["colour"],
                     "blur": blur},
            "place": place_log(place, "digits" if digits_only else "field")}


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
    lang = (options.layout or {}).get("lang") or "en"
    order = rng.permutation(len(found))
    for k in order:
        place = found[int(k)]
        edit = (_field_params(place, rng, image, blur, lang) if source == "layout" else _line_params(place, rng, image, blur))
        if edit is not None:
            break
    else:
        raise NoText("text-replace: no field has a value to replace")
    return {"op": NAME, "places_from": source, **edit, "grain": grain_of(image, edit["rect"]),
            "grain_seed": int(rng.integers(2**31))}


def apply(image: np.ndarray, params: dict, donor: np.ndarray | None = None) -> Forgery:
    """Restore the paper in the rectangle, print the new characters; HxWx3 uint8 in, Forgery out."""
    rect = params["rect"]
    out = restore(image, rect, params["grain"], params["grain_seed"])
    d = params["draw"]
    out = draw_text(out, rect, d["text"], d["origin"], d["font"], d["size"], d["colour"], d["blur"])
    return Forgery(image=out, mask=rect_mask(rect, image.shape), op=params)
