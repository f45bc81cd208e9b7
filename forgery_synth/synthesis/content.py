"""What a source photo shows, for every sample of it, real or fake: "document", "portrait" or "scene".

Recorded as ``source.content`` in every log, so what depends on the subject (the portrait methods of
`mixed`, prompts that direct attention to the hairline or an ID field) is decided by the source,
never by the label. "document": a ``<stem>.layout.json`` sidecar lies beside the photo (the document
generator writes one); "portrait": a face is detected (`faces.detect_face`, on a downscaled copy);
"scene": anything else.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from forgery_synth.synthesis.faces import detect_face

CONTENTS = ("document", "portrait", "scene")

_cache: dict[str, str] = {}


def layout_sidecar(path: str | Path) -> Path:
    """The document layout file that would sit beside `path`: ``<stem>.layout.json``."""
    p = Path(path)
    return p.with_name(p.stem + ".layout.json")


def source_content(path: str | Path, rgb: np.ndarray, sha256: str | None = None) -> str:
    """"document", "portrait" or "scene" for the photo at `path` whose pixels are `rgb` (HxWx3
    uint8); cached by `sha256` (with the path) when given."""
    key = f"{sha256}|{path}" if sha256 else ""
    if key and key in _cache:
        return _cache[key]
    if layout_sidecar(path).is_file():
        content = "document"
    elif detect_face(rgb) is not None:
        content = "portrait"
    else:
        content = "scene"
    if key:
        if len(_cache) >= 4096:
            _cache.pop(next(iter(_cache)))
        _cache[key] = content
    return content
