"""Reading a source's layout sidecar: `<stem>.layout.json` beside `<stem>.<ext>`.

The synthesis engine reads it for every source and hands it to the methods in
`MethodOptions.layout`; text methods copy what they use (boxes, text, font, size, colour) into
their logged parameters, so a replay needs only the log and the image. A sidecar is used only when
its `sha256` and `size` are the source's: a re-encoded or edited page falls back to text-line
detection, as a user's own scan does."""

from __future__ import annotations

import json
import os
from pathlib import Path


def sidecar_path(image_path: str | os.PathLike) -> Path:
    """Where the layout of `image_path` would be."""
    p = Path(image_path)
    return p.with_name(p.stem + ".layout.json")


def read_layout(image_path: str | os.PathLike, sha256: str, size: list[int] | tuple[int, int]) -> dict | None:
    """The layout beside `image_path` if it describes this very image (sha256, size [w, h]), else None.
    An unreadable or malformed sidecar counts as none (the page is treated like a scan)."""
    path = sidecar_path(image_path)
    if not path.is_file():
        return None
    try:
        layout = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(layout, dict) or layout.get("sha256") != sha256 or list(layout.get("size", [])) != list(size):
        return None
    if not isinstance(layout.get("fields"), list):
        return None
    return layout
