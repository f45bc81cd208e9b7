"""The in-memory result of one forgery method."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Forgery:
    """A forged image, its ground-truth mask and the operation that made it.

    Attributes:
        image: HxWx3 uint8 RGB, 0–255.
        mask: HxW uint8, {0, 255}: every pixel whose content a local operation changed.
        op: the logged operation (a plain JSON-able dict, ``{"op": name, **params}``).
        edge: HxW uint8 {0, 255}, the band around the region's edge that blending touched
            (for the boundary-aware loss), or None.
        source_mask: HxW uint8 {0, 255}, the copied region for copy-move, or None.
    """

    image: np.ndarray
    mask: np.ndarray
    op: dict
    edge: np.ndarray | None = None
    source_mask: np.ndarray | None = field(default=None)
