"""Reading input photos safely: any common format and mode in, 8-bit RGB out, or a clear reason why not.

Size is checked from the header before any pixel is decoded (no decompression bombs). EXIF
orientation is applied. Grayscale, palette, RGBA/LA (composited on white), CMYK, 16-bit and
float images are converted to 8-bit RGB.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from forgery_synth.synthesis.exif import exif_summary

MIN_SIDE = 64
DEFAULT_MAX_PIXELS = 64_000_000
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".bmp", ".gif", ".jfif"}


class ImageRejected(ValueError):
    """An input that cannot be used; the message says which file and why."""


@dataclass
class LoadedImage:
    """A decoded source photo.

    rgb: HxWx3 uint8 RGB, 0–255, orientation applied.
    sha256: hex digest of the file's bytes.
    exif: summary of the source EXIF (Make, Model, DateTime, Software, Orientation).
    exif_raw: the raw EXIF block, or None.
    """

    path: str
    rgb: np.ndarray
    sha256: str
    exif: dict
    exif_raw: bytes | None

    @property
    def size(self) -> list[int]:
        """[width, height]."""
        return [int(self.rgb.shape[1]), int(self.rgb.shape[0])]


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_image(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS, *, orient: bool = True) -> LoadedImage:
    """Read `path` as 8-bit RGB; raises ImageRejected with the reason when it cannot be used.

    The one loader of every entry point (synthesis, `build-shards --real`, pair pictures), so a
    16-bit, palette or transparent photo gives the same pixels wherever it is read. `orient`
    applies the EXIF orientation (raw photos); files the engine wrote are already upright.
    """
    path = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise ImageRejected(f"cannot read file: {e.strerror or e}") from None
    if not data:
        raise ImageRejected("empty file")
    im = _open_header(io.BytesIO(data), max_pixels)
    w, h = im.size
    if w * h > max_pixels:
        raise ImageRejected(f"image is {w}x{h} = {w * h} pixels, above --max-pixels {max_pixels}")
    try:
        with _bomb_limit(max_pixels):
            im.load()
            exif_raw = im.info.get("exif")
            summary = exif_summary(exif_raw)
            if orient:
                im = ImageOps.exif_transpose(im)
            rgb = to_rgb8(im)
    except ImageRejected:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise ImageRejected(f"truncated or corrupt image data: {e}") from None
    h, w = rgb.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise ImageRejected(f"image is {w}x{h}; both sides must be at least {MIN_SIDE} px")
    return LoadedImage(path=path, rgb=rgb, sha256=hashlib.sha256(data).hexdigest(), exif=summary, exif_raw=exif_raw)


def _open_header(fp: str | os.PathLike | io.BytesIO, max_pixels: int) -> Image.Image:
    """PIL's lazy open of a file or buffer under the decompression-bomb limit (nothing decoded);
    ImageRejected with the reason when the header is unusable."""
    try:
        with _bomb_limit(max_pixels):
            return Image.open(fp)
    except Image.DecompressionBombError as e:
        raise ImageRejected(f"image is above --max-pixels {max_pixels}: {e}") from None
    except UnidentifiedImageError:
        raise ImageRejected("not an image (format not recognised)") from None
    except (OSError, ValueError, SyntaxError) as e:
        raise ImageRejected(f"unreadable image header: {e}") from None


def probe_image(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[list[int], dict]:
    """([width, height] as stored, before any EXIF orientation; the EXIF summary) from the file's
    header, no pixel decoded. Raises ImageRejected with the reason when the header is unusable."""
    with _open_header(path, max_pixels) as im:
        w, h = im.size
        raw = im.info.get("exif")
    return [int(w), int(h)], exif_summary(raw)


def decode_rgb(data: bytes | str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Encoded image bytes (or a file) -> HxWx3 uint8 RGB, 0-255, by the same conversions as
    `load_image` (16-bit scaled, alpha composited on white, palette and CMYK converted), under the
    same decompression-bomb limit; no EXIF orientation (masks of benchmarks are not rotated either).

    The decoder of every reader that is handed bytes: shards in training, evaluation and the audit.
    Raises ImageRejected (a ValueError for callers that catch decoding errors) with the reason.
    """
    try:
        with _bomb_limit(max_pixels):
            with Image.open(io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data) as im:
                im.load()
                rgb = to_rgb8(im)
                return rgb if rgb.flags.writeable else rgb.copy()  # callers (torch.from_numpy) may write
    except Image.DecompressionBombError as e:
        raise ImageRejected(f"image is above {max_pixels} pixels: {e}") from None
    except UnidentifiedImageError:
        raise ImageRejected("not an image (format not recognised)") from None


class _bomb_limit:
    """Temporarily tighten Pillow's decompression-bomb limit to `max_pixels`."""

    def __init__(self, max_pixels: int) -> None:
        self.max_pixels = max_pixels

    def __enter__(self) -> None:
        self.saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = self.max_pixels
        self.warnings = warnings.catch_warnings()
        self.warnings.__enter__()
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own check reports it

    def __exit__(self, *exc: object) -> None:
        self.warnings.__exit__(*exc)
        Image.MAX_IMAGE_PIXELS = self.saved


def to_rgb8(im: Image.Image) -> np.ndarray:
    """Any Pillow image -> HxWx3 uint8 RGB (alpha composited on white, 16-bit and float scaled)."""
    mode = im.mode
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        mode = im.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"))
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(im).astype(np.float64)
        top = 65535.0 if arr.max(initial=0) > 255 else 255.0
        gray = np.clip(np.rint(arr * (255.0 / top)), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if mode == "F":
        arr = np.asarray(im).astype(np.float64)
        scale = 255.0 if arr.max(initial=0) <= 1.0 else 1.0
        gray = np.clip(np.rint(arr * scale), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if mode != "RGB":
        try:
            im = im.convert("RGB")
        except ValueError as e:
            raise ImageRejected(f"unsupported image mode {mode!r}: {e}") from None
    return np.ascontiguousarray(np.asarray(im))


def discover_inputs(paths: list[str | os.PathLike]) -> list[Path]:
    """Files named directly, plus image files found recursively in named folders; sorted, unique.

    Folder walks keep files with an image suffix and skip hidden entries; a file named directly
    is always kept, so a wrong file given by name gets its own reject line.
    Raises FileNotFoundError for a path that does not exist.
    """
    found: set[Path] = set()
    for p in map(Path, paths):
        if p.is_dir():
            for root, dirs, files in os.walk(p):
                dirs[:] = [d for d in dirs if not d.startswith(".")]
                for name in files:
                    if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_SUFFIXES:
                        found.add(Path(root) / name)
        elif p.exists():
            found.add(p)
        else:
            raise FileNotFoundError(f"input not found: {p}")
    return sorted(found, key=str)


class NoImages(ValueError):
    """No image in the inputs: a path that does not exist, or folders without an image file.
    Nothing is produced (exit 1), the same outcome whichever of the two it was."""


def find_images(paths: list[str | os.PathLike]) -> list[Path]:
    """`discover_inputs`, refusing an empty result or a missing path with `NoImages`
    ("no images found under DIR")."""
    try:
        found = discover_inputs(paths)
    except FileNotFoundError as e:
        raise NoImages(f"{e}: no images found") from None
    if not found:
        raise NoImages("no images found under " + ", ".join(str(p) for p in paths))
    return found


def is_grey(rgb: np.ndarray) -> bool:
    """True when every pixel of `rgb` (HxWx3 uint8) has R == G == B: a greyscale photo."""
    return bool((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all())


def grey_rgb(rgb: np.ndarray) -> np.ndarray:
    """`rgb` (HxWx3 uint8) as grey in all three channels (ITU-R 601 luma, OpenCV's rounding).

    Pixels that already have R == G == B keep their value exactly, so applying this to a forgery of
    a grey photo changes only the forged pixels.
    """
    import cv2

    grey = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
    return np.repeat(grey[..., None], 3, axis=2)
