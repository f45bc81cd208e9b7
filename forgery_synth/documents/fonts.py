"""Fonts with CJK glyphs, from the `mplfonts` package (Noto Sans/Serif CJK SC, SimHei).

The fonts are located through the installed package's folder without importing it (its import
pulls in matplotlib), and loaded once per (family, size)."""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

from PIL import ImageFont

FAMILIES = {
    "sans": "NotoSansCJKsc-Regular.otf",
    "serif": "NotoSerifCJKsc-Regular.otf",
    "mono": "NotoSansMonoCJKsc-Regular.otf",
    "hei": "SimHei.ttf",
}
"""Font families by name -> file in mplfonts/fonts/; every one has Latin and CJK (SC) glyphs."""


class FontUnavailable(RuntimeError):
    """The CJK font package is not installed (pip install mplfonts)."""


def font_path(family: str = "sans") -> Path:
    """The file of a font family (a key of `FAMILIES`)."""
    if family not in FAMILIES:
        raise ValueError(f"unknown font family {family!r}; expected one of {', '.join(FAMILIES)}")
    spec = importlib.util.find_spec("mplfonts")
    if spec is None or not spec.submodule_search_locations:
        raise FontUnavailable("the CJK fonts come from the 'mplfonts' package: pip install mplfonts")
    path = Path(list(spec.submodule_search_locations)[0]) / "fonts" / FAMILIES[family]
    if not path.is_file():
        raise FontUnavailable(f"{path} is missing from the mplfonts package")
    return path


@functools.lru_cache(maxsize=8)
def _font_bytes(family: str) -> bytes:
    return font_path(family).read_bytes()


@functools.lru_cache(maxsize=128)
def load_font(family: str = "sans", size: int = 16) -> ImageFont.FreeTypeFont:
    """A Pillow font of `family` at `size` pixels (cached)."""
    import io

    return ImageFont.truetype(io.BytesIO(_font_bytes(family)), max(4, int(size)))


def fit_size(text: str, family: str, size: int, width: int, smallest: int = 8) -> int:
    """The largest size <= `size` at which `text` is at most `width` pixels wide."""
    while size > smallest and load_font(family, size).getlength(text) > width:
        size -= 1
    return size
