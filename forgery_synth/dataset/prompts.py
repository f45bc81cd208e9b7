"""The user prompts of every template, in Chinese and English, several paraphrases each.

The same lists serve real and fake samples: a prompt never tells the label. Stage 3 adds
paraphrases of its own (`trainer.training.augment`).
"""

from __future__ import annotations

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
            "This picture shows two versions of the same photo side by side. Is either of them forged, and what differs?",
            "Left and right are the same scene. Was one of them edited? If so, which one, and where?",
            "Compare the two halves of this image: is one of them a forgery, and what was changed?",
        ],
        "zh": [
            "这张图并排展示了同一张照片的两个版本。其中有伪造的吗？两者有什么不同？",
            "左右两幅是同一场景。其中一幅被编辑过吗？如果有，是哪一幅，改动在哪里？",
            "比较这张图的左右两半：其中一半是伪造的吗？改动了什么？",
        ],
    },
}

FOCUS_PROMPTS: dict[str, dict[str, dict[str, list[str]]]] = {
    "portrait": {
        "json": {"en": ["Check the hairline, the pupils and the skin of this portrait: was anything edited? Answer in JSON.",
                        "Look closely at the face in this photo (hairline, eyes, skin). Is it authentic? Reply in JSON."],
                 "zh": ["请检查这张人像的发际线、瞳孔和皮肤：是否有编辑痕迹？用JSON回答。",
                        "仔细查看照片中的面部（发际线、眼睛、皮肤），它是真实的吗？请以JSON格式回答。"]},
        "explain": {"en": ["Check the hairline and the pupils of this portrait: has the face been tampered with? Give the region, the evidence, the difficulty and a verdict.",
                           "Examine the face (hairline, catchlights in the eyes, skin texture): is this portrait authentic? Explain and conclude."],
                    "zh": ["检查这张人像的发际线和瞳孔：面部是否被篡改？说明区域、依据、难度和结论。",
                           "请查看面部（发际线、眼中反光、皮肤纹理）：这张肖像是真实的吗？请解释并给出结论。"]},
        "conclusion": {"en": ["Look at the face, the hairline and the eyes: real or fake? Verdict only."],
                       "zh": ["看看面部、发际线和眼睛：真实还是伪造？只回答结论。"]},
        "pair": {"en": ["Both halves show the same portrait. Compare the faces (hairline, eyes, skin): is one of them forged, and where?"],
                 "zh": ["左右两幅是同一张肖像。比较两张面部（发际线、眼睛、皮肤）：其中一幅是伪造的吗？在哪里？"]},
    },
    "document": {
        "json": {"en": ["Check the fields of this document, the ID number and the seal: was any of it altered? Answer in JSON."],
                 "zh": ["请检查这份证件的各栏、证件号码和印章：是否有改动？用JSON回答。"]},
        "explain": {"en": ["Check the ID number field, the other fields and the seal of this document: has anything been tampered with? Give the region, the evidence, the difficulty and a verdict."],
                    "zh": ["检查证件号码栏、其他各栏和印章：这份文件是否被篡改？说明区域、依据、难度和结论。"]},
        "conclusion": {"en": ["Look at the fields and the seal of this document: authentic or forged? Verdict only."],
                       "zh": ["看看这份文件的各栏和印章：真实还是伪造？只回答结论。"]},
        "pair": {"en": ["Both halves show the same document. Compare its fields and seal: is one of them forged, and where?"],
                 "zh": ["左右两幅是同一份文件。比较各栏和印章：其中一幅是伪造的吗？在哪里？"]},
    },
}
"""Prompts that direct attention to what the source shows (its ``source.content``): drawn for a
share `FOCUS_SHARE` of the samples of such sources, real and fake alike, so they never tell the label."""
FOCUS_SHARE = 0.5


def focus_prompt(content: str, template: str, lang: str, rng) -> str | None:
    """A prompt directing attention to what a `content` source shows, for a `FOCUS_SHARE` of draws
    (`rng`: a numpy Generator), else None (keep the template's own prompt). Depends on the source,
    never on the label."""
    options = FOCUS_PROMPTS.get(content, {}).get(template, {}).get(lang)
    if not options or rng.random() >= FOCUS_SHARE:
        return None
    return options[int(rng.integers(len(options)))]


INFERENCE_PROMPT = PROMPTS["json"]["en"][0]
"""The prompt predict and eval ask (the json template's first English paraphrase). Training asks it
too, for a share of the json samples (``forgery train --inference-prompt-share``), so the states the
heads read at inference are states training has seen."""
