"""Text erase: a line removed (a layout field's value or a detected text line), the paper restored
under it (`text_edit.restore`: inpainted, regrained). The old text is logged when the layout
knows it ("" on a scan); the new text is ""."""

from __future__ import annotations

import numpy as np

from forgery_synth.methods.base import MethodOptions
from forgery_synth.methods.forgery import Forgery
from forgery_synth.methods.text_edit import clip_rect, grain_of, place_log, places, rect_mask, restore

NAME = "text-erase"


def get_params(image: np.ndarray, rng: np.random.Generator, options: MethodOptions, donor: np.ndarray | None = None) -> dict:
    """Draw the line to erase."""
    found, source = places(image, options.layout)
    place = found[int(rng.integers(len(found)))]
    x0, y0, x1, y1 = place["box"]
    rect = clip_rect([x0 - 1, y0 - 1, x1 + 1, y1 + 1], image.shape)
    return {"op": NAME, "places_from": source, "place": place_log(place), "rect": rect, "old_text": place["text"],
            "new_text": "", "grain": grain_of(image, rect), "grain_seed": int(rng.integers(2**31))}


def apply(image: np.ndarray, params: dict, donor: np.ndarray | None = None) -> Forgery:
    """Restore the paper over the line; HxWx3 uint8 in, Forgery out."""
    rect = params["rect"]
    out = restore(image, rect, params["grain"], params["grain_seed"])
    return Forgery(image=out, mask=rect_mask(rect, image.shape), op=params)
