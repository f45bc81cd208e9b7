"""Local traces: one region alone is recompressed, resampled, contrast-shifted, noised or blurred.

These leave the content in place but change the region's statistics, which is what detectors of
double compression, resampling and noise inconsistency look for. Each is a forgery with a mask.
The whole-image versions are the global `--post` chain (forgery_synth/synthesis/post.py), which never makes
an image fake.

Each trace draws its own parameters (plus the shared region and blend), then modifies a crop
around the region and composites the region back.
"""

from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

from forgery_synth.methods.base import Method, MethodOptions, choose_blend
from forgery_synth.methods.forgery import Forgery
from forgery_synth.synthesis.blend import composite, edge_band
from forgery_synth.synthesis.loading import is_grey
from forgery_synth.synthesis.regions import propose_region, rasterize

PAD = 16  # context around the region for filters and resampling
JPEG_QUALITY = (30, 80)
"""Local recompression quality range: above ~80 a recompressed region rarely differs visibly."""


def _draw_jpeg(rng: np.random.Generator) -> dict:
    aligned = bool(rng.random() < 0.5)
    grid = [0, 0] if aligned else [int(v) for v in rng.integers(1, 8, 2)]
    return {"quality": int(rng.integers(JPEG_QUALITY[0], JPEG_QUALITY[1] + 1)), "grid": grid}


def _jpeg(crop: np.ndarray, params: dict, x0: int, y0: int) -> np.ndarray:
    """Recompress at `quality`; the 8x8 grid starts at image coordinates `grid` (mod 8)."""
    gx, gy = params["grid"]
    ox, oy = (gx - x0) % 8, (gy - y0) % 8  # first crop pixel on the chosen grid
    out = crop.copy()
    part = np.ascontiguousarray(crop[oy:, ox:, ::-1])
    ok, buf = cv2.imencode(".jpg", part, [cv2.IMWRITE_JPEG_QUALITY, params["quality"]])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    out[oy:, ox:] = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]
    return out


_INTERPOLATIONS = {"linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC, "area": cv2.INTER_AREA, "nearest": cv2.INTER_NEAREST}


def _draw_resample(rng: np.random.Generator) -> dict:
    return {
        "factor": round(float(rng.uniform(0.3, 0.7)), 3),
        "order": str(rng.choice(["down-up", "up-down"])),
        "interpolation": str(rng.choice(["linear", "cubic", "area"])),
    }


def _resample(crop: np.ndarray, params: dict, x0: int, y0: int) -> np.ndarray:
    """Resize by `factor` and back (or up by 1/factor and back): periodic interpolation traces."""
    h, w = crop.shape[:2]
    f = params["factor"] if params["order"] == "down-up" else 1.0 / params["factor"]
    inter = _INTERPOLATIONS[params["interpolation"]]
    mid = cv2.resize(crop, (max(2, round(w * f)), max(2, round(h * f))), interpolation=inter)
    back = cv2.INTER_LINEAR if params["interpolation"] == "area" else inter
    return cv2.resize(mid, (w, h), interpolation=back)


def _draw_contrast(rng: np.random.Generator) -> dict:
    if rng.random() < 0.5:
        gamma = float(rng.uniform(0.6, 0.85) if rng.random() < 0.5 else rng.uniform(1.2, 1.7))
        return {"curve": "gamma", "gamma": round(gamma, 3)}
    gain = float(rng.uniform(0.7, 0.87) if rng.random() < 0.5 else rng.uniform(1.15, 1.4))
    return {"curve": "linear", "gain": round(gain, 3), "offset": int(rng.integers(-20, 21))}


def _contrast(crop: np.ndarray, params: dict, x0: int, y0: int) -> np.ndarray:
    """A tone curve through a lookup table: gamma, or gain about mid-grey plus an offset."""
    x = np.arange(256, dtype=np.float64)
    if params["curve"] == "gamma":
        y = 255.0 * (x / 255.0) ** params["gamma"]
    else:
        y = (x - 127.5) * params["gain"] + 127.5 + params["offset"]
    lut = np.clip(np.rint(y), 0, 255).astype(np.uint8)
    return cv2.LUT(crop, lut)


def _draw_noise(rng: np.random.Generator) -> dict:
    return {"std": round(float(rng.uniform(3.0, 12.0)), 2), "unit": "standard deviation, 0-255 scale",
            "noise_seed": int(rng.integers(0, 2**31 - 1))}


def _noise(crop: np.ndarray, params: dict, x0: int, y0: int) -> np.ndarray:
    """Additive Gaussian noise of standard deviation `std` (0–255 units), from its own seed."""
    rng = np.random.default_rng(params["noise_seed"])
    if is_grey(crop):  # one noise field for all channels: a grey photo stays grey
        noise = np.repeat(rng.normal(0.0, params["std"], crop.shape[:2])[..., None], 3, axis=2)
    else:
        noise = rng.normal(0.0, params["std"], crop.shape)
    return np.clip(np.rint(crop.astype(np.float64) + noise), 0, 255).astype(np.uint8)


def _draw_blur(rng: np.random.Generator) -> dict:
    return {"sigma": round(float(rng.uniform(1.5, 4.0)), 2)}


def _blur(crop: np.ndarray, params: dict, x0: int, y0: int) -> np.ndarray:
    """Gaussian blur of `sigma` px."""
    return cv2.GaussianBlur(crop, (0, 0), params["sigma"], borderType=cv2.BORDER_REFLECT)


Modify = Callable[[np.ndarray, dict, int, int], np.ndarray]

_TRACES: dict[str, tuple[Callable[[np.random.Generator], dict], Modify, str]] = {
    "jpeg": (_draw_jpeg, _jpeg, "the region recompressed at another JPEG quality, aligned or shifted 8x8 grid"),
    "resample": (_draw_resample, _resample, "the region resampled down and up (or up and down)"),
    "contrast": (_draw_contrast, _contrast, "the region's contrast or gamma shifted"),
    "noise": (_draw_noise, _noise, "Gaussian noise added to the region"),
    "blur": (_draw_blur, _blur, "the region blurred"),
}

TRACE_NAMES = tuple(_TRACES)


def _make(name: str) -> Method:
    draw, modify, description = _TRACES[name]

    def get_params(image: np.ndarray, rng: np.random.Generator, options: MethodOptions, donor: np.ndarray | None = None) -> dict:
        region = propose_region(options.region, image, rng, options.area)
        trace = draw(rng)
        blend = choose_blend(options, rng, image.shape[:2], ("none", "feather"))
        return {"op": name, "region": region, **trace, **blend}

    def apply(image: np.ndarray, params: dict, donor: np.ndarray | None = None) -> Forgery:
        footprint = rasterize(params["region"], image.shape[:2])
        ys, xs = np.nonzero(footprint)
        h, w = footprint.shape
        y0, y1 = max(0, int(ys.min()) - PAD), min(h, int(ys.max()) + 1 + PAD)
        x0, x1 = max(0, int(xs.min()) - PAD), min(w, int(xs.max()) + 1 + PAD)
        modified = image.copy()
        modified[y0:y1, x0:x1] = modify(np.ascontiguousarray(image[y0:y1, x0:x1]), params, x0, y0)
        out = composite(image, modified, footprint, params["blend"], params["radius"])
        return Forgery(
            image=out, mask=footprint.astype(np.uint8) * 255, op=params,
            edge=edge_band(footprint, params["radius"]).astype(np.uint8) * 255,
        )

    get_params.__doc__ = f"Draw the region, blend and parameters of the {name} trace."
    apply.__doc__ = f"Apply the {name} trace inside the region; HxWx3 uint8 in, Forgery out."
    return Method(name=name, get_params=get_params, apply=apply, description=description)


TRACE_METHODS: dict[str, Method] = {name: _make(name) for name in TRACE_NAMES}
