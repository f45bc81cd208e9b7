"""Training conversations: prompts (zh/en, several paraphrases), answer texts built from the
operation log, and the conversion to Qwen2.5-VL's structured chat messages.

Special tokens stand at fixed places in every answer (`answer_tokens`, which inference shares):
- ``<cls>`` exactly once, where the cls position says: right after the verdict word
  (``after-verdict``: ``fake``/``real``, ``伪造``/``真实``; the builders below write this form) or
  first in the answer (``before-verdict``: `place_cls` moves it; `build-shards --cls-position`);
- ``<mask_1>…<mask_32>``, contiguous and in order, in every template but ``conclusion`` (the
  verdict alone carries ``<cls>`` only). The builders below write them directly after the region
  (the polygon list in ``json``, the region description in ``explain`` and ``pair``: the notes'
  ``after-region`` place); `place_tokens` moves them before the answer (``before-answer``, the
  default of `build-shards --mask-position`).
Authentic images keep every token: ``"real<cls>"``, an empty polygon list, then the mask tokens.

A ``pair`` sample is one picture holding a sample and the photo it was made from side by side (order
drawn per sample), for both labels: a forgery beside its authentic photo ("which one is forged"), or
an authentic sample beside another version of the same photo ("neither is forged"). Every sample
keeps one image, one mask and one JSON, so generic webdataset readers infer a single schema, and the
heads keep one image per answer. Global processing is described in the same words for both labels.
"""

from __future__ import annotations

import json
import re
from typing import Any, Sequence

import numpy as np

from forgery_synth.dataset.answer_tokens import (  # noqa: F401  (the token names answers are written with)
    CLS_POSITIONS,
    CLS_TOKEN,
    MASK_RUN,
    MASK_TOKENS,
    NUM_MASK_TOKENS,
    place_cls,
    place_masks,
    place_tokens,
)
from forgery_synth.dataset.evidence import BASIS_VARIANTS
from forgery_synth.dataset.places import METHOD_TEXT_PLACES
from forgery_synth.dataset.prompts import PROMPTS

IMAGE_PLACEHOLDER = "<image>"
TEMPLATES = ("json", "explain", "conclusion", "pair")
LANGS = ("zh", "en")

# (number of <cls>, number of <mask_i>) each template's answer holds
TOKEN_COUNTS = {"json": (1, 32), "explain": (1, 32), "conclusion": (1, 0), "pair": (1, 32)}

VERDICT = {"en": {"fake": "fake", "real": "real"}, "zh": {"fake": "伪造", "real": "真实"}}

# what a local operation did and which traces it leaves, per language
METHOD_TEXT: dict[str, dict[str, tuple[str, str]]] = {
    "copy-move": {
        "en": ("a region copied from elsewhere in the same image and pasted here",
               "texture and noise that repeat another part of the image"),
        "zh": ("从同一图像其他位置复制并粘贴过来的区域", "纹理和噪声与图像另一部分重复"),
    },
    "splice": {
        "en": ("content spliced in from another photo",
               "noise level, colour and lighting that disagree with the rest of the image"),
        "zh": ("从另一张照片拼接进来的内容", "噪声水平、色彩和光照与图像其余部分不一致"),
    },
    "erase": {
        "en": ("an object erased and the gap filled in",
               "over-smooth or repeated texture, missing sensor noise and broken structure lines"),
        "zh": ("物体被擦除后填补的区域", "纹理过度平滑或重复，传感器噪声缺失，结构线断裂"),
    },
    "inpaint": {
        "en": ("content repainted by a generative model",
               "generator texture and noise unlike the camera's, and an edge where the repaint meets the photo"),
        "zh": ("由生成模型重绘的内容", "生成纹理与噪声不同于相机成像，重绘区域与原图交界处有边缘"),
    },
    "jpeg": {
        "en": ("a region recompressed as JPEG on its own",
               "an 8x8 blocking grid and quantisation that differ from the surroundings"),
        "zh": ("被单独重新JPEG压缩的区域", "8x8分块和量化痕迹与周围不一致"),
    },
    "resample": {
        "en": ("a region resampled (scaled down and up again)", "periodic interpolation correlations inside the region"),
        "zh": ("被重采样（缩小后再放大）的区域", "区域内存在周期性的插值相关性"),
    },
    "contrast": {
        "en": ("a region whose contrast or brightness was changed",
               "tone and histogram inconsistent with the lighting of the scene"),
        "zh": ("对比度或亮度被修改的区域", "色调和直方图与场景光照不一致"),
    },
    "noise": {
        "en": ("a region with added noise", "noise statistics that differ from the rest of the image"),
        "zh": ("被添加噪声的区域", "噪声统计特性与图像其余部分不同"),
    },
    "blur": {
        "en": ("a locally blurred region", "missing high-frequency detail and soft edges"),
        "zh": ("被局部模糊的区域", "高频细节缺失，边缘发软"),
    },
}
METHOD_TEXT.update(METHOD_TEXT_PLACES)  # the portrait methods' words live beside their places
METHOD_ALIASES = {"copymove": "copy-move", "copy_move": "copy-move", "splicing": "splice", "removal": "erase",
                  "remove": "erase", "local-jpeg": "jpeg", "double-jpeg": "jpeg", "resampling": "resample",
                  "diffusion": "inpaint", "generative": "inpaint", "gaussian-noise": "noise"}

LABEL_SLOTS = (
    "forged region:", "forensic basis:", "difficulty:", "conclusion:", "what differs:", "evidence:",
    "the left image is forged", "the right image is forged", "neither image is forged",
    "伪造区域：", "取证依据：", "难度：", "真实性结论：", "结论：", "差异：", "依据：",
    "左侧的图像是伪造的", "右侧的图像是伪造的", "两幅图像都不是伪造的",
)
"""Openers (lower case) of the answer sentences that carry the label itself: verdict, region, evidence,
difficulty. Every other sentence of an answer (processing, context) must be said for both labels;
`forgery audit` checks it."""

REAL_BASIS = {
    "en": "noise, compression and lighting are consistent across the whole image, with no trace of a local edit",
    "zh": "整幅图像的噪声、压缩和光照一致，没有局部编辑的痕迹",
}
DIFFICULTY = {"en": ("easy", "medium", "hard"), "zh": ("容易", "中等", "困难")}
POSITIONS = {
    "en": [["upper left", "top", "upper right"], ["left", "centre", "right"], ["lower left", "bottom", "lower right"]],
    "zh": [["左上", "上方", "右上"], ["左侧", "中央", "右侧"], ["左下", "下方", "右下"]],
}
# Parameters an answer may quote: what a forensic analyst could in principle read off the image
# (rotation, quality, blur strength...). Bookkeeping such as seeds, crop boxes, pipeline names,
# prompts or scheduler classes would teach the model to hallucinate what no pixel shows.
_SHOWN_PARAMS = ("angle", "scale", "flip", "quality", "factor", "gamma", "gain", "std", "sigma")


def method_key(name: str) -> str:
    """Canonical method name for text lookup (``copy_move`` → ``copy-move``)."""
    name = str(name).lower()
    return METHOD_ALIASES.get(name, name)


def _local_ops(log: dict) -> list[dict]:
    return [op for op in log.get("ops", []) if op.get("scope") != "global"]


def _global_ops(log: dict) -> list[dict]:
    return [op for op in log.get("ops", []) if op.get("scope") == "global"]


PARAM_NAMES = {
    "en": {"angle": "rotated {v} degrees", "scale": "scale {v}", "flip": "mirrored", "quality": "quality {v}",
           "factor": "factor {v}", "gamma": "gamma {v}", "gain": "gain {v}", "std": "noise std {v}",
           "sigma": "blur sigma {v}"},
    "zh": {"angle": "旋转{v}度", "scale": "缩放{v}倍", "flip": "镜像翻转", "quality": "质量{v}",
           "factor": "系数{v}", "gamma": "伽马{v}", "gain": "增益{v}", "std": "噪声标准差{v}",
           "sigma": "模糊σ {v}"},
}
"""How each shown parameter reads in an answer ({v}: its value); booleans are words, never True/False."""
GLOBAL_OP_NAMES = {
    "en": {"jpeg": "JPEG compression", "resize": "resizing", "noise": "added noise", "blur": "blurring"},
    "zh": {"jpeg": "JPEG压缩", "resize": "缩放", "noise": "加噪", "blur": "模糊"},
}
SEAMS = {
    "en": {"none": "a hard edge where the pasted region meets the image",
           "feather": "a soft, feathered transition at the region's border",
           "poisson": "colours blended smoothly into the surroundings at the border"},
    "zh": {"none": "粘贴区域与图像交界处有硬边", "feather": "区域边界有柔和的羽化过渡", "poisson": "边界处颜色平滑融入周围"},
}
"""The border a paste leaves, by its logged blend (copy-move and splice): said only as the log has it."""
_PASTES = {"copy-move", "splice"}


def _params(op: dict, lang: str = "en") -> str:
    parts = []
    for k in _SHOWN_PARAMS:
        v = op.get(k)
        if v is None or isinstance(v, (dict, list, str)) or (k == "flip" and not v) or (k == "angle" and v == 0):
            continue
        value = round(v, 2) if isinstance(v, float) else v
        parts.append(PARAM_NAMES[lang][k].format(v=value))
    return ("，" if lang == "zh" else ", ").join(parts)


SUBJECTS = {"en": {"left": "the left image", "right": "the right image"}, "zh": {"left": "左侧图像", "right": "右侧图像"}}
"""How an answer names one half of a pair picture."""


def region_summary(mask: np.ndarray, lang: str, subject: str | None = None) -> str:
    """Where the foreground of ``mask`` (HxW uint8) lies: position words, bounding box in frame
    pixels and area share; '' for an empty mask. `subject` ("left"/"right") names the image of a
    pair whose half `mask` is."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return ""
    h, w = mask.shape[:2]
    cy, cx = ys.mean() / h, xs.mean() / w
    pos = POSITIONS[lang][min(int(cy * 3), 2)][min(int(cx * 3), 2)]
    box = [int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())]
    share = 100.0 * len(xs) / (h * w)
    if lang == "zh":
        who = SUBJECTS["zh"].get(subject or "", "图像")
        return f"位于{who}{pos}，边界框{box}，约占画面{share:.1f}%"
    who = SUBJECTS["en"].get(subject or "", "the image")
    return f"in the {pos} of {who}, bounding box {box}, about {share:.1f}% of the frame"


DIFFICULTY_THRESHOLDS = {"easy_separation": 0.5, "hard_separation": 0.2, "easy_area": 0.03, "hard_area": 0.005}
"""Measured difficulty (written to the manifest): *separation* is the larger of the classical
detectors' ``|2 * pixel AUC - 1|`` against the mask (`detectors.separation`), *area* the mask's share
of the frame. Hard: separation or area below its hard threshold; easy: both at or above their easy
thresholds; medium otherwise."""


def difficulty(separation: float, area: float, thresholds: dict[str, float] = DIFFICULTY_THRESHOLDS) -> int:
    """0 easy, 1 medium, 2 hard, from what the pixels show (see `DIFFICULTY_THRESHOLDS`)."""
    if separation < thresholds["hard_separation"] or area < thresholds["hard_area"]:
        return 2
    if separation >= thresholds["easy_separation"] and area >= thresholds["easy_area"]:
        return 0
    return 1


def _describe_ops(log: dict, lang: str, variant: int = 0, evidence: Sequence[str] = ()) -> tuple[str, str]:
    """(what was done, forensic basis) for a forged sample's local operations.

    `variant` picks a paraphrase of each method's basis (`evidence.BASIS_VARIANTS`); the seam of a
    paste is said from its logged blend, a local JPEG's grid from its logged offset, and `evidence`
    (measured on the sample) is appended."""
    whats, bases = [], []
    for op in _local_ops(log):
        key = method_key(op.get("op", ""))
        what, basis = METHOD_TEXT.get(key, {}).get(
            lang, (f"本地编辑（{key}）" if lang == "zh" else f"a local edit ({key})",
                   "统计特性与周围不一致" if lang == "zh" else "statistics inconsistent with the surroundings"))
        variants = BASIS_VARIANTS.get(key, {}).get(lang)
        if variants:
            basis = variants[variant % len(variants)]
        params = _params(op, lang)
        whats.append(f"{what}（{params}）" if params and lang == "zh" else f"{what} ({params})" if params else what)
        joiner = "，" if lang == "zh" else ", and "
        if key in _PASTES and op.get("blend") in SEAMS[lang]:
            basis += joiner + SEAMS[lang][op["blend"]]
        if key == "jpeg" and isinstance(op.get("grid"), list):
            gx, gy = op["grid"]
            if lang == "zh":
                basis += joiner + ("压缩网格与图像自身的8x8网格对齐" if (gx, gy) == (0, 0) else f"其8x8压缩网格相对图像偏移了({gx}, {gy})像素")
            else:
                basis += joiner + ("its blocks sit on the image's own 8x8 grid" if (gx, gy) == (0, 0)
                                   else f"its 8x8 compression grid is shifted by ({gx}, {gy}) pixels against the image's")
        bases.append(basis)
    if not whats:
        m = method_key(log.get("method", "edit"))
        whats.append(METHOD_TEXT.get(m, {}).get(lang, (m, ""))[0])
    bases += list(evidence)
    sep = "，另有" if lang == "zh" else ", and "  # one sentence: the audit reads ";" as a break
    return ("，以及" if lang == "zh" else ", plus ").join(whats), sep.join(b for b in bases if b)


def processing_sentence(log: dict, lang: str, subject: str | None = None) -> str:
    """The global processing the image went through, '' when none; the same words for real and fake.

    `subject` names the image in a pair ("left"/"right"); None means the whole picture.
    """
    ops = _global_ops(log)
    if not ops:
        return ""
    names = GLOBAL_OP_NAMES[lang]
    if lang == "zh":
        steps = "，然后".join(f"{names.get(op.get('op'), op.get('op'))}（{_params(op, 'zh')}）" for op in ops)
        who = SUBJECTS["zh"].get(subject or "", "整幅图像")
        return f"处理：{who}经过了全局{steps}，这是不标记区域的全局痕迹"
    steps = ", then ".join(f"{names.get(op.get('op'), op.get('op'))} ({_params(op, 'en')})" for op in ops)
    who = SUBJECTS["en"].get(subject or "", "the whole image")
    return f"processing: {who} went through global {steps}, a trace that marks no region"


def json_answer(label: str, polygons: list[list[int]]) -> str:
    """The seed's JSON answer: ``{"result": "fake<cls>", "mask": [[x1, y1, …]]<mask_1>…<mask_32>}``."""
    return '{"result": "' + label + CLS_TOKEN + '", "mask": ' + json.dumps(polygons) + MASK_RUN + "}"


def explain_answer(label: str, log: dict, mask: np.ndarray, level: int | None, lang: str,
                   variant: int = 0, evidence: Sequence[str] = ()) -> str:
    """Forged region, forensic basis, processing, difficulty and conclusion; mask tokens after the
    region, ``<cls>`` after the verdict. `level` (0 easy, 1 medium, 2 hard; see `difficulty`) is
    required for a forgery and ignored for an authentic image; `variant` and `evidence` as in
    `_describe_ops`."""
    verdict = VERDICT[lang][label] + CLS_TOKEN
    sep = "；" if lang == "zh" else "; "
    processing = processing_sentence(log, lang)
    processing = processing + sep if processing else ""
    if label == "real":
        if lang == "zh":
            return f"伪造区域：无{MASK_RUN}；取证依据：{REAL_BASIS['zh']}；{processing}难度：—；真实性结论：{verdict}"
        return (f"Forged region: none{MASK_RUN}; forensic basis: {REAL_BASIS['en']}; {processing}"
                f"difficulty: -; conclusion: {verdict}")
    what, basis = _describe_ops(log, lang, variant, evidence)
    where = region_summary(mask, lang)
    if level not in (0, 1, 2):
        raise ValueError(f"a forgery's explain answer needs a difficulty level 0-2, got {level!r}")
    lvl = DIFFICULTY[lang][level]
    if lang == "zh":
        return f"伪造区域：{what}，{where}{MASK_RUN}；取证依据：{basis}；{processing}难度：{lvl}；真实性结论：{verdict}"
    return (f"Forged region: {what}, {where}{MASK_RUN}; forensic basis: {basis}; {processing}"
            f"difficulty: {lvl}; conclusion: {verdict}")


def conclusion_answer(label: str, lang: str) -> str:
    """The verdict alone, ``<cls>`` after it."""
    return ("结论：" if lang == "zh" else "Conclusion: ") + VERDICT[lang][label] + CLS_TOKEN


def pair_answer(label: str, side: str, log: dict, mask: np.ndarray, lang: str,
                variant: int = 0, evidence: Sequence[str] = ()) -> str:
    """The answer to a side-by-side picture of the sample (on `side`, "left" or "right") and the
    photo it was made from. A forgery: which half is forged and what differs; an authentic sample:
    neither half is forged. `mask` (HxW uint8) is the mask of the sample's own half, so position
    words and the box refer to that image, not to the double-width picture."""
    verdict = VERDICT[lang][label] + CLS_TOKEN
    processing = processing_sentence(log, lang, side)
    if label == "real":
        if lang == "zh":
            tail = f"{processing}。" if processing else ""
            return (f"两幅图像都不是伪造的，它们是同一张真实照片。差异：没有局部编辑{MASK_RUN}；依据：{REAL_BASIS['zh']}。"
                    f"{tail}结论：{verdict}")
        tail = f"{processing[0].upper()}{processing[1:]}. " if processing else ""
        return (f"Neither image is forged: both show the same authentic photo. What differs: no local edit{MASK_RUN}; "
                f"evidence: {REAL_BASIS['en']}. {tail}Conclusion: {verdict}")
    what, basis = _describe_ops(log, lang, variant, evidence)
    where = region_summary(mask, lang, side)
    if lang == "zh":
        own, other = ("左侧", "右侧") if side == "left" else ("右侧", "左侧")
        tail = f"{processing}。" if processing else ""
        return (f"{own}的图像是伪造的，{other}是真实照片。差异：{what}，{where}{MASK_RUN}；依据：{basis}。"
                f"{tail}结论：{verdict}")
    other = "right" if side == "left" else "left"
    tail = f"{processing[0].upper()}{processing[1:]}. " if processing else ""
    return (f"The {side} image is forged and the {other} one is the authentic photo. "
            f"What differs: {what}, {where}{MASK_RUN}; evidence: {basis}. {tail}Conclusion: {verdict}")


def draw_prompt(template: str, lang: str, rng: np.random.Generator) -> str:
    """One paraphrase of the user prompt, drawn with ``rng``."""
    options = PROMPTS[template][lang]
    return options[int(rng.integers(len(options)))]


def make_messages(prompt: str, answer: str, n_images: int = 1) -> list[dict[str, str]]:
    """ms-swift messages: the user turn starts with one ``<image>`` per image."""
    return [{"role": "user", "content": IMAGE_PLACEHOLDER * n_images + prompt},
            {"role": "assistant", "content": answer}]


def to_qwen_messages(conversation: dict[str, Any]) -> list[dict[str, Any]]:
    """ms-swift conversation (``<image>`` placeholders + ``images``) → Qwen2.5-VL structured
    messages, whose content is a list of ``{"type": "image"}`` and ``{"type": "text", "text": …}``
    parts, ready for ``apply_chat_template``. Raises ValueError if placeholders and images disagree."""
    messages, n_seen = [], 0
    for msg in conversation["messages"]:
        parts: list[dict[str, Any]] = []
        pieces = msg["content"].split(IMAGE_PLACEHOLDER)
        for i, text in enumerate(pieces):
            if i > 0:
                parts.append({"type": "image"})
                n_seen += 1
            if text:
                parts.append({"type": "text", "text": text})
        messages.append({"role": msg["role"], "content": parts})
    if n_seen != len(conversation.get("images", [])):
        raise ValueError(f"{n_seen} <image> placeholders but {len(conversation.get('images', []))} images")
    return messages


_MASK_RE = re.compile(r"<mask_(\d+)>")


def token_counts(text: str) -> tuple[int, int]:
    """(number of ``<cls>``, number of ``<mask_i>``) in ``text``."""
    return text.count(CLS_TOKEN), len(_MASK_RE.findall(text))


def check_answer(template: str, answer: str, cls_position: str = "after-verdict",
                 mask_position: str = "after-region") -> list[str]:
    """Problems with the special tokens of one answer (empty when it is well formed); `cls_position`
    and `mask_position` are the ones its shards were built with (the manifest's; older manifests
    record neither: the notes' layout, `answer_tokens.LEGACY_LAYOUT`)."""
    problems = []
    n_cls, n_mask = token_counts(answer)
    want_cls, want_mask = TOKEN_COUNTS[template]
    if n_cls != want_cls:
        problems.append(f"{template} answer has {n_cls} <cls>, expected {want_cls}")
    if n_mask != want_mask:
        problems.append(f"{template} answer has {n_mask} <mask_i>, expected {want_mask}")
    elif want_mask and MASK_RUN not in answer:
        problems.append(f"{template} answer's mask tokens are not contiguous and in order")
    if n_mask == want_mask and want_mask and place_masks(answer, mask_position) != answer.replace(CLS_TOKEN, ""):
        where = "before the answer" if mask_position == "before-answer" else "right after the region"
        problems.append(f"{template} answer's mask tokens are not {where} (mask position {mask_position})")
    elif n_cls == 1 and place_cls(answer, cls_position) != answer:
        where = "first in the answer" if cls_position == "before-verdict" else "right after the verdict word"
        problems.append(f"{template} answer's <cls> is not {where} (cls position {cls_position})")
    if template == "json" and not problems:
        try:
            parse_json_answer(answer)
        except ValueError as exc:
            problems.append(str(exc))
    return problems


def parse_json_answer(answer: str) -> tuple[str, list[list[int]]]:
    """(label, polygons) of a ``json`` answer; special tokens are stripped before parsing.
    Raises ValueError on anything else."""
    try:
        data = json.loads(_MASK_RE.sub("", answer).replace(CLS_TOKEN, ""))
        label, polygons = data["result"], data["mask"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"json answer does not parse: {exc}") from exc
    if label not in ("real", "fake") or not isinstance(polygons, list):
        raise ValueError(f"json answer has result {label!r} / mask {type(polygons).__name__}")
    if any(not isinstance(p, list) or len(p) % 2 or len(p) < 6 for p in polygons):
        raise ValueError("json answer has a polygon that is not a flat list of >= 3 x,y pairs")
    return label, polygons
