"""A red round seal stamp (公章): a ring, a star and text along the upper arc, with uneven ink.

`render_seal` is a pure function of its parameters (the ink texture comes from `ink_seed`), so a
seal drawn into an original and a seal pasted by `text-splice` replay byte for byte."""

from __future__ import annotations

import math

import cv2
import numpy as np
from PIL import Image, ImageDraw

from forgery_synth.documents.fonts import load_font

SEAL_RED = (200, 30, 35)


def render_seal(text: str, diameter: int, ink_seed: int, colour: tuple[int, int, int] = SEAL_RED,
                angle: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """The seal as (ink colour 3 uint8, alpha DxD float32 in [0, 1]); `text` runs along the top arc."""
    d = int(diameter)
    scale = 2  # drawn at twice the size, then reduced: smooth edges
    big = d * scale
    canvas = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(canvas)
    ring = max(2, big // 24)
    draw.ellipse([ring // 2, ring // 2, big - ring // 2 - 1, big - ring // 2 - 1], outline=255, width=ring)
    c, r_star = big / 2, big * 0.16
    star = [(c + r_star * (1 if k % 2 == 0 else 0.4) * math.sin(math.pi * k / 5),
             c - r_star * (1 if k % 2 == 0 else 0.4) * math.cos(math.pi * k / 5)) for k in range(10)]
    draw.polygon(star, fill=255)
    chars = list(text) or [" "]
    size = max(8, int(big * 0.13))
    font = load_font("hei", size)
    radius = big / 2 - ring - size * 0.75
    span = min(240.0, 22.0 * len(chars))  # degrees of arc the text covers, centred on the top
    for k, ch in enumerate(chars):
        theta = -span / 2 + span * (k + 0.5) / len(chars)
        glyph = Image.new("L", (size * 2, size * 2), 0)
        ImageDraw.Draw(glyph).text((size, size), ch, font=font, fill=255, anchor="mm")
        glyph = glyph.rotate(-theta, resample=Image.Resampling.BICUBIC)
        x = c + radius * math.sin(math.radians(theta)) - size
        y = c - radius * math.cos(math.radians(theta)) - size
        canvas.paste(255, (int(round(x)), int(round(y))), glyph)
    if angle:
        canvas = canvas.rotate(angle, resample=Image.Resampling.BICUBIC)
    alpha = np.asarray(canvas.resize((d, d), Image.Resampling.LANCZOS), np.float32) / 255.0
    rng = np.random.default_rng(ink_seed)  # uneven ink: smooth blotches, a few dry speckles
    blotch = cv2.GaussianBlur(rng.random((d, d), np.float32), (0, 0), max(1.0, d / 30))
    blotch = (blotch - blotch.min()) / max(1e-6, float(np.ptp(blotch)))
    alpha = alpha * (0.55 + 0.45 * blotch) * (rng.random((d, d)) > 0.04)
    return np.array(colour, np.uint8), np.clip(alpha * 0.92, 0, 1).astype(np.float32)


def stamp(image: np.ndarray, colour: np.ndarray, alpha: np.ndarray, x: int, y: int) -> tuple[np.ndarray, np.ndarray]:
    """Press a seal (colour, alpha DxD) onto `image` (HxWx3 uint8) with its top-left at (x, y),
    as ink does (multiply); returns (new image, HxW bool footprint of the pixels that changed).
    The seal is clipped to the image."""
    h, w = image.shape[:2]
    d = alpha.shape[0]
    x0, y0, x1, y1 = max(0, x), max(0, y), min(w, x + d), min(h, y + d)
    out = image.copy()
    footprint = np.zeros((h, w), bool)
    if x1 <= x0 or y1 <= y0:
        return out, footprint
    a = alpha[y0 - y : y1 - y, x0 - x : x1 - x, None]
    crop = image[y0:y1, x0:x1].astype(np.float32)
    inked = crop * (1 - a) + crop * (colour.astype(np.float32) / 255.0) * a
    new = np.clip(np.rint(inked), 0, 255).astype(np.uint8)
    out[y0:y1, x0:x1] = new
    footprint[y0:y1, x0:x1] = np.any(new != image[y0:y1, x0:x1], axis=-1)
    return out, footprint
