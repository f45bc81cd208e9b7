"""Text copy-move: a digit copied from one place of the page onto another, over the digit that stood
there: the classic "one more 9" forgery of amounts and numbers (a date stays a date that exists). On
a layout page the copy goes from character cell to character cell of the same width, font and size,
so the old and new characters are known and logged; on a scan a piece of one text
line is copied onto another line of the same height (old and new text "")."""

from __future__ import annotations

import numpy as np

from forgery_synth.documents.field_values import DATE_KEYS, parse_date
from forgery_synth.methods.base import MethodOptions
from forgery_synth.methods.forgery import Forgery
from forgery_synth.methods.text_edit import NoText, char_class, clip_rect, place_log, places, rect_mask

NAME = "text-copy-move"
ATTEMPTS = 40


def _overlap(a: list[int], b: list[int]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _cells(found: list[dict]) -> list[tuple[int, int, str]]:
    return [(f, k, ch) for f, place in enumerate(found) if len(place["cells"]) == len(place["text"])
            for k, ch in enumerate(place["text"]) if char_class(ch) == "digit"]


def _field_edit(found: list[dict], rng: np.random.Generator, shape: tuple[int, ...]) -> dict | None:
    cells = _cells(found)
    if len(cells) < 2:
        return None
    for _ in range(ATTEMPTS):
        (fd, kd, chd), (fs, ks, chs) = (cells[int(i)] for i in rng.choice(len(cells), 2, replace=False))
        dst, src = found[fd], found[fs]
        if chd == chs or char_class(chd) != char_class(chs) or dst["font"] != src["font"]:
            continue
        if abs(dst["font_size"] - src["font_size"]) > 0.1 * src["font_size"]:
            continue
        sc, dc = src["cells"][ks], dst["cells"][kd]
        if abs((sc[2] - sc[0]) - (dc[2] - dc[0])) > 2:
            continue
        src_rect = clip_rect([sc[0], src["box"][1], sc[2], src["box"][3]], shape)
        dx, dy = dc[0] - sc[0], dc[1] - sc[1]
        dst_rect = [src_rect[0] + dx, src_rect[1] + dy, src_rect[2] + dx, src_rect[3] + dy]
        if dst_rect != clip_rect(dst_rect, shape) or _overlap(src_rect, dst_rect):
            continue
        text = dst["text"]
        new_field_text = text[:kd] + chs + text[kd + 1:]
        if dst.get("key") in DATE_KEYS and parse_date(new_field_text) is None:
            continue  # "2024年06月56日": no forger writes a date that does not exist
        kind = "digits"
        return {"src_rect": src_rect, "dst_rect": dst_rect, "old_text": chd, "new_text": chs,
                "field_text": text, "new_field_text": new_field_text,
                "source_place": place_log(src, kind), "place": place_log(dst, kind)}
    return None


def _line_edit(found: list[dict], rng: np.random.Generator, shape: tuple[int, ...]) -> dict | None:
    for _ in range(ATTEMPTS):
        src, dst = (found[int(i)] for i in rng.integers(len(found), size=2))
        sx0, sy0, sx1, sy1 = src["box"]
        dx0, dy0, dx1, dy1 = dst["box"]
        h = sy1 - sy0
        if abs(h - (dy1 - dy0)) > 2:
            continue
        width = int(min(sx1 - sx0, dx1 - dx0, max(4, h * rng.uniform(1, 3))))
        a = sx0 + int(rng.integers(0, sx1 - sx0 - width + 1))
        b = dx0 + int(rng.integers(0, dx1 - dx0 - width + 1))
        src_rect = [a, sy0, a + width, sy1]
        top = dy0 + ((dy1 - dy0) - h) // 2
        dst_rect = [b, top, b + width, top + h]
        if dst_rect != clip_rect(dst_rect, shape) or _overlap(src_rect, dst_rect):
            continue
        return {"src_rect": src_rect, "dst_rect": dst_rect, "old_text": "", "new_text": "", "field_text": "",
                "new_field_text": "", "source_place": place_log(src), "place": place_log(dst)}
    return None


def get_params(image: np.ndarray, rng: np.random.Generator, options: MethodOptions, donor: np.ndarray | None = None) -> dict:
    """Draw the source characters and where they land."""
    found, source = places(image, options.layout)
    edit = _field_edit(found, rng, image.shape) if source == "layout" else _line_edit(found, rng, image.shape)
    if edit is None:
        raise NoText(f"text-copy-move: no two characters (or line pieces) of one size to copy between ({source})")
    return {"op": NAME, "places_from": source, **edit}


def apply(image: np.ndarray, params: dict, donor: np.ndarray | None = None) -> Forgery:
    """Copy the source rectangle's pixels onto the destination; HxWx3 uint8 in, Forgery out."""
    sx0, sy0, sx1, sy1 = params["src_rect"]
    dx0, dy0, dx1, dy1 = params["dst_rect"]
    out = image.copy()
    out[dy0:dy1, dx0:dx1] = image[sy0:sy1, sx0:sx1]
    return Forgery(image=out, mask=rect_mask(params["dst_rect"], image.shape), op=params,
                   source_mask=rect_mask(params["src_rect"], image.shape))
