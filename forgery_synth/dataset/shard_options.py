"""The options of `build-shards` and the parsers of their command-line forms."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from forgery_synth.dataset import conversations as conv
from forgery_synth.dataset.answer_tokens import DEFAULT_CLS_POSITION, DEFAULT_MASK_POSITION, MASK_POSITIONS
from forgery_synth.dataset.splits import SPLIT_BY
from forgery_synth.dataset.qwen_frame import (
    DEFAULT_MAX_PIXELS,
    DEFAULT_MIN_PIXELS,
)

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


class OptionError(ValueError):
    """A bad option or an output directory that cannot be used as asked (CLI exit 2)."""


@dataclass
class ShardOptions:
    """Everything `build_shards` needs. Weights need not sum to 1; splits must."""

    out: Path
    samples: list[Path] = field(default_factory=list)
    real: list[Path] = field(default_factory=list)
    templates: dict[str, float] = field(
        default_factory=lambda: {"json": 0.4, "explain": 0.25, "conclusion": 0.15, "pair": 0.2})
    langs: dict[str, float] = field(default_factory=lambda: {"zh": 0.5, "en": 0.5})
    splits: tuple[float, float, float] = (0.9, 0.05, 0.05)
    real_ratio: float = 0.5
    codec: str = "png"  # "png" (lossless, level png_level) or "jpeg" (quality drawn from jpeg_quality)
    jpeg_quality: tuple[int, int] = (75, 95)
    png_level: int = 1
    min_pixels: int = DEFAULT_MIN_PIXELS
    max_pixels: int = DEFAULT_MAX_PIXELS
    shard_size: int = 1000
    shard_bytes: int = 1 << 30
    max_regions: int = 8
    max_points: int = 48
    seed: int = 0
    resume: bool = False
    swift: Path | None = None
    workers: int = 1
    near_duplicates: int = 10
    """Photos whose perceptual hashes (64-bit pHash) differ in at most this many bits share a split
    (a stereo pair, a crop, a re-save); -1 turns the grouping off."""
    difficulty: dict[str, float] = field(default_factory=lambda: dict(conv.DIFFICULTY_THRESHOLDS))
    """Thresholds of the measured difficulty in explain answers (`conversations.difficulty`)."""
    cls_position: str = DEFAULT_CLS_POSITION
    """Where `<cls>` stands in the answers (`answer_tokens.CLS_POSITIONS`); training may move it."""
    mask_position: str = DEFAULT_MASK_POSITION
    """Where `<mask_1..32>` stand in the answers (`answer_tokens.MASK_POSITIONS`); training may move them."""
    split_by: str = "source"
    """What one split keeps whole (`splits.SPLIT_BY`): "source" photos, or "camera"s (held out; the
    shares are then shares of cameras; photos of no known camera are split by source)."""

    def validate(self) -> None:
        """Raise OptionError with a clear message for any unusable value."""
        if not self.samples and not self.real:
            raise OptionError("no input: give at least one SAMPLES directory or --real DIR")
        for d in self.samples:
            if not (Path(d) / "index.jsonl").is_file():
                raise OptionError(f"{d} is not a samples directory (no index.jsonl)")
        for d in self.real:
            if not Path(d).is_dir():
                raise OptionError(f"--real {d} is not a directory")
        bad = set(self.templates) - set(conv.TEMPLATES)
        if bad or not self.templates or any(w < 0 for w in self.templates.values()) or sum(self.templates.values()) <= 0:
            raise OptionError(f"--templates must weigh some of {', '.join(conv.TEMPLATES)} (got {self.templates})")
        bad = set(self.langs) - set(conv.LANGS)
        if bad or not self.langs or any(w < 0 for w in self.langs.values()) or sum(self.langs.values()) <= 0:
            raise OptionError(f"--lang must weigh some of {', '.join(conv.LANGS)} (got {self.langs})")
        if len(self.splits) != 3 or any(s < 0 for s in self.splits) or abs(sum(self.splits) - 1.0) > 1e-6:
            raise OptionError(f"--splits needs three non-negative shares summing to 1 (got {self.splits})")
        if not 0.0 <= self.real_ratio <= 1.0:
            raise OptionError(f"--real-ratio must be within [0, 1] (got {self.real_ratio})")
        if self.codec not in ("png", "jpeg"):
            raise OptionError(f"--codec must be png or jpeg (got {self.codec})")
        lo, hi = self.jpeg_quality
        if not 1 <= lo <= hi <= 100:
            raise OptionError(f"--jpeg-quality must be LO-HI within 1..100 (got {lo}-{hi})")
        if not 0 <= self.png_level <= 9:
            raise OptionError(f"png level must be 0..9 (got {self.png_level})")
        if not 28 * 28 <= self.min_pixels <= self.max_pixels:
            raise OptionError(f"need 784 <= --min-pixels <= --max-pixels (got {self.min_pixels}, {self.max_pixels})")
        if self.shard_size < 1 or self.shard_bytes < 1 << 16:
            raise OptionError("--shard-size must be >= 1 and --shard-bytes >= 64K")
        if not -1 <= self.near_duplicates <= 64:
            raise OptionError(f"--near-duplicates must be -1 (off) or 0..64 bits (got {self.near_duplicates})")
        if set(self.difficulty) != set(conv.DIFFICULTY_THRESHOLDS):
            raise OptionError(f"difficulty thresholds need the keys {sorted(conv.DIFFICULTY_THRESHOLDS)}")
        if self.cls_position not in conv.CLS_POSITIONS:
            raise OptionError(f"--cls-position must be one of {', '.join(conv.CLS_POSITIONS)} (got {self.cls_position!r})")
        if self.mask_position not in MASK_POSITIONS:
            raise OptionError(f"--mask-position must be one of {', '.join(MASK_POSITIONS)} (got {self.mask_position!r})")
        if self.split_by not in SPLIT_BY:
            raise OptionError(f"--split-by must be one of {', '.join(SPLIT_BY)} (got {self.split_by!r})")
        if self.max_regions < 1 or self.max_points < 3 or self.workers < 1:
            raise OptionError("--max-regions >= 1, --max-points >= 3 and --workers >= 1 are required")

    def content_options(self) -> dict[str, Any]:
        """The options that decide the shards' bytes (stored in the manifest; resume checks them)."""
        d = asdict(self)
        for k in ("out", "resume", "swift", "workers", "samples", "real"):
            d.pop(k)
        d["splits"], d["jpeg_quality"] = list(self.splits), list(self.jpeg_quality)
        return d


def parse_weights(text: str, allowed: tuple[str, ...], what: str) -> dict[str, float]:
    """``"json:2,explain:1"`` or ``"json,explain"`` (equal weights) → {name: weight}."""
    out: dict[str, float] = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        name, _, w = part.partition(":")
        if name not in allowed:
            raise OptionError(f"{what}: unknown {name!r}; choose from {', '.join(allowed)}")
        try:
            out[name] = float(w) if w else 1.0
        except ValueError as exc:
            raise OptionError(f"{what}: weight {w!r} of {name} is not a number") from exc
    if not out:
        raise OptionError(f"{what}: give at least one of {', '.join(allowed)}")
    return out


def parse_size(text: str) -> int:
    """``"512M"``, ``"1G"``, ``"65536"`` → bytes."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgG]?)i?[bB]?\s*", text)
    if not m:
        raise OptionError(f"--shard-bytes: cannot read {text!r} (use e.g. 512M or 1G)")
    scale = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[m.group(2).lower()]
    return int(float(m.group(1)) * scale)
