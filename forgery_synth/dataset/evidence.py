"""Evidence an answer may cite: paraphrases of each method's forensic basis, and what a measurement
of the sample itself shows (its noise inside vs around the region), so the "forensic basis" of an
explain or pair answer is not one fixed sentence per method and never claims what the pixels lack.
"""

from __future__ import annotations

import cv2
import numpy as np

from forgery_synth.dataset.detectors import noise_residual

BASIS_VARIANTS: dict[str, dict[str, list[str]]] = {
    "copy-move": {
        "en": ["texture and noise that repeat another part of the image",
               "a patch whose texture reappears elsewhere in the same picture",
               "content duplicated from another area of this image, down to its noise"],
        "zh": ["纹理和噪声与图像另一部分重复", "该区域的纹理在同一画面的其他位置再次出现", "内容连同噪声一起复制自本图的另一区域"],
    },
    "splice": {
        "en": ["noise level, colour and lighting that disagree with the rest of the image",
               "lighting and sensor noise that belong to another photo",
               "colour and noise statistics unlike those of the surrounding scene"],
        "zh": ["噪声水平、色彩和光照与图像其余部分不一致", "光照和传感器噪声来自另一张照片", "色彩与噪声统计特性与周围场景不同"],
    },
    "erase": {
        "en": ["over-smooth or repeated texture, missing sensor noise and broken structure lines",
               "a fill without the camera's noise, smeared across the structures it interrupts",
               "texture interpolated from the border inwards, smoother than the photo around it"],
        "zh": ["纹理过度平滑或重复，传感器噪声缺失，结构线断裂", "填补区域缺少相机噪声，并抹平了被打断的结构", "纹理由边界向内插值，比周围照片更平滑"],
    },
    "inpaint": {
        "en": ["generator texture and noise unlike the camera's, and an edge where the repaint meets the photo",
               "synthetic texture whose noise does not match the camera's",
               "repainted content with a generator's smoothness and a transition at its edge"],
        "zh": ["生成纹理与噪声不同于相机成像，重绘区域与原图交界处有边缘", "合成纹理的噪声与相机噪声不符", "重绘内容带有生成模型的平滑感，边缘处有过渡"],
    },
    "jpeg": {
        "en": ["an 8x8 blocking grid and quantisation that differ from the surroundings",
               "compression blocks and quantisation unlike the rest of the picture",
               "a second JPEG compression confined to this region"],
        "zh": ["8x8分块和量化痕迹与周围不一致", "压缩分块与量化特征不同于画面其余部分", "仅限于该区域的二次JPEG压缩"],
    },
    "resample": {
        "en": ["periodic interpolation correlations inside the region",
               "the regular correlations that resizing leaves between neighbouring pixels",
               "interpolation traces of a resize that the rest of the image lacks"],
        "zh": ["区域内存在周期性的插值相关性", "缩放在相邻像素间留下的规律相关性", "图像其余部分没有的缩放插值痕迹"],
    },
    "contrast": {
        "en": ["tone and histogram inconsistent with the lighting of the scene",
               "a tone curve that differs from the rest of the picture",
               "brightness and contrast that do not follow the scene's light"],
        "zh": ["色调和直方图与场景光照不一致", "色调曲线与画面其余部分不同", "亮度和对比度不符合场景光照"],
    },
    "noise": {
        "en": ["noise statistics that differ from the rest of the image",
               "grain stronger than the camera's elsewhere in the picture",
               "added noise whose level the surroundings do not share"],
        "zh": ["噪声统计特性与图像其余部分不同", "颗粒感强于画面其他位置的相机噪声", "周围区域没有的附加噪声"],
    },
    "blur": {
        "en": ["missing high-frequency detail and soft edges",
               "edges softer than the focus of the surrounding image",
               "detail lost to a blur that the rest of the photo does not show"],
        "zh": ["高频细节缺失，边缘发软", "边缘比周围图像的对焦更柔和", "细节因模糊而丢失，照片其余部分没有这种模糊"],
    },
    "hairline": {
        "en": ["an edge along the hairline softer than the rest of the portrait",
               "a hair-forehead transition blurred unlike the portrait's other edges",
               "a band along the hairline whose detail does not match the hair beside it"],
        "zh": ["发际线边缘比肖像其他部分更柔和", "头发与额头的过渡被模糊，与肖像其他边缘不同", "发际线一带的细节与旁边的头发不符"],
    },
    "catchlight": {
        "en": ["pupil reflections that do not match the lighting of the face",
               "catchlights placed where the face's light could not put them",
               "eye reflections that disagree with the direction of the light on the skin"],
        "zh": ["瞳孔反光与面部光照不一致", "反光点的位置与面部光源不符", "眼中反光与皮肤上的光照方向相矛盾"],
    },
    "face-swap": {
        "en": ["a face whose tone, texture and edges do not belong to this photo",
               "facial features from another photo, with a seam around the face",
               "a face whose noise and lighting differ from the head and neck around it"],
        "zh": ["面部的色调、纹理和边缘不属于这张照片", "五官来自另一张照片，面部周围有接缝", "面部的噪声和光照与周围头部和颈部不同"],
    },
    "skin-retouch": {
        "en": ["skin without the pores and fine lines of the face around it",
               "an over-smooth patch of skin, its texture filtered away",
               "skin texture evened out, unlike the detail elsewhere on the face"],
        "zh": ["皮肤缺少周围面部的毛孔和细纹", "一块过度平滑的皮肤，纹理被滤除", "皮肤纹理被抹平，与面部其他部位的细节不同"],
    },
}
"""Each method's forensic basis, three ways; index 0 is the one `conversations.METHOD_TEXT` holds."""

NOISE_RATIO = 1.25
"""A region's noise is worth citing when it is this many times stronger (or weaker) than around it."""


def noise_ratio(image: np.ndarray, mask: np.ndarray) -> float | None:
    """Noise inside `mask` over noise in a ring around it: the standard deviation of
    `detectors.noise_residual`. image: HxWx3 uint8; mask: HxW, nonzero = region.
    None when the region or its ring is too small to measure (under 64 pixels)."""
    inside = np.asarray(mask) > 0
    residual = noise_residual(image)
    r = max(3, round(0.05 * min(inside.shape)))
    ring = cv2.dilate(inside.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1,) * 2)) > 0
    ring &= ~inside
    if inside.sum() < 64 or ring.sum() < 64:
        return None
    outside = float(residual[ring].std())
    return float(residual[inside].std()) / max(outside, 1e-3)


def measured_evidence(image: np.ndarray, mask: np.ndarray, lang: str) -> list[str]:
    """Evidence sentences the sample's pixels support (possibly none), in `lang`."""
    ratio = noise_ratio(image, mask)
    if ratio is None or 1 / NOISE_RATIO < ratio < NOISE_RATIO:
        return []
    if lang == "zh":
        return [f"实测区域内噪声是周围的{ratio:.1f}倍" if ratio > 1 else f"实测区域内噪声只有周围的{ratio:.1f}倍，明显更平滑"]
    return [f"the measured noise inside the region is {ratio:.1f}x that around it" if ratio > 1 else
            f"the region is measurably smoother than around it (noise {ratio:.1f}x)"]
