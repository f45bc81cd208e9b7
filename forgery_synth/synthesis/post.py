"""The global post-processing chain (`--post`): whole-image traces that never make an image fake.

Spec: comma-separated steps `name:lo-hi` (or `name:value`), applied in order, e.g.
`jpeg:70-95,resize:0.5-1.0`. Steps and units:

    jpeg:Q1-Q2     recompress at a quality drawn in [Q1, Q2] (integers 1–100)
    resize:S1-S2   rescale the whole image by a factor in [S1, S2] (the mask follows: every
                   output pixel that mixes in a forged pixel)
    noise:D1-D2    add Gaussian noise, standard deviation in [D1, D2] on the 0–255 scale
                   (a standard deviation, not a variance as in IMDL-BenCo's robustness levels)
    blur:G1-G2     Gaussian blur, sigma in [G1, G2] px

Each drawn step is logged with `"scope": "global"`; the mask never gains a pixel from it.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from forgery_synth.synthesis.loading import is_grey

POST_STEPS = {
    # name: (lowest allowed, highest allowed, integer?)
    "jpeg": (1.0, 100.0, True),
    "resize": (0.05, 4.0, False),
    "noise": (0.0, 100.0, False),
    "blur": (0.1, 20.0, False),
}


@dataclass(frozen=True)
class PostStep:
    """One step of the chain with the range its value is drawn from."""

    name: str
    lo: float
    hi: float


def parse_post(spec: str) -> list[PostStep]:
    """Parse a `--post` spec; raises ValueError naming the bad step."""
    steps: list[PostStep] = []
    for raw in (s.strip() for s in spec.split(",")):
        if not raw:
            continue
        name, sep, rng_text = raw.partition(":")
        name = name.strip()
        if name not in POST_STEPS:
            raise ValueError(f"--post step {raw!r}: unknown step {name!r}; expected one of {', '.join(POST_STEPS)}")
        if not sep:
            raise ValueError(f"--post step {raw!r}: give a value or range, e.g. {name}:{_example(name)}")
        try:
            parts = [float(p) for p in rng_text.split("-")] if not rng_text.startswith("-") else []
        except ValueError:
            parts = []
        if len(parts) not in (1, 2):
            raise ValueError(f"--post step {raw!r}: expected {name}:LO-HI or {name}:VALUE, e.g. {name}:{_example(name)}")
        lo, hi = parts[0], parts[-1]
        low, high, _ = POST_STEPS[name]
        if not (low <= lo <= hi <= high):
            raise ValueError(f"--post step {raw!r}: range must satisfy {low:g} <= LO <= HI <= {high:g}")
        steps.append(PostStep(name, lo, hi))
    return steps


def _example(name: str) -> str:
    return {"jpeg": "70-95", "resize": "0.5-1.0", "noise": "1-5", "blur": "0.5-1.5"}[name]


def draw_post(steps: list[PostStep], rng: np.random.Generator) -> list[dict]:
    """Draw each step's value; returns the logged global operations."""
    ops = []
    for step in steps:
        if step.name == "jpeg":
            ops.append({"op": "jpeg", "scope": "global", "quality": int(rng.integers(int(step.lo), int(step.hi) + 1))})
        elif step.name == "resize":
            ops.append({"op": "resize", "scope": "global", "scale": round(float(rng.uniform(step.lo, step.hi)), 4)})
        elif step.name == "noise":
            ops.append({"op": "noise", "scope": "global", "std": round(float(rng.uniform(step.lo, step.hi)), 3),
                        "unit": "standard deviation, 0-255 scale", "noise_seed": int(rng.integers(0, 2**31 - 1))})
        elif step.name == "blur":
            ops.append({"op": "blur", "scope": "global", "sigma": round(float(rng.uniform(step.lo, step.hi)), 3)})
    return ops


def encode_jpeg(image: np.ndarray, quality: int, exif: bytes | None = None) -> bytes:
    """HxWx3 uint8 RGB -> JPEG bytes (Pillow, 4:2:0, optimised tables off: stable bytes)."""
    buf = io.BytesIO()
    kwargs = {"exif": exif} if exif else {}
    Image.fromarray(image).save(buf, format="JPEG", quality=int(quality), **kwargs)
    return buf.getvalue()


def decode(data: bytes) -> np.ndarray:
    """Encoded image bytes -> HxWx3 uint8 RGB."""
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def resize_mask(mask: np.ndarray, size: tuple[int, int], scale: float) -> np.ndarray:
    """The mask (HxW uint8 {0, 255}) in the resized frame `size` (w, h): every output pixel whose
    value mixes in a masked input pixel, so the resized image changes nothing outside it.

    Shrinking (area interpolation): output pixels whose area covers any masked pixel. Enlarging
    (bicubic, 4x4 input support): the bilinear footprint grown by the extra input pixel of reach.
    """
    cover = cv2.resize(mask.astype(np.float32), size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR) > 0
    if scale >= 1:
        r = int(np.ceil(scale))
        cover = cv2.dilate(cover.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_RECT, (2 * r + 1, 2 * r + 1))) > 0
    return cover.astype(np.uint8) * 255


def apply_global(image: np.ndarray, masks: list[np.ndarray], op: dict) -> tuple[np.ndarray, list[np.ndarray]]:
    """Apply one logged global op to the image (HxWx3 uint8); masks (HxW uint8) only follow resizes."""
    name = op["op"]
    if name == "jpeg":
        return decode(encode_jpeg(image, op["quality"])), masks
    if name == "resize":
        h, w = image.shape[:2]
        size = (max(1, round(w * op["scale"])), max(1, round(h * op["scale"])))
        inter = cv2.INTER_AREA if op["scale"] < 1 else cv2.INTER_CUBIC
        return cv2.resize(image, size, interpolation=inter), [resize_mask(m, size, op["scale"]) for m in masks]
    if name == "noise":
        rng = np.random.default_rng(op["noise_seed"])
        noise = (np.repeat(rng.normal(0.0, op["std"], image.shape[:2])[..., None], 3, axis=2) if is_grey(image)
                 else rng.normal(0.0, op["std"], image.shape))  # a grey photo stays grey
        return np.clip(np.rint(image.astype(np.float64) + noise), 0, 255).astype(np.uint8), masks
    if name == "blur":
        return cv2.GaussianBlur(image, (0, 0), op["sigma"], borderType=cv2.BORDER_REFLECT), masks
    raise ValueError(f"unknown global op {name!r}")
