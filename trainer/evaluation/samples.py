"""One evaluation sample (image, mask, label, its source) and the ground-truth decoding conventions, as IMDL-BenCo's."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from forgery_synth.synthesis.loading import decode_rgb

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp"}


@dataclass
class EvalSample:
    """One image to evaluate.

    Attributes:
        id: sample key (shards), id (samples dir) or image stem (benchmarks).
        ref: where the image came from (a path, or ``shard.tar:member``), for the report.
        label: 1 forged, 0 authentic, None unknown.
        method: forgery method, "authentic" for real images, None unknown.
        dataset: the source's name.
        image: HxWx3 uint8 RGB, or None when it could not be read (then ``error`` is set).
        mask: HxW bool ground truth (True = forged), all False for authentic images, None when
            unknown or unreadable.
        error: per-file error message or None.
        meta: extra fields (e.g. the conversation of a shard sample, the image path).
    """

    id: str
    ref: str
    label: int | None
    method: str | None
    dataset: str
    image: np.ndarray | None = None
    mask: np.ndarray | None = None
    error: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class SourceOptions:
    """How to read a source.

    Attributes:
        split: shard split to read (``train``, ``val``, ``test``); None reads every shard.
        name: dataset name for the breakdowns (default: the source's file or directory name).
        decode: decode images and masks (False yields samples with only ids and labels).
    """

    split: str | None = "test"
    name: str | None = None
    decode: bool = True


def load_image(data: bytes | Path) -> np.ndarray:
    """Decode an image file or bytes to HxWx3 uint8 RGB, by the synthesis engine's one decoder
    (`forgery_synth.synthesis.loading.decode_rgb`: 16-bit and transparent images as synthesis sees them).

    Raises:
        OSError / ValueError: when Pillow cannot decode it.
    """
    return decode_rgb(data)


def load_mask(data: bytes | Path) -> np.ndarray:
    """Decode a ground-truth mask to HxW bool: mean over channels > 127.5 (IMDL-BenCo's rule).

    Palette and 16-bit masks are converted to 8-bit RGB / L first.
    """
    src = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data
    with Image.open(src) as im:
        im.load()
        if im.mode in ("I;16", "I;16B", "I"):
            a = np.asarray(im, dtype=np.float64)
            return a > (a.max() / 2 if a.max() > 255 else 127.5)
        if im.mode not in ("L", "RGB"):
            im = im.convert("RGB")
        a = np.asarray(im, dtype=np.float64)
    if a.ndim == 3:
        a = a.mean(axis=2)
    return a > 127.5


def _label(v: Any) -> int | None:
    if v is None:
        return None
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, (int, float)):
        return 1 if v else 0
    s = str(v).lower()
    if s in ("fake", "forged", "tampered", "1", "true"):
        return 1
    if s in ("real", "authentic", "0", "false"):
        return 0
    return None


def _finish(s: EvalSample, image_src: bytes | Path | None, mask_src: bytes | Path | None, decode: bool) -> EvalSample:
    """Decode image and mask into ``s`` (errors recorded on the sample)."""
    if not decode:
        return s
    try:
        if image_src is None:
            raise FileNotFoundError("no image")
        s.image = load_image(image_src)
    except Exception as e:  # noqa: BLE001 - any decoding failure is a per-file error
        s.error = f"cannot read image {s.ref}: {type(e).__name__}: {e}"
        return s
    h, w = s.image.shape[:2]
    if mask_src is None:
        s.mask = np.zeros((h, w), bool) if s.label == 0 else None
        return s
    try:
        m = load_mask(mask_src)
    except Exception as e:  # noqa: BLE001
        s.error = f"cannot read mask of {s.ref}: {type(e).__name__}: {e}"
        return s
    if m.shape != (h, w):
        s.error = f"mask of {s.ref} is {m.shape[1]}x{m.shape[0]}, image is {w}x{h}"
        return s
    s.mask = m
    return s
