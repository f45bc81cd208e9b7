"""Training conversations: prompts (zh/en, several paraphrases), answer texts built from the
operation log, and the conversion to Qwen2.5-VL's structured chat messages.

Special tokens stand at fixed places in every answer:
- ``<cls>`` directly after the verdict word (``fake``/``real``, ``伪造``/``真实``), exactly once;
- ``<mask_1>…<mask_32>``, contiguous and in order, directly after the region (the polygon list
  in ``json``, the region description in ``explain`` and ``pair``), in every template but
  ``conclusion`` (the verdict alone carries ``<cls>`` only).
Authentic images keep every token: ``"real<cls>"``, an empty polygon list, then the mask tokens.

A ``pair`` sample is one picture holding the authentic photo and its forgery side by side (order
drawn per sample): every sample keeps one image, one mask and one JSON, so generic webdataset
readers infer a single schema, and the heads keep one image per answer.
"""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np

CLS_TOKEN = "<cls>"
N_MASK_TOKENS = 32
MASK_TOKENS = [f"<mask_{i}>" for i in range(1, N_MASK_TOKENS + 1)]
MASK_RUN = "".join(MASK_TOKENS)
IMAGE_PLACEHOLDER = "<image>"
TEMPLATES = ("json", "explain", "conclusion", "pair")
LANGS = ("zh", "en")

# (number of <cls>, number of <mask_i>) each template's answer holds
TOKEN_COUNTS = {"json": (1, 32), "explain": (1, 32), "conclusion": (1, 0), "pair": (1, 32)}

PROMPTS: dict[str, dict[str, list[str]]] = {
    "json": {
        "en": [
            "Please analyse whether this image is authentic; answer in JSON.",
            "Is this image real or tampered? Reply in JSON with the verdict and the polygons of any tampered region.",
            "Examine this picture for signs of manipulation and answer in JSON.",
            "Check whether any part of this photo was edited. Give your answer as JSON.",
        ],
        "zh": [
            "请分析这张图片是否真实，用JSON格式回答。",
            "这张图片是真实的还是经过篡改的？请以JSON格式给出结论和篡改区域的多边形。",
            "请检查这张照片是否存在篡改痕迹，并用JSON回答。",
            "判断该图像是否被编辑过，以JSON格式输出结果。",
        ],
    },
    "explain": {
        "en": [
            "Analyse whether this image has been tampered with: describe the forged region, the forensic basis, the difficulty and your conclusion.",
            "Does this photo show editing traces? Explain what you see and conclude.",
            "As an image-forensics expert, is this image authentic? Give the tampered region, the evidence, how hard it is to spot, and a verdict.",
        ],
        "zh": [
            "分析这张图片是否被篡改，说明伪造区域、取证依据、难度和结论。",
            "这张照片有PS痕迹吗？请解释依据并给出真实性结论。",
            "请以图像取证专家的身份判断这张图片是否真实，给出篡改区域、证据、识别难度和结论。",
        ],
    },
    "conclusion": {
        "en": [
            "Is this image authentic or forged? Answer with the verdict only.",
            "Real or fake? Give only your conclusion.",
            "Has this image been manipulated? Reply with the conclusion alone.",
        ],
        "zh": [
            "这张图片是真实的还是伪造的？只回答结论。",
            "真实还是伪造？请直接给出结论。",
            "这张图像是否被篡改过？只需给出结论。",
        ],
    },
    "pair": {
        "en": [
            "This picture shows two versions of the same photo side by side. Which one is forged, and what differs?",
            "Left and right are the same scene; one of them was edited. Which one, and where?",
            "Compare the two halves of this image: which is the forgery and what was changed?",
        ],
        "zh": [
            "这张图并排展示了同一张照片的两个版本。哪一个是伪造的？两者有什么不同？",
            "左右两幅是同一场景，其中一幅被编辑过。是哪一幅？改动在哪里？",
            "比较这张图的左右两半：哪一半是伪造的？改动了什么？",
        ],
    },
}

VERDICT = {"en": {"fake": "fake", "real": "real"}, "zh": {"fake": "伪造", "real": "真实"}}

# what a local operation did and which traces it leaves, per language
METHOD_TEXT: dict[str, dict[str, tuple[str, str]]] = {
    "copy-move": {
        "en": ("a region copied from elsewhere in the same image and pasted here",
               "texture and noise that repeat another part of the image, and a blending seam at the border"),
        "zh": ("从同一图像其他位置复制并粘贴过来的区域", "纹理和噪声与图像另一部分重复，边界处有融合痕迹"),
    },
    "splice": {
        "en": ("content spliced in from another photo",
               "noise level, colour and lighting that disagree with the rest of the image, and a boundary seam"),
        "zh": ("从另一张照片拼接进来的内容", "噪声水平、色彩和光照与图像其余部分不一致，边界有接缝"),
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
        "en": ("a region resampled (scaled or rotated)", "periodic interpolation correlations inside the region"),
        "zh": ("被重采样（缩放或旋转）的区域", "区域内存在周期性的插值相关性"),
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
METHOD_ALIASES = {"copymove": "copy-move", "copy_move": "copy-move", "splicing": "splice", "removal": "erase",
                  "remove": "erase", "local-jpeg": "jpeg", "double-jpeg": "jpeg", "resampling": "resample",
                  "diffusion": "inpaint", "generative": "inpaint", "gaussian-noise": "noise"}

REAL_BASIS = {
    "en": "noise, compression and lighting are consistent across the whole image; no trace of a local edit",
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
_SHOWN_PARAMS = ("angle", "scale", "flip", "quality", "factor", "gamma", "gain", "std", "sigma", "blend")


def method_key(name: str) -> str:
    """Canonical method name for text lookup (``copy_move`` → ``copy-move``)."""
    name = str(name).lower()
    return METHOD_ALIASES.get(name, name)


def _local_ops(log: dict) -> list[dict]:
    return [op for op in log.get("ops", []) if op.get("scope") != "global"]


def _global_ops(log: dict) -> list[dict]:
    return [op for op in log.get("ops", []) if op.get("scope") == "global"]


def _params(op: dict) -> str:
    parts = []
    for k in _SHOWN_PARAMS:
        v = op.get(k)
        if v is None or isinstance(v, (dict, list)) or (k == "flip" and not v) or (k == "angle" and v == 0):
            continue
        parts.append(f"{k} {round(v, 2) if isinstance(v, float) else v}")
    return ", ".join(parts)


def region_summary(mask: np.ndarray, lang: str) -> str:
    """Where the foreground of ``mask`` (HxW uint8) lies: position words, bounding box in frame
    pixels and area share; '' for an empty mask."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return ""
    h, w = mask.shape[:2]
    cy, cx = ys.mean() / h, xs.mean() / w
    pos = POSITIONS[lang][min(int(cy * 3), 2)][min(int(cx * 3), 2)]
    box = [int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())]
    share = 100.0 * len(xs) / (h * w)
    if lang == "zh":
        return f"位于图像{pos}，边界框{box}，约占画面{share:.1f}%"
    return f"in the {pos} of the image, bounding box {box}, about {share:.1f}% of the frame"


def difficulty(log: dict, mask_area: float) -> int:
    """0 easy, 1 medium, 2 hard: small regions, soft blending, global post-processing and subtle
    methods make a forgery harder to spot."""
    points = 2 if mask_area < 0.01 else 1 if mask_area < 0.05 else 0
    for op in _local_ops(log):
        if str(op.get("blend", "")).lower() in {"poisson", "feather", "seamless", "alpha", "gaussian"}:
            points += 1
        if method_key(op.get("op", "")) in {"erase", "inpaint", "noise", "contrast", "resample", "blur", "jpeg"}:
            points += 1
    points += bool(_global_ops(log))
    return 0 if points <= 1 else 1 if points == 2 else 2


def _describe_ops(log: dict, lang: str) -> tuple[str, str]:
    """(what was done, forensic basis) for a forged sample's log."""
    whats, bases = [], []
    for op in _local_ops(log):
        key = method_key(op.get("op", ""))
        what, basis = METHOD_TEXT.get(key, {}).get(
            lang, (f"本地编辑（{key}）" if lang == "zh" else f"a local edit ({key})",
                   "统计特性与周围不一致" if lang == "zh" else "statistics inconsistent with the surroundings"))
        params = _params(op)
        whats.append(f"{what}（{params}）" if params and lang == "zh" else f"{what} ({params})" if params else what)
        bases.append(basis)
    if not whats:
        m = method_key(log.get("method", "edit"))
        whats.append(METHOD_TEXT.get(m, {}).get(lang, (m, ""))[0])
    for op in _global_ops(log):
        params = _params(op)
        if lang == "zh":
            bases.append(f"随后整幅图像经过全局{op.get('op')}处理（{params}），这是全局痕迹，不标记区域")
        else:
            bases.append(f"the whole image then went through a global {op.get('op')} ({params}), a trace that marks no region")
    sep = "；" if lang == "zh" else "; "
    return sep.join(whats), sep.join(b for b in bases if b)


def json_answer(label: str, polygons: list[list[int]]) -> str:
    """The seed's JSON answer: ``{"result": "fake<cls>", "mask": [[x1, y1, …]]<mask_1>…<mask_32>}``."""
    return '{"result": "' + label + CLS_TOKEN + '", "mask": ' + json.dumps(polygons) + MASK_RUN + "}"


def explain_answer(label: str, log: dict, mask: np.ndarray, mask_area: float, lang: str) -> str:
    """Forged region, forensic basis, difficulty and conclusion, written from the operation log;
    mask tokens after the region, ``<cls>`` after the verdict."""
    verdict = VERDICT[lang][label] + CLS_TOKEN
    if label == "real":
        if lang == "zh":
            return f"伪造区域：无{MASK_RUN}；取证依据：{REAL_BASIS['zh']}；难度：—；真实性结论：{verdict}"
        return f"Forged region: none{MASK_RUN}; forensic basis: {REAL_BASIS['en']}; difficulty: -; conclusion: {verdict}"
    what, basis = _describe_ops(log, lang)
    where = region_summary(mask, lang)
    level = DIFFICULTY[lang][difficulty(log, mask_area)]
    if lang == "zh":
        return f"伪造区域：{what}，{where}{MASK_RUN}；取证依据：{basis}；难度：{level}；真实性结论：{verdict}"
    return f"Forged region: {what}, {where}{MASK_RUN}; forensic basis: {basis}; difficulty: {level}; conclusion: {verdict}"


def conclusion_answer(label: str, lang: str) -> str:
    """The verdict alone, ``<cls>`` after it."""
    return ("结论：" if lang == "zh" else "Conclusion: ") + VERDICT[lang][label] + CLS_TOKEN


def pair_answer(forged_side: str, log: dict, mask: np.ndarray, lang: str) -> str:
    """Which half of a side-by-side picture is forged and what differs; ``forged_side`` is
    ``left`` or ``right``; ``mask`` (HxW uint8) is the mask of the whole picture."""
    what, basis = _describe_ops(log, lang)
    where = region_summary(mask, lang)
    verdict = VERDICT[lang]["fake"] + CLS_TOKEN
    if lang == "zh":
        side, other = ("左侧", "右侧") if forged_side == "left" else ("右侧", "左侧")
        return f"{side}的图像是伪造的，{other}是真实照片。差异：{what}，{where}{MASK_RUN}；依据：{basis}。结论：{verdict}"
    other = "right" if forged_side == "left" else "left"
    return (f"The {forged_side} image is forged and the {other} one is the authentic photo. "
            f"What differs: {what}, {where}{MASK_RUN}; evidence: {basis}. Conclusion: {verdict}")


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


def check_answer(template: str, answer: str) -> list[str]:
    """Problems with the special tokens of one answer (empty when it is well formed)."""
    problems = []
    n_cls, n_mask = token_counts(answer)
    want_cls, want_mask = TOKEN_COUNTS[template]
    if n_cls != want_cls:
        problems.append(f"{template} answer has {n_cls} <cls>, expected {want_cls}")
    if n_mask != want_mask:
        problems.append(f"{template} answer has {n_mask} <mask_i>, expected {want_mask}")
    elif want_mask and MASK_RUN not in answer:
        problems.append(f"{template} answer's mask tokens are not contiguous and in order")
    if n_cls == 1 and not any(v + CLS_TOKEN in answer for lang in VERDICT.values() for v in lang.values()):
        problems.append(f"{template} answer's <cls> does not follow a verdict word")
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
