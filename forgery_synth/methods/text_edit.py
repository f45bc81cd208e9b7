"""What the four text methods share: where text stands, restoring the paper under it, new ink.

Places come from the source's layout sidecar (`MethodOptions.layout`: field boxes, character
cells, text, font, size, colour) or, on a user's own scan, from OpenCV text-line detection (the
text is then unknown and logged as ""). Every edit stays inside its rectangle, which is the mask.
"""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image, ImageDraw

from forgery_synth.documents.fonts import load_font
from forgery_synth.documents.render import chain_blur
from forgery_synth.documents.text_lines import detect_text_lines


class NoText(ValueError):
    """The source has no text to forge (no layout fields, no text lines found)."""


def places(image: np.ndarray, layout: dict | None) -> tuple[list[dict], str]:
    """The text places of a page, and where they came from ("layout" or "text-lines").

    A place: {"kind": "field"|"text-line", "box": [x0, y0, x1, y1], "text", "font", "font_size",
    "colour", "cells", "origin", "field": {"en", "zh"} and "key" (the layout's field key; fields only)}.
    Seals are left out."""
    if layout:
        found = [{"kind": "field", "box": f["box"], "text": f["text"], "font": f["font"], "font_size": f["font_size"],
                  "colour": f["colour"], "cells": f.get("cells", []), "origin": f.get("origin", f["box"][:2]),
                  "field": {"en": f["en"], "zh": f["zh"]}, "key": f.get("name")}
                 for f in layout["fields"] if f.get("name") != "seal" and f.get("text")]
        if found:
            return found, "layout"
    boxes = detect_text_lines(image)
    if not boxes:
        raise NoText("no text lines found: the text methods need a document page (a layout sidecar or visible text lines)")
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    lines = []
    for x0, y0, x1, y1 in boxes:
        crop = image[y0:y1, x0:x1].reshape(-1, 3)
        dark = grey[y0:y1, x0:x1].reshape(-1)
        colour = np.median(crop[dark <= np.percentile(dark, 10)], axis=0)
        lines.append({"kind": "text-line", "box": [x0, y0, x1, y1], "text": "", "font": "sans",
                      "font_size": max(6, int(0.9 * (y1 - y0))), "colour": [int(c) for c in colour], "cells": [],
                      "origin": [x0, y0]})
    return lines, "text-lines"


def blur_of(layout: dict | None) -> float:
    """The blur new ink gets: the layout chain's, or a scan's usual 0.7."""
    return round(chain_blur(layout), 3)


def clip_rect(rect: list[int], shape: tuple[int, ...]) -> list[int]:
    """`rect` [x0, y0, x1, y1] clipped to an image of `shape` (HxW...)."""
    h, w = shape[:2]
    x0, y0, x1, y1 = (int(round(v)) for v in rect)
    return [max(0, x0), max(0, y0), min(w, max(x0 + 1, x1)), min(h, max(y0 + 1, y1))]


def rect_mask(rect: list[int], shape: tuple[int, ...]) -> np.ndarray:
    """HxW uint8 {0, 255}: the rectangle."""
    mask = np.zeros(shape[:2], np.uint8)
    x0, y0, x1, y1 = rect
    mask[y0:y1, x0:x1] = 255
    return mask


def grain_of(image: np.ndarray, rect: list[int]) -> float:
    """The paper's noise around `rect`: the standard deviation of its non-ink pixels about a
    median-smoothed copy (0-255 scale), so restored paper is as grainy as the page."""
    x0, y0, x1, y1 = _pad(rect, 6, image.shape)
    crop = image[y0:y1, x0:x1].astype(np.float32)
    smooth = cv2.medianBlur(image[y0:y1, x0:x1], 5).astype(np.float32)
    ink = _ink(image[y0:y1, x0:x1])
    resid = (crop - smooth)[~ink]
    return round(float(np.clip(resid.std() if resid.size else 2.0, 0.5, 12.0)), 3)


def _pad(rect: list[int], by: int, shape: tuple[int, ...]) -> list[int]:
    return clip_rect([rect[0] - by, rect[1] - by, rect[2] + by, rect[3] + by], shape)


def _ink(crop: np.ndarray) -> np.ndarray:
    """HxW bool: ink in a crop (HxWx3 uint8): clearly darker than the crop's paper, grown by 2 px."""
    grey = cv2.cvtColor(np.ascontiguousarray(crop), cv2.COLOR_RGB2GRAY).astype(np.float32)
    paper = np.percentile(grey, 75)
    ink = (grey < paper - 25).astype(np.uint8)
    return cv2.dilate(ink, np.ones((5, 5), np.uint8)) > 0


def restore(image: np.ndarray, rect: list[int], grain: float, grain_seed: int) -> np.ndarray:
    """The page with the paper restored inside `rect` (HxWx3 uint8): the ink in and around it
    inpainted (Telea), smoothed, fresh grain of `grain` sigma added. Only `rect` changes."""
    x0, y0, x1, y1 = rect
    px0, py0, px1, py1 = _pad(rect, 8, image.shape)
    crop = np.ascontiguousarray(image[py0:py1, px0:px1])
    ink = _ink(crop).astype(np.uint8)
    ink[y0 - py0 : y1 - py0, x0 - px0 : x1 - px0] |= _ink(image[y0:y1, x0:x1]).astype(np.uint8)
    paper = cv2.inpaint(crop, ink, 3, cv2.INPAINT_TELEA)
    paper = cv2.medianBlur(paper, 5)[y0 - py0 : y1 - py0, x0 - px0 : x1 - px0].astype(np.float32)
    out = image.copy()
    out[y0:y1, x0:x1] = _grained(paper, grain, grain_seed)
    return out


def _grained(paper: np.ndarray, grain: float, seed: int) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0, grain, paper.shape)
    return np.clip(np.rint(paper + noise), 0, 255).astype(np.uint8)


def draw_text(image: np.ndarray, rect: list[int], text: str, origin: list[float], font: str, size: int,
              colour: list[int], blur: float) -> np.ndarray:
    """`text` drawn with its top-left origin at `origin` (anchor "la"), as printed ink: the glyphs'
    coverage blurred by `blur`, multiplied in `colour`. Only pixels inside `rect` change."""
    x0, y0, x1, y1 = rect
    cover = Image.new("L", (x1 - x0, y1 - y0), 0)
    ImageDraw.Draw(cover).text((origin[0] - x0, origin[1] - y0), text, font=load_font(font, size), fill=255, anchor="la")
    alpha = np.asarray(cover, np.float32) / 255.0
    if blur > 0:
        alpha = cv2.GaussianBlur(alpha, (0, 0), blur)
    alpha = alpha[..., None]
    crop = image[y0:y1, x0:x1].astype(np.float32)
    ink = np.array(colour, np.float32)
    out = image.copy()
    out[y0:y1, x0:x1] = np.clip(np.rint(crop * (1 - alpha) + np.minimum(crop, ink) * alpha), 0, 255).astype(np.uint8)
    return out


def place_log(place: dict, kind: str | None = None) -> dict:
    """The `place` entry of an op log: {"kind": K} and, for a field, its English and Chinese names."""
    out = {"kind": kind or place["kind"]}
    if "field" in place:
        out["field"] = dict(place["field"])
    return out


def char_class(ch: str) -> str:
    """digit, cjk, upper, lower or other: replacements keep the class (and so the width)."""
    if ch.isdigit():
        return "digit"
    if "\u4e00" <= ch <= "\u9fff":
        return "cjk"
    if ch.isalpha():
        return "upper" if ch.isupper() else "lower"
    return "other"


COMMON_CJK = "的一是在人有我他这中大来上国个到说们为子和你地出道也时年得就那要下以生会自着去之过家学对可里后小么心多天而能好都然没日于起还发成事只作当想看文无开手十用主行方又如前所本见经头面公同三已老从动两长知民样现分将外但身些与高意进把法此实回二理美点月明其种声全工己话儿者向情部正名定女问力机给等几很业最间新什打便位因重被走电四第门相次东政海口使教西再平真听世气信北少关并内加化由却代军产入先山五太水万市眼体别处总才场师书比住员九笑性通目华报立马命张活难神数件安表原车白应路期叫死常提感金何更反合放做系计或司利受光王果亲界及今京务制解各任至清物台象记边共风战干接它许八特觉望直服毛林题建南度统色字请交爱让认算论百吃义科怎元社术结六功指思非流每青管夫连远资队跟带花快条院变联言权往展该领传近留红治决周保达办运武半候七必城父强步完革深区即求品士转量空甚众技轻程告江语英基派满式李息写呢识极令黄德收脸钱党倒未持取设始版双历越史商千片容研像找友孩站广改议形委早房音火际则首单据导影失拿网香似斯专石若兵弟谁校读志飞观争究包组造落视济喜离虽坏兴易"
