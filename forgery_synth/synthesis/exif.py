"""EXIF in and out: what the source said, and what the output says (kept, stripped or tampered).

Tampering is what a forger's editor leaves behind: `Software` names an editor and `DateTime`
moves. The drawn values are logged, so replay writes the same bytes.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import piexif

EXIF_MODES = ("keep", "strip", "tamper")
EDITORS = (
    "Adobe Photoshop 25.0 (Windows)",
    "Adobe Photoshop Lightroom Classic 13.0 (Macintosh)",
    "GIMP 2.10.36",
    "Snapseed 2.21",
    "PicsArt 24.1",
    "Meitu 10.3",
)
_FORMAT = "%Y:%m:%d %H:%M:%S"
_FALLBACK_TIME = "2024:01:01 12:00:00"


def _text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.rstrip(b"\x00").decode("utf-8", "replace").strip() or None
    return str(value)


def exif_summary(raw: bytes | None) -> dict:
    """{"Make", "Model", "DateTime", "Software", "Orientation"} from a raw EXIF block (None when absent)."""
    keys = {"Make": None, "Model": None, "DateTime": None, "Software": None, "Orientation": None}
    if not raw:
        return keys
    try:
        data = piexif.load(raw)
    except Exception:  # piexif raises bare ValueError/struct.error/KeyError on odd blocks
        return {**keys, "error": "unreadable EXIF block"}
    zeroth = data.get("0th", {})
    keys["Make"] = _text(zeroth.get(piexif.ImageIFD.Make))
    keys["Model"] = _text(zeroth.get(piexif.ImageIFD.Model))
    keys["Software"] = _text(zeroth.get(piexif.ImageIFD.Software))
    keys["DateTime"] = _text(zeroth.get(piexif.ImageIFD.DateTime) or data.get("Exif", {}).get(piexif.ExifIFD.DateTimeOriginal))
    orientation = zeroth.get(piexif.ImageIFD.Orientation)
    keys["Orientation"] = int(orientation) if isinstance(orientation, int) else None
    return keys


def camera_name(exif: dict | None) -> str:
    """The camera an EXIF summary (:func:`exif_summary`) names: ``"<Make> <Model>"``, or "" when
    either is missing. The one reader of "which camera took this photo" (the log's
    ``source.camera``, fingerprints, `build-shards --split-by camera`)."""
    make, model = ((exif or {}).get(k) for k in ("Make", "Model"))
    make, model = (" ".join(str(v).split()) if v else "" for v in (make, model))
    return f"{make} {model}" if make and model else ""


def draw_exif(mode: str, rng: np.random.Generator) -> dict:
    """The logged output-EXIF decision for one sample."""
    if mode not in EXIF_MODES:
        raise ValueError(f"unknown --exif mode {mode!r}; expected one of {EXIF_MODES}")
    if mode != "tamper":
        return {"mode": mode}
    return {
        "mode": "tamper",
        "software": str(rng.choice(EDITORS)),
        "datetime_shift_s": int(rng.integers(3600, 400 * 86400)) * (1 if rng.random() < 0.5 else -1),
    }


def _shift(value: object, seconds: int) -> bytes:
    text = _text(value) or _FALLBACK_TIME
    try:
        moment = dt.datetime.strptime(text[:19], _FORMAT)
    except ValueError:
        moment = dt.datetime.strptime(_FALLBACK_TIME, _FORMAT)
    return (moment + dt.timedelta(seconds=seconds)).strftime(_FORMAT).encode()


def output_exif(raw: bytes | None, decision: dict) -> tuple[bytes | None, str | None]:
    """The EXIF block to write, and an error note when the source block could not be rewritten.

    `keep` rewrites Orientation to 1 (the pixels are already upright) and drops the embedded
    thumbnail (it would show the unforged image).
    """
    mode = decision["mode"]
    if mode == "strip" or (mode == "keep" and not raw):
        return None, None
    try:
        data = piexif.load(raw) if raw else {"0th": {}, "Exif": {}, "GPS": {}, "1st": {}, "thumbnail": None}
    except Exception as e:
        if mode == "keep":
            return None, f"source EXIF unreadable, not kept: {type(e).__name__}"
        data = {"0th": {}, "Exif": {}, "GPS": {}, "1st": {}, "thumbnail": None}
    data["thumbnail"] = None
    data["1st"] = {}
    data.setdefault("0th", {})[piexif.ImageIFD.Orientation] = 1
    if mode == "tamper":
        shift = decision["datetime_shift_s"]
        zeroth, exif_ifd = data["0th"], data.setdefault("Exif", {})
        zeroth[piexif.ImageIFD.Software] = decision["software"].encode()
        zeroth[piexif.ImageIFD.DateTime] = _shift(zeroth.get(piexif.ImageIFD.DateTime), shift)
        if piexif.ExifIFD.DateTimeOriginal in exif_ifd:
            exif_ifd[piexif.ExifIFD.DateTimeOriginal] = _shift(exif_ifd[piexif.ExifIFD.DateTimeOriginal], shift)
    try:
        return piexif.dump(data), None
    except Exception as e:
        # Some makers' blocks do not survive a rewrite; drop the maker note and try once more.
        data.get("Exif", {}).pop(piexif.ExifIFD.MakerNote, None)
        try:
            return piexif.dump(data), None
        except Exception:
            return None, f"source EXIF could not be rewritten ({type(e).__name__}); written without EXIF"
