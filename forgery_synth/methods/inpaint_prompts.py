"""What the diffusion model is asked to paint into a region.

Built-in prompts are plausible things for the region's shape: compact shapes (objects, polygons,
ellipses, rectangles) get objects, thin strokes get surfaces and textures. `--prompt TEXT` gives
one prompt for every sample; `--prompts FILE` a list (one per line, `#` starts a comment). Each
sample draws its prompt with its own generator, so the draw is in the log and replayable.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

OBJECTS = (
    "a potted plant", "a red backpack", "a wooden chair", "a parked bicycle", "a cardboard box",
    "a street lamp", "a small dog", "a ceramic vase with flowers", "a stack of books", "a traffic cone",
    "a coffee mug", "a leather handbag", "a bird sitting", "a glass bottle", "a road sign",
    "a person standing", "a window with curtains", "a rock", "a tree stump", "a blue umbrella",
)
TEXTURES = (
    "grass", "weathered concrete", "brick wall", "gravel path", "wooden planks", "sand",
    "water ripples", "clear sky", "rusty metal", "fallen leaves", "snow", "asphalt road",
    "painted plaster wall", "tiled floor", "moss on stone",
)
PROMPTS_BY_KIND: dict[str, tuple[str, ...]] = {
    "object": OBJECTS, "polygon": OBJECTS, "ellipse": OBJECTS, "rect": OBJECTS, "stroke": TEXTURES,
}
STYLE = ", photo, natural lighting, high detail"
NEGATIVE_PROMPT = "blurry, low quality, distorted, deformed, watermark, text, cartoon, painting"


def read_prompts(path: str | os.PathLike) -> tuple[str, ...]:
    """Prompts from a text file: one per line; blank lines and `#` comments are skipped.

    Raises ValueError naming `--prompts` when the file cannot be read or holds no prompt.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"--prompts {path}: cannot read it: {e}") from None
    prompts = tuple(s for s in (line.split("#", 1)[0].strip() for line in text.splitlines()) if s)
    if not prompts:
        raise ValueError(f"--prompts {path}: no prompt in the file (one per line, '#' starts a comment)")
    return prompts


def draw_prompt(rng: np.random.Generator, region_kind: str, prompts: tuple[str, ...] | None = None) -> str:
    """One prompt: a draw from the user's `prompts`, else from the built-in list for `region_kind`.

    Built-in prompts get a short photographic style suffix; the user's are used as written.
    """
    if prompts:
        return prompts[int(rng.integers(len(prompts)))]
    choices = PROMPTS_BY_KIND.get(region_kind, OBJECTS)
    return choices[int(rng.integers(len(choices)))] + STYLE
