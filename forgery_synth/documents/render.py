"""A layout drawn into a page, then the print/scan look as a logged global chain.

`render_page(kind, lang, seed, portrait)` returns the final image and its layout record: every
field's box [x0, y0, x1, y1] (x1, y1 exclusive) in the final frame (after the perspective, grown by
the blur's reach, so it holds every pixel of the field's ink), names en/zh, text, font, size,
colour, plus the seed and the chain. The same arguments give the same bytes."""

from __future__ import annotations

import functools
import math

import cv2
import numpy as np
from PIL import Image, ImageDraw

from forgery_synth.documents.fonts import load_font
from forgery_synth.documents.layouts import LOCALES, NAMES, Page, build_page
from forgery_synth.documents.seal import render_seal, stamp

LAYOUT_FORMAT = "forgery-layout/1"


@functools.lru_cache(maxsize=2)
def _faker(locale: str):
    from faker import Faker

    return Faker(locale)


def draw_page(page: Page, portrait: np.ndarray | None) -> tuple[np.ndarray, list[dict]]:
    """The page in its own frame (HxWx3 uint8) and the fields with their drawn ink boxes."""
    w, h = page.size
    canvas = Image.new("RGB", (w, h), page.paper)
    draw = ImageDraw.Draw(canvas)
    tint = tuple(max(0, c - 18) for c in page.paper)
    for k in range(0, w + h, 22):  # a faint guilloche-like hatch, as security paper has
        draw.line([(k, 0), (k - h // 2, h)], fill=tint, width=1)
    for x0, y0, x1, y1 in page.lines:
        draw.line([(x0, y0), (x1, y1)], fill=(120, 120, 130), width=2)
    if page.portrait is not None and portrait is not None:
        x0, y0, x1, y1 = page.portrait
        canvas.paste(Image.fromarray(_fit(portrait, x1 - x0, y1 - y0)), (x0, y0))
    fields = []
    for t in page.texts:
        font = load_font(t.family, t.size)
        draw.text(t.xy, t.text, font=font, fill=t.colour, anchor=t.anchor)
        if t.field is None:
            continue
        bx0, by0, bx1, by1 = draw.textbbox(t.xy, t.text, font=font, anchor=t.anchor)
        ox = t.xy[0] - (font.getlength(t.text) / 2 if t.anchor[0] == "m" else 0)
        cells = [[ox + font.getlength(t.text[:k]), by0, ox + font.getlength(t.text[: k + 1]), by1] for k in range(len(t.text))]
        en, zh = NAMES[t.field]
        fields.append({"name": t.field, "en": en, "zh": zh, "text": t.text, "box": [bx0, by0, bx1, by1],
                       "font": t.family, "font_size": t.size, "colour": list(t.colour),
                       "origin": [float(ox), float(t.xy[1])], "cells": cells})
    image = np.asarray(canvas).copy()
    for s in page.seals:
        colour, alpha = render_seal(s["text"], s["diameter"], s["ink_seed"], angle=s["angle"])
        image, footprint = stamp(image, colour, alpha, s["x"], s["y"])
        ys, xs = np.nonzero(footprint)
        fields.append({"name": "seal", "en": "Seal", "zh": "印章", "text": s["text"],
                       "box": [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1],
                       "font": "hei", "font_size": 0, "colour": [int(c) for c in colour], "origin": [s["x"], s["y"]],
                       "cells": []})
    return image, fields


def _fit(photo: np.ndarray, w: int, h: int) -> np.ndarray:
    """Centre-crop `photo` (HxWx3 uint8) to the w:h aspect, upper part kept (a face), resized to wxh."""
    ph, pw = photo.shape[:2]
    if pw / ph > w / h:
        cw = int(ph * w / h)
        photo = photo[:, (pw - cw) // 2 : (pw - cw) // 2 + cw]
    else:
        ch = int(pw * h / w)
        photo = photo[: max(1, ch)]
    return cv2.resize(np.ascontiguousarray(photo), (w, h), interpolation=cv2.INTER_AREA)


def draw_chain(rng: np.random.Generator, size: tuple[int, int]) -> list[dict]:
    """The print/scan look of one page: a slight perspective (corners moved by up to 1.2% of the
    short side), a blur, scanner noise; each step logged with its parameters."""
    w, h = size
    jitter = 0.012 * min(w, h)
    corners = [[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]]
    moved = [[round(x + float(rng.uniform(-jitter, jitter)), 2), round(y + float(rng.uniform(-jitter, jitter)), 2)]
             for x, y in corners]
    return [{"op": "perspective", "scope": "global", "from": corners, "to": moved},
            {"op": "blur", "scope": "global", "sigma": round(float(rng.uniform(0.4, 1.0)), 3)},
            {"op": "noise", "scope": "global", "sigma": round(float(rng.uniform(2.0, 5.0)), 3),
             "seed": int(rng.integers(2**31))}]


def apply_chain(image: np.ndarray, fields: list[dict], chain: list[dict]) -> tuple[np.ndarray, list[dict]]:
    """Run the chain on `image` (HxWx3 uint8); the fields' boxes follow it into the final frame."""
    h, w = image.shape[:2]
    out = image
    for step in chain:
        if step["op"] == "perspective":
            m = cv2.getPerspectiveTransform(np.float32(step["from"]), np.float32(step["to"]))
            out = cv2.warpPerspective(out, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            fields = [{**f, "box": _warp_box(f["box"], m, w, h), "cells": [_warp_box(c, m, w, h, 0) for c in f["cells"]],
                       "origin": [round(float(v), 2) for v in cv2.perspectiveTransform(np.float32([[f["origin"]]]), m)[0, 0]]}
                      for f in fields]
        elif step["op"] == "blur":
            out = cv2.GaussianBlur(out, (0, 0), step["sigma"])
            reach = math.ceil(3 * step["sigma"])
            fields = [{**f, "box": _grow(f["box"], reach, w, h)} for f in fields]
        elif step["op"] == "noise":
            noise = np.random.default_rng(step["seed"]).normal(0, step["sigma"], out.shape)
            out = np.clip(np.rint(out + noise), 0, 255).astype(np.uint8)
    return out, fields


def _warp_box(box: list[float], m: np.ndarray, w: int, h: int, grow: int = 1) -> list[int]:
    x0, y0, x1, y1 = box
    pts = cv2.perspectiveTransform(np.float32([[[x0, y0], [x1, y0], [x1, y1], [x0, y1]]]), m)[0]
    if not grow:  # a character's cell: its advance, the horizontal middle of its corners
        return _grow([round((pts[0, 0] + pts[3, 0]) / 2), math.floor(pts[:, 1].min()),
                      round((pts[1, 0] + pts[2, 0]) / 2), math.ceil(pts[:, 1].max())], 0, w, h)
    return _grow([math.floor(pts[:, 0].min()), math.floor(pts[:, 1].min()),
                  math.ceil(pts[:, 0].max()), math.ceil(pts[:, 1].max())], grow, w, h)


def _grow(box: list[int], by: int, w: int, h: int) -> list[int]:
    x0, y0, x1, y1 = box
    return [max(0, int(x0) - by), max(0, int(y0) - by), min(w, int(x1) + by), min(h, int(y1) + by)]


def chain_blur(layout: dict | None) -> float:
    """The blur sigma of a layout's chain (what new ink must get to look printed alike); 0.7 without one."""
    for step in (layout or {}).get("chain", []):
        if step.get("op") == "blur":
            return float(step["sigma"])
    return 0.7


def render_page(kind: str, lang: str, seed: int, portrait: np.ndarray | None = None) -> tuple[np.ndarray, dict]:
    """One document: (HxWx3 uint8 RGB, its layout record without the file names)."""
    rng = np.random.default_rng(seed)
    fake = _faker(LOCALES[lang])
    fake.seed_instance(int(rng.integers(2**31)))
    page = build_page(kind, lang, rng, fake)
    image, fields = draw_page(page, portrait if page.portrait else None)
    chain = draw_chain(rng, page.size)
    image, fields = apply_chain(image, fields, chain)
    return image, {"format": LAYOUT_FORMAT, "kind": kind, "lang": lang, "seed": int(seed),
                   "size": [int(page.size[0]), int(page.size[1])], "fields": fields, "chain": chain}
