"""Turning an operation log into the sample's files, and replaying a log byte for byte.

The synthesis engine draws every random choice into the log first and then calls `render` on
the log, exactly as `replay` does. So a replay takes the very same code path as the original run.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from forgery_synth.methods import METHODS
from forgery_synth.synthesis.exif import output_exif
from forgery_synth.synthesis.loading import (
    DEFAULT_MAX_PIXELS,
    LoadedImage,
    grey_rgb,
    load_image,
)
from forgery_synth.synthesis.post import apply_global, decode, encode_jpeg

VISIBLE_LEVELS = 2
"""A pixel counts as changed when some channel moved by more than this many grey levels (0-255)."""

PNG_COMPRESS_LEVEL = 3
"""zlib level for image PNGs: 3 is within a few percent of 6's size at about half the time."""


class ReplayError(ValueError):
    """A log that cannot be replayed against the given source (or donor).

    ``option`` names the input that is wrong ("--source", "--donor") when it is the caller's choice
    rather than the log's content, so a CLI can answer with exit 2 and the fix."""

    def __init__(self, message: str, option: str | None = None) -> None:
        super().__init__(message)
        self.option = option


@dataclass
class RenderedSample:
    """A rendered sample, ready to be written.

    image: HxWx3 uint8 RGB, the pixels the image file decodes to.
    image_bytes: the encoded image file (PNG, or JPEG when the last op is a global JPEG).
    mask: HxW uint8 {0, 255}. edge: HxW uint8 {0, 255} band around the region's edge.
    source_mask: HxW uint8 {0, 255}, the copied region (copy-move only) or None.
    """

    image: np.ndarray
    image_bytes: bytes
    ext: str
    mask: np.ndarray
    edge: np.ndarray
    source_mask: np.ndarray | None
    exif_note: str | None
    changed: float = 1.0
    """Share of mask pixels the local operations changed visibly (some channel by more than
    `VISIBLE_LEVELS`), measured before any global op."""

    @property
    def mask_area(self) -> float:
        """Fraction of the image the mask covers."""
        return round(float((self.mask > 0).mean()), 6)


def encode_png(image: np.ndarray, exif: bytes | None = None) -> bytes:
    """HxWx3 uint8 RGB -> PNG bytes (with an eXIf chunk when `exif` is given)."""
    buf = io.BytesIO()
    kwargs = {"exif": exif} if exif else {}
    Image.fromarray(image).save(buf, format="PNG", compress_level=PNG_COMPRESS_LEVEL, **kwargs)
    return buf.getvalue()


def encode_mask(mask: np.ndarray) -> bytes:
    """HxW uint8 {0, 255} -> 8-bit grayscale PNG bytes."""
    ok, buf = cv2.imencode(".png", mask, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:
        raise RuntimeError("PNG encoding of a mask failed")
    return buf.tobytes()


def render(log: dict, source: np.ndarray, exif_raw: bytes | None = None, donor: np.ndarray | None = None,
           *, measure_only: bool = False) -> RenderedSample:
    """Apply the log's operations to `source` (HxWx3 uint8 RGB) and encode the result.

    Local operations run through the method registry; global ones (`"scope": "global"`) through
    the post chain. A final global JPEG is the file's own encoding, so its trace is real. A grey
    source (``log["source"]["grey"]``) gives a grey forgery: after each local operation the image is
    made grey again, which touches only the pixels that operation changed. `measure_only` stops after
    the local operations (no global op, no encoding: ``image_bytes`` is empty) to measure `changed`
    cheaply, as the engine's redraw loop does.
    """
    keep_grey = bool(log["source"].get("grey"))
    image = source
    h, w = image.shape[:2]
    mask = np.zeros((h, w), np.uint8)
    edge = np.zeros((h, w), np.uint8)
    source_mask: np.ndarray | None = None
    ops = log["ops"]
    final_jpeg = ops[-1] if ops and ops[-1]["op"] == "jpeg" and ops[-1].get("scope") == "global" else None
    changed = None
    for op in ops[:-1] if final_jpeg else ops:
        if op.get("scope") == "global":
            if changed is None:
                changed = _changed_share(source, image, mask)
            if measure_only:
                break
            masks = [mask, edge] + ([source_mask] if source_mask is not None else [])
            image, masks = apply_global(image, masks, op)
            mask, edge = masks[0], masks[1]
            source_mask = masks[2] if len(masks) > 2 else None
            continue
        method = METHODS.get(op["op"])
        if method is None:
            raise ReplayError(f"unknown operation {op['op']!r} in the log")
        if method.needs_donor and donor is None:
            named = (log.get("donor") or {}).get("path")
            raise ReplayError(f"operation {op['op']!r} needs the donor photo" + (f" (the log names {named})" if named else ""),
                              option="--donor")
        forgery = method.apply(image, op, donor)
        image = grey_rgb(forgery.image) if keep_grey else forgery.image
        mask = np.maximum(mask, forgery.mask)
        if forgery.edge is not None:
            edge = np.maximum(edge, forgery.edge)
        if forgery.source_mask is not None:
            source_mask = forgery.source_mask
    if changed is None:
        changed = _changed_share(source, image, mask)
    if measure_only:
        return RenderedSample(image, b"", "", mask, edge, source_mask, None, changed)
    exif, note = output_exif(exif_raw, log["output"]["exif"])
    if final_jpeg:
        data = encode_jpeg(image, final_jpeg["quality"], exif)
        return RenderedSample(decode(data), data, "jpg", mask, edge, source_mask, note, changed)
    return RenderedSample(image, encode_png(image, exif), "png", mask, edge, source_mask, note, changed)


def _changed_share(source: np.ndarray, image: np.ndarray, mask: np.ndarray) -> float:
    """Share of `mask` pixels where some channel of `image` differs from `source` by > VISIBLE_LEVELS."""
    inside = mask > 0
    if not inside.any() or source.shape != image.shape:
        return 0.0 if not inside.any() else 1.0
    diff = np.abs(source[inside].astype(np.int16) - image[inside].astype(np.int16))
    return float((diff > VISIBLE_LEVELS).any(axis=-1).mean())


def replay(
    log: dict | str | os.PathLike,
    image: str | os.PathLike | LoadedImage | np.ndarray,
    donor: str | os.PathLike | LoadedImage | np.ndarray | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> RenderedSample:
    """Reproduce a sample from its log and its source photo (and donor, for splices).

    Given paths, the files are checked against the sha256 in the log, so a replay either
    reproduces the sample byte for byte or says which input differs. A bare array carries no
    EXIF, so with `--exif keep` only its pixels and mask are guaranteed to match.
    """
    if not isinstance(log, dict):
        log = json.loads(Path(log).read_text())
    exif_raw = None
    if isinstance(image, (str, os.PathLike)):
        image = load_image(image, max_pixels)
    if isinstance(image, LoadedImage):
        if image.sha256 != log["source"]["sha256"]:
            raise ReplayError(f"{image.path} has sha256 {image.sha256[:12]}…, the log expects {log['source']['sha256'][:12]}… "
                              f"(the log names {log['source'].get('path')})", option="--source")
        exif_raw, image = image.exif_raw, image.rgb
    donor_rgb = None
    if donor is not None:
        if isinstance(donor, (str, os.PathLike)):
            donor = load_image(donor, max_pixels)
        if isinstance(donor, LoadedImage):
            expected = log.get("donor", {}).get("sha256")
            if expected and donor.sha256 != expected:
                raise ReplayError(f"{donor.path} has sha256 {donor.sha256[:12]}…, the log expects {expected[:12]}… "
                                  f"(the log names {log['donor'].get('path')})", option="--donor")
            donor = donor.rgb
        donor_rgb = donor
    return render(log, image, exif_raw, donor_rgb)
