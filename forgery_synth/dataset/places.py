"""Answers that name the place: which part of a portrait (or a document) was forged, and what is wrong there.

Every portrait or document operation logs ``"place": {"kind": K}`` (and a document field's
``"field": {"en": ..., "zh": ...}``). `place_name` says the place in English or Chinese,
`place_sentences` what is wrong there, from the log (a catchlight's direction against the light the
face's shading showed) and from measurements of the sample itself (how soft the hairline's edge
is; the noise of any region is `evidence.measured_evidence`'s), never from parameters the pixels do not show.
"""

from __future__ import annotations

import cv2
import numpy as np


PLACE_NAMES: dict[str, dict[str, str]] = {
    "hairline": {"en": "the hairline", "zh": "发际线"},
    "eyes": {"en": "the pupils", "zh": "瞳孔"},
    "face": {"en": "the face", "zh": "面部"},
    "skin": {"en": "the skin of the {part}", "zh": "{part}的皮肤"},
    "field": {"en": "the {field} field", "zh": "{field}栏"},
    "digits": {"en": "the digits of the {field} field", "zh": "{field}栏的数字"},
    "seal": {"en": "the seal", "zh": "印章"},
    "text-line": {"en": "the text line of the {field} field", "zh": "{field}栏的文字行"},
}
"""How an answer names each place kind ({part}: a skin part; {field}: the op's logged field name)."""
UNNAMED = {"skin": {"en": "the skin of the face", "zh": "面部皮肤"}, "field": {"en": "a field", "zh": "某一栏"},
           "digits": {"en": "the digits", "zh": "数字"}, "text-line": {"en": "a line of text", "zh": "一行文字"}}
"""The names of the kinds whose part or field the op did not log."""
PARTS_ZH = {"forehead": "额头", "left cheek": "左脸颊", "right cheek": "右脸颊", "chin": "下巴", "face": "面部"}
SIDES_ZH = {"left": "左侧", "right": "右侧"}
DIRECTIONS_ZH = {"upper left": "左上方", "upper right": "右上方", "lower left": "左下方", "lower right": "右下方"}

METHOD_TEXT_PLACES: dict[str, dict[str, tuple[str, str]]] = {
    "hairline": {"en": ("the hairline softened or repainted", "an edge along the hairline softer than the rest of the portrait"),
                 "zh": ("被柔化或重绘的发际线", "发际线边缘比肖像其他部分更柔和")},
    "catchlight": {"en": ("the catchlights of the pupils edited", "pupil reflections that do not match the lighting of the face"),
                   "zh": ("被修改的瞳孔反光点", "瞳孔反光与面部光照不一致")},
    "face-swap": {"en": ("a face from another portrait swapped in", "a face whose tone, texture and edges do not belong to this photo"),
                  "zh": ("从另一张肖像换入的面部", "面部的色调、纹理和边缘不属于这张照片")},
    "skin-retouch": {"en": ("skin smoothed by retouching", "skin without the pores and fine lines of the face around it"),
                     "zh": ("被磨皮修饰的皮肤", "皮肤缺少周围面部的毛孔和细纹")},
}
"""(what was done, forensic basis) of the portrait methods, merged into `conversations.METHOD_TEXT`."""

SOFT_EDGE = 0.8
"""A hairline edge whose measured gradient ratio is below this is cited with its number."""


def place_name(op: dict, lang: str) -> str:
    """The place an op logged, in `lang` ("en"/"zh"); '' when it logged none."""
    kind = (op.get("place") or {}).get("kind")
    if kind not in PLACE_NAMES:
        return ""
    part = (op.get("place") or {}).get("part")
    field = op.get("field") or (op.get("place") or {}).get("field")
    if kind == "skin" and part:
        return PLACE_NAMES[kind][lang].format(part=PARTS_ZH.get(part, part) if lang == "zh" else part)
    if "{field}" in PLACE_NAMES[kind][lang]:
        name = field.get(lang) if isinstance(field, dict) else None
        return PLACE_NAMES[kind][lang].format(field=name) if name else UNNAMED[kind][lang]
    return PLACE_NAMES[kind][lang] if "{" not in PLACE_NAMES[kind][lang] else UNNAMED[kind][lang]


def edge_ratio(image: np.ndarray, mask: np.ndarray) -> float | None:
    """Mean gradient magnitude inside `mask` over that of a ring around it (image HxWx3 uint8,
    mask HxW); None when either is under 32 pixels."""
    inside = np.asarray(mask) > 0
    r = max(3, round(0.03 * min(inside.shape)))
    ring = (cv2.dilate(inside.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1,) * 2)) > 0) & ~inside
    if inside.sum() < 32 or ring.sum() < 32:
        return None
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    mag = cv2.magnitude(cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1))
    return float(mag[inside].mean()) / max(float(mag[ring].mean()), 1e-3)


def _sentence(op: dict, lang: str, ratio_of) -> str:
    kind = op["place"]["kind"]
    name = place_name(op, lang)
    zh = lang == "zh"
    if kind == "hairline":
        r = ratio_of(edge_ratio)
        if r is not None and r < SOFT_EDGE:
            return (f"{name}边缘有羽化异常：实测梯度只有周围的{r:.1f}倍" if zh
                    else f"a feathering anomaly on {name} edge: its measured gradient is {r:.1f}x that around it")
        return f"{name}一带被重绘，边缘与周围头发不符" if zh else f"{name} band is repainted, its edge unlike the hair around it"
    if kind == "eyes":
        light = op.get("light", "left")
        if op.get("action") == "remove" or op.get("direction") in (None, "none"):
            return (f"面部光线来自{SIDES_ZH.get(light, light)}，{name}中却没有反光点" if zh
                    else f"{name} show no catchlight although the face is lit from the {light}")
        d = op["direction"]
        return (f"{name}反光方向位于{DIRECTIONS_ZH.get(d, d)}，与来自{SIDES_ZH.get(light, light)}的光源方向矛盾" if zh
                else f"the reflection in {name} sits at the {d}, contradicting the light source on the {light}")
    if kind == "face":
        return (f"{name}（眉毛到下巴）来自另一张肖像，肤色和纹理在其轮廓处断开" if zh
                else f"{name} between the brows and the chin comes from another portrait: tone and texture break at its outline")
    if kind == "skin":  # how much smoother it measures is `evidence.measured_evidence`'s sentence
        return f"{name}被磨平，毛孔和细纹消失" if zh else f"{name} is smoothed, its pores and fine lines evened out"
    if kind == "seal":
        return f"{name}被改动，印迹的颜色和边缘与纸面不符" if zh else f"{name} was altered: its ink and edges do not sit on the paper like the rest"
    return (f"{name}被改动：笔画的纹理和边缘与文档其余部分不同" if zh
            else f"{name} was altered: its strokes differ in texture and edges from the rest of the document")


def place_sentences(log: dict, image: np.ndarray, mask: np.ndarray, lang: str) -> list[str]:
    """What is wrong where, one sentence per local op that logged a place (in `lang`). image: HxWx3
    uint8, mask: HxW (the sample's, in the same frame); measurements are cited only when the sample
    has a single local op, whose region the mask then is."""
    ops = [op for op in log.get("ops", []) if op.get("scope") != "global"]
    single = len(ops) == 1

    def ratio_of(measure):
        return measure(image, mask) if single else None

    return [_sentence(op, lang, ratio_of) for op in ops if (op.get("place") or {}).get("kind") in PLACE_NAMES]
