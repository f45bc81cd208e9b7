"""The pixel frame Qwen2.5-VL sees: its resize rule, and resizing an image + mask into it.

Qwen2.5-VL's processor resizes every image so both sides are multiples of 28 (patch 14 x merge 2)
and the area lies within [min_pixels, max_pixels]. Polygons in training answers must be in that
frame, so the shards store images already resized to it. `smart_resize` below is the same rule as
``transformers.models.qwen2_vl.image_processing_qwen2_vl.smart_resize`` (a test proves equality);
it is restated here because importing the transformers module pulls torch.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

FACTOR = 28
DEFAULT_MIN_PIXELS = 4 * 28 * 28  # 3136, Qwen2.5-VL's preprocessor default
DEFAULT_MAX_PIXELS = 1280 * 28 * 28  # 1003520, the usual MAX_PIXELS of ms-swift / qwen-vl-utils


def smart_resize(
    height: int,
    width: int,
    factor: int = FACTOR,
    min_pixels: int = DEFAULT_MIN_PIXELS,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> tuple[int, int]:
    """Return (height, width) of the frame for an image of ``height`` x ``width`` pixels.

    Both sides are multiples of ``factor``, the area is within [min_pixels, max_pixels] and the
    aspect ratio is kept as closely as possible. Raises ValueError for aspect ratios above 200.
    """
    if max(height, width) / min(height, width) > 200:
        raise ValueError(
            f"absolute aspect ratio must be smaller than 200, got {max(height, width) / min(height, width)}"
        )
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def resize_to_frame(
    image: np.ndarray,
    mask: np.ndarray,
    min_pixels: int = DEFAULT_MIN_PIXELS,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> tuple[np.ndarray, np.ndarray]:
    """Resize an image (HxWx3 uint8) and its mask (HxW uint8, nearest, so it stays {0, 255}) into
    the Qwen2.5-VL frame. Returns (h x w x 3, h x w) uint8; inputs already in the frame come back
    as they are.

    The image is area-averaged when it shrinks by more than 2x per side (no aliasing on large
    downscales) and bicubic otherwise (OpenCV, several times faster than PIL's bicubic). Qwen's processor then finds the
    image already at its frame size (with the same min/max pixels), so this is the only resampling.
    """
    if image.shape[:2] != mask.shape[:2]:
        raise ValueError(f"image {image.shape[:2]} and mask {mask.shape[:2]} differ in size")
    h, w = image.shape[:2]
    fh, fw = smart_resize(h, w, min_pixels=min_pixels, max_pixels=max_pixels)
    if (fh, fw) == (h, w):
        return image, mask
    interp = cv2.INTER_AREA if fh * fw * 4 < h * w else cv2.INTER_CUBIC
    img = cv2.resize(np.ascontiguousarray(image), (fw, fh), interpolation=interp)
    msk = cv2.resize(np.ascontiguousarray(mask), (fw, fh), interpolation=cv2.INTER_NEAREST)
    return img, msk
