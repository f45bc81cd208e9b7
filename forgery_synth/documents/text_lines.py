"""Text lines of a page found with OpenCV alone (no OCR weights): dark ink on a lighter ground,
joined along the line by a morphological close, boxed by connected components.

Works on the rendered originals and on users' own scans; the boxes are [x0, y0, x1, y1] (x1, y1
exclusive) in the image frame, top to bottom."""

from __future__ import annotations

import cv2
import numpy as np


def ink_mask(image: np.ndarray) -> np.ndarray:
    """HxW bool: pixels darker than their neighbourhood (text strokes), from HxWx3 uint8 RGB."""
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    h, w = grey.shape
    block = max(15, (min(h, w) // 20) | 1)
    return cv2.adaptiveThreshold(grey, 1, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY_INV, block, 12) > 0


def detect_text_lines(image: np.ndarray, min_height: int = 6) -> list[list[int]]:
    """Boxes of text lines in `image` (HxWx3 uint8): wider than tall, of a text's height (between
    `min_height` px and a tenth of the page), neither solid (a photo, a bar) nor empty."""
    h, w = image.shape[:2]
    ink = ink_mask(image).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(ink, connectivity=8)
    # characters: drop specks and big blobs (a portrait, a frame) before joining
    keep = np.zeros(n, bool)
    max_h = max(min_height + 1, h // 10)
    for i in range(1, n):
        bw, bh, area = stats[i, 2], stats[i, 3], stats[i, 4]
        keep[i] = 2 <= bh <= max_h and bw <= w // 3 and area >= 4
    glyphs = keep[labels].astype(np.uint8)
    gap = max(3, min(h, w) // 60)
    joined = cv2.morphologyEx(glyphs, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_RECT, (2 * gap + 1, 3)))
    n, _, stats, _ = cv2.connectedComponentsWithStats(joined, connectivity=8)
    boxes = []
    for i in range(1, n):
        x, y, bw, bh, _ = stats[i]
        if not (min_height <= bh <= max_h and bw >= 1.5 * bh):
            continue
        fill = glyphs[y : y + bh, x : x + bw].mean()
        if 0.05 <= fill <= 0.75:
            boxes.append([int(x), int(y), int(x + bw), int(y + bh)])
    return sorted(boxes, key=lambda b: (b[1], b[0]))
