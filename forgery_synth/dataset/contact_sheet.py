"""`inspect`: a contact sheet of samples for a person to look at.

Each tile: the image with its mask overlaid in red, the polygons of a json answer in yellow, and
below it the label, method, template and the answer text (wrapped). Works on a shard directory,
single ``.tar`` shards, or a samples directory (index.jsonl), where the text is the log's summary.
"""

from __future__ import annotations

import io
import json
import math
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from forgery_synth.dataset import conversations as conv
from forgery_synth.dataset.tar_shards import iter_tar_samples, shard_paths
from forgery_synth.synthesis.loading import decode_rgb

TILE = 256
TEXT_LINES = 9
LINE_CHARS = 44
def _font(size: int = 11) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Noto Sans CJK (the `mplfonts` package, as the documents use), so Chinese answers draw as
    glyphs, not boxes; Pillow's built-in font if that package is missing."""
    from forgery_synth.documents.fonts import FontUnavailable, load_font

    try:
        return load_font("sans", size)
    except FontUnavailable:
        return ImageFont.load_default(size=size)


def _from_shards(paths: list[Path]) -> Iterator[tuple[np.ndarray, np.ndarray, str]]:
    for path in paths:
        for key, members in iter_tar_samples(path):
            ext = "png" if "png" in members else "jpg"
            image = decode_rgb(members[ext])
            mask = np.asarray(Image.open(io.BytesIO(members["mask.png"])).convert("L"))
            record = json.loads(members["json"])
            answer = record["messages"][-1]["content"]
            head = f"{key[:10]} {record['split']} {record['label']} {record['method']} {record['template']}/{record['lang']}"
            yield image, mask, head + "\n" + answer


def _from_samples(root: Path) -> Iterator[tuple[np.ndarray, np.ndarray, str]]:
    for line in (root / "index.jsonl").read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        entry = json.loads(line)
        image = decode_rgb(root / entry["image"])
        mask_path = root / entry["mask"] if entry.get("mask") else None
        mask = (np.asarray(Image.open(mask_path).convert("L")) if mask_path and mask_path.is_file()
                else np.zeros(image.shape[:2], np.uint8))
        log = json.loads((root / entry["log"]).read_text(encoding="utf-8"))
        ops = "; ".join(", ".join(f"{k}={v}" for k, v in op.items() if k != "region") for op in log.get("ops", []))
        yield image, mask, f"{entry['id'][:10]} {entry['label']} {entry['method']}\n{ops}"


def _facets(head: str) -> set[str]:
    """What a tile shows, from its header line (``key split label method template/lang``)."""
    parts = head.split()
    out = {f"method:{parts[3]}"} if len(parts) > 3 else set()
    if len(parts) > 4:
        template = parts[4]
        out |= {f"template:{template.split('/')[0]}", f"template:{template}"}
    return out


def _inputs(paths: list[Path]) -> Iterator[tuple[np.ndarray, np.ndarray, str]]:
    for p in map(Path, paths):
        if p.is_dir() and (p / "index.jsonl").is_file():
            yield from _from_samples(p)
        elif p.is_dir():
            yield from _from_shards(shard_paths(p))
        elif p.is_file() and p.suffix == ".tar":
            yield from _from_shards([p])
        else:
            raise ValueError(f"{p} is neither a shard directory, a .tar shard nor a samples directory")


def _wrap(text: str, font, width: int) -> list[str]:
    """Greedy wrap by rendered width (breaks inside words, so CJK text wraps too)."""
    lines, line = [], ""
    for word in textwrap.wrap(text, LINE_CHARS, break_long_words=True) or [""]:
        for ch in (" " if line else "") + word:
            if font.getlength(line + ch) > width and line:
                lines.append(line)
                line = ch.lstrip()
            else:
                line += ch
    return lines + [line] if line or not lines else lines


def _tile(image: np.ndarray, mask: np.ndarray, text: str, font) -> Image.Image:
    """One TILE-wide tile: image (HxWx3 uint8) with mask (HxW uint8) overlaid, text below."""
    h, w = mask.shape
    overlay = image.astype(np.float32)
    on = mask > 0
    overlay[on] = overlay[on] * 0.55 + np.array([255, 0, 0], np.float32) * 0.45
    picture = Image.fromarray(overlay.astype(np.uint8))
    scale = TILE / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    picture = picture.resize(size, Image.Resampling.BILINEAR)
    tile = Image.new("RGB", (TILE, TILE + TEXT_LINES * 13 + 6), "white")
    tile.paste(picture, ((TILE - size[0]) // 2, (TILE - size[1]) // 2))
    draw = ImageDraw.Draw(tile)
    answer = text.split("\n", 1)[-1]
    if answer.startswith('{"result"'):
        try:
            _, polygons = conv.parse_json_answer(answer)
        except ValueError:
            polygons = []
        ox, oy = (TILE - size[0]) // 2, (TILE - size[1]) // 2
        for poly in polygons:
            pts = [(ox + x * scale, oy + y * scale) for x, y in zip(poly[0::2], poly[1::2])]
            draw.line(pts + pts[:1], fill=(255, 220, 0), width=2)
    shown = conv._MASK_RE.sub("", text)
    lines = [seg for part in shown.split("\n") for seg in _wrap(part, font, TILE - 6)]
    if len(lines) > TEXT_LINES:
        lines = lines[: TEXT_LINES - 1] + [lines[TEXT_LINES - 1][:-1] + "…"]
    for i, line in enumerate(lines[:TEXT_LINES]):
        draw.text((3, TILE + 3 + 13 * i), line, fill="black", font=font)
    return tile


def make_contact_sheet(paths: list[Path], out: Path, n: int = 16, cover: bool = False) -> int:
    """Write a contact sheet PNG of ``n`` samples found in ``paths``; returns how many tiles it holds
    (0: nothing found, no file written). Mask tokens are hidden in the text (they would fill the
    tile); ``<cls>`` is shown. With ``cover``, the sheet first shows one sample of every method and
    of every template (and language) it finds, then fills up in reading order."""
    font = _font()
    chosen: list[tuple[np.ndarray, np.ndarray, str]] = []
    rest: list[tuple[np.ndarray, np.ndarray, str]] = []
    seen: set[str] = set()
    for image, mask, text in _inputs(paths):
        facets = _facets(text.split("\n", 1)[0]) if cover else set()
        if facets - seen:
            seen |= facets
            chosen.append((image, mask, text))
        elif len(rest) < n:
            rest.append((image, mask, text))
        if not cover and len(rest) >= n:
            break
    tiles = [_tile(*item, font) for item in (chosen + rest)[:n]]
    if not tiles:
        return 0
    cols = math.ceil(math.sqrt(len(tiles)))
    rows = math.ceil(len(tiles) / cols)
    tw, th = tiles[0].size
    sheet = Image.new("RGB", (cols * (tw + 4) + 4, rows * (th + 4) + 4), (200, 200, 200))
    for i, tile in enumerate(tiles):
        sheet.paste(tile, (4 + (i % cols) * (tw + 4), 4 + (i // cols) * (th + 4)))
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return len(tiles)
