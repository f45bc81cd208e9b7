"""What every forgery method is: a parameter draw and a pure apply, as albumentations splits them.

`get_params(image, rng, options, donor)` makes every random choice and returns a plain JSON-able
dict (the logged operation). `apply(image, params, donor)` uses no randomness at all, so applying
a logged operation to the same source reproduces the sample byte for byte.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Optional

import numpy as np

from forgery_synth.methods.forgery import Forgery
from forgery_synth.synthesis.blend import BLENDS, draw_blend
from forgery_synth.synthesis.regions import propose_region

if TYPE_CHECKING:
    from forgery_synth.methods.inpaint_config import InpaintConfig


@dataclass(frozen=True)
class MethodOptions:
    """The user's constraints on a local forgery.

    region: a kind from `regions.REGION_KINDS` or "auto" (drawn per sample).
    area: (min, max) fraction of the image the forged region covers.
    blend: "none", "feather", "poisson", or "auto" (drawn per sample from what suits the method).
    inpaint: the diffusion model settings (`--method inpaint`), or None.
    layout: the source's layout sidecar (`<stem>.layout.json`, `forgery documents`), read by the
        engine (`documents.sidecar.read_layout`) when it describes this very image, else None.
        Text methods copy what they use of it into their logged parameters (so a replay needs no
        layout); other methods ignore it.
    """

    region: str = "auto"
    area: tuple[float, float] = (0.02, 0.15)
    blend: str = "auto"
    inpaint: Optional["InpaintConfig"] = None
    layout: Optional[dict] = None


GetParams = Callable[[np.ndarray, np.random.Generator, MethodOptions, Optional[np.ndarray]], dict]
Apply = Callable[[np.ndarray, dict, Optional[np.ndarray]], Forgery]


@dataclass(frozen=True)
class Method:
    """A registered forgery method."""

    name: str
    get_params: GetParams
    apply: Apply
    needs_donor: bool = False
    description: str = ""
    needs_model: bool = False
    subject: str = "any"
    """What the method needs its source to show: "any" photo; a "portrait" (a detected face,
    `synthesis.faces`; the log's ``source.content``); a "document" (text methods: a page with text
    lines, else the sample is rejected). `mixed` never draws a portrait method for a source without a face."""


def choose_blend(options: MethodOptions, rng: np.random.Generator, shape: tuple[int, int], auto: tuple[str, ...]) -> dict:
    """The blend for one sample: the forced one, or a draw from `auto` when options.blend is "auto"."""
    name = options.blend
    if name == "auto":
        name = str(rng.choice(auto))
    elif name not in BLENDS:
        raise ValueError(f"unknown blend {name!r}; expected one of {BLENDS + ('auto',)}")
    return draw_blend(name, rng, shape)


def object_region(options: MethodOptions, image: np.ndarray, rng: np.random.Generator,
                  area: tuple[float, float] | None = None) -> dict:
    """The region of a copy-move, splice or erase: with `--region auto` an object (merged
    superpixels, smoothed outline; a polygon when no object of that size fits), since people copy,
    paste and remove things, not random shapes; otherwise the kind the user asked for."""
    area = options.area if area is None else area
    if options.region == "auto":
        return propose_region("object", image, rng, area, fallback="polygon")
    return propose_region(options.region, image, rng, area)
