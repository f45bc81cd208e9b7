"""`build-shards`: sample directories + authentic photos → webdataset tars of training conversations.

Layout written to ``OUT``: ``{train,val,test}-NNNNNN.tar``, ``manifest.json``, ``rejects.jsonl``.
Each sample is three members, the same for forged and authentic images:
``<key>.png|jpg`` (the image resized to the Qwen2.5-VL frame, pre-encoded bytes),
``<key>.mask.png`` (L, {0, 255}, same size) and ``<key>.json`` (conversation, label, method, log,
source, …; see `CONVERSATION_KEYS`). Keys are hex/alnum with no dot.

Resumability: shards are written as ``NAME.tar.tmp`` and renamed when complete; after each shard
``progress.json`` records what is committed. The sample order is a pure function of inputs and
options, so ``resume=True`` starts after the last committed sample and the result is byte-identical
to an uninterrupted run.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tarfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image, ImageOps

from forgery_synth import conversations as conv
from forgery_synth import splits as sp
from forgery_synth.loading import sha256_file
from forgery_synth.polygons import PolygonOptions, mask_to_polygons
from forgery_synth.qwen_frame import DEFAULT_MAX_PIXELS, DEFAULT_MIN_PIXELS, resize_to_frame

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
CONVERSATION_KEYS = ("key", "split", "messages", "images", "label", "method", "template", "lang",
                     "log", "source", "frame", "codec")
TAR_MTIME = 1_700_000_000  # fixed member mtime: rebuilding gives byte-identical shards
_TAR_BLOCK, _TAR_RECORD = 512, 10240
_KEY_RE = re.compile(r"^[A-Za-z0-9_-]+$")
PROGRESS = "progress.json"
MANIFEST = "manifest.json"
REJECTS = "rejects.jsonl"


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
        if self.max_regions < 1 or self.max_points < 3 or self.workers < 1:
            raise OptionError("--max-regions >= 1, --max-points >= 3 and --workers >= 1 are required")

    def content_options(self) -> dict[str, Any]:
        """The options that decide the shards' bytes (stored in the manifest; resume checks them)."""
        d = asdict(self)
        for k in ("out", "resume", "swift", "workers", "samples", "real"):
            d.pop(k)
        d["splits"], d["jpeg_quality"] = list(self.splits), list(self.jpeg_quality)
        return d


@dataclass
class Item:
    """One planned sample: where its pixels come from and every random draw already made."""

    key: str
    label: str
    method: str
    image: str
    mask: str | None
    log: dict[str, Any]
    source: dict[str, Any]
    split: str = ""
    template: str = "json"
    fallback: str = "json"  # template used if a pair's counterpart turns out unusable
    lang: str = "en"
    prompt: str = ""
    quality: int | None = None
    pair_with: str | None = None
    pair_transpose: bool = False
    pair_side: str = "right"
    transpose: bool = False  # apply the EXIF orientation (raw photos; never the engine's outputs)


@dataclass
class Encoded:
    """A sample ready for the tar (``members``: extension → bytes) or a rejection (``error``)."""

    key: str
    split: str
    members: dict[str, bytes] = field(default_factory=dict)
    label: str = ""
    method: str = ""
    template: str = ""
    lang: str = ""
    error: str | None = None
    path: str = ""


@dataclass
class BuildReport:
    """What `build_shards` did."""

    out: Path
    counts: dict[str, int]
    rejects: int
    shards: list[str]
    manifest: dict[str, Any]


def _reject(path: str, error: str) -> dict[str, str]:
    return {"path": path, "error": error}


def collect(options: ShardOptions) -> tuple[list[Item], list[dict[str, str]], dict[str, tuple[str, bool]]]:
    """Read the samples' index.jsonl files and the authentic folders.

    Returns (items, rejects, {sha256: (authentic image path, apply EXIF orientation)}). Lines with a missing or unreadable log,
    no source sha256, a bad id or a duplicate key are rejected here; pixel problems later.
    """
    items: list[Item] = []
    rejects: list[dict[str, str]] = []
    real_by_sha: dict[str, tuple[str, bool]] = {}
    seen: set[str] = set()
    for root in sorted({Path(d).resolve() for d in options.samples}):
        lines = (root / "index.jsonl").read_text(encoding="utf-8").splitlines()
        for n, line in enumerate(lines):
            if not line.strip():
                continue
            where = f"{root / 'index.jsonl'}:{n + 1}"
            try:
                entry = json.loads(line)
                sid, label = str(entry["id"]), entry["label"]
                log = json.loads((root / entry["log"]).read_text(encoding="utf-8"))
                sha = log["source"]["sha256"]
            except (json.JSONDecodeError, KeyError, TypeError, OSError) as exc:
                rejects.append(_reject(where, f"unusable index line or log: {type(exc).__name__}: {exc}"))
                continue
            if label not in ("real", "fake"):
                rejects.append(_reject(where, f"label {label!r} is neither real nor fake"))
            elif not _KEY_RE.match(sid):
                rejects.append(_reject(where, f"id {sid!r} is not a dot-free key"))
            elif not sha:
                rejects.append(_reject(where, "log has no source sha256"))
            elif sid in seen:
                rejects.append(_reject(where, f"duplicate id {sid}"))
            else:
                seen.add(sid)
                source = dict(log["source"])
                image = str(root / entry["image"])
                mask = str(root / entry["mask"]) if entry.get("mask") else None
                method = "authentic" if label == "real" else str(entry.get("method") or log.get("method", "unknown"))
                items.append(Item(sid, label, method, image, mask, log, source))
                if label == "real":
                    real_by_sha.setdefault(sha, (image, False))
    for root in sorted({Path(d).resolve() for d in options.real}):
        for path in sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTS and p.is_file()):
            try:
                sha = sha256_file(path)
            except OSError as exc:
                rejects.append(_reject(str(path), f"unreadable: {exc}"))
                continue
            key = "r" + sha[:31]
            if key in seen:
                rejects.append(_reject(str(path), f"duplicate photo (same sha256 as an earlier input, key {key})"))
                continue
            seen.add(key)
            source = {"path": str(path), "sha256": sha, "size": None, "exif": None}
            log = {"id": key, "label": "real", "seed": None, "version": _version(), "method": "authentic",
                   "source": source, "ops": [], "mask_area": 0.0}
            items.append(Item(key, "real", "authentic", str(path), None, log, source, transpose=True))
            real_by_sha.setdefault(sha, (str(path), True))
    return items, rejects, real_by_sha


def _version() -> str:
    from forgery_synth import __version__

    return __version__


def _pick(weights: dict[str, float], rng: np.random.Generator, exclude: str | None = None) -> str:
    names = [k for k in sorted(weights) if k != exclude and weights[k] > 0]
    if not names:
        return ""
    p = np.array([weights[k] for k in names], float)
    return names[int(rng.choice(len(names), p=p / p.sum()))]


def _pair_source(item: Item, real_by_sha: dict[str, tuple[str, bool]], sample_roots: list[Path]) -> tuple[str, bool] | None:
    """A file holding the authentic photo a forgery was made from, if one is at hand."""
    sha = item.source.get("sha256")
    if sha in real_by_sha:
        return real_by_sha[sha]
    raw = item.source.get("path")
    if not raw:
        return None
    for base in [Path.cwd(), *sample_roots, *(r.parent for r in sample_roots)]:
        cand = (base / raw) if not Path(raw).is_absolute() else Path(raw)
        if cand.is_file() and sha256_file(cand) == sha:
            real_by_sha[sha] = (str(cand), True)
            return real_by_sha[sha]
    return None


def plan(options: ShardOptions) -> tuple[dict[str, list[Item]], list[dict[str, str]], dict[str, Any]]:
    """Collect, split by source photo, balance labels, order, and draw every per-sample choice.

    Returns (items per split in write order, rejects, balance report). Each sample's draws come
    from ``numpy.random.default_rng([seed, hash(key)])``: no global random state, independent of
    input order.
    """
    items, rejects, real_by_sha = collect(options)
    by_split: dict[str, list[Item]] = {s: [] for s in sp.SPLITS}
    split_of = sp.assign_splits((it.source["sha256"] for it in items), options.splits)
    for it in items:
        it.split = split_of[it.source["sha256"]]
        by_split[it.split].append(it)
    balance_report: dict[str, Any] = {}
    roots = [Path(d).resolve() for d in options.samples]
    planned: dict[str, list[Item]] = {}
    for split, group in by_split.items():
        reals = [it.key for it in group if it.label == "real"]
        fakes = [it.key for it in group if it.label == "fake"]
        keep_r, keep_f = sp.balance(reals, fakes, options.real_ratio, options.seed)
        keep = set(keep_r) | set(keep_f)
        balance_report[split] = {"available": {"real": len(reals), "fake": len(fakes)},
                                 "kept": {"real": len(keep_r), "fake": len(keep_f)},
                                 "real_ratio": round(len(keep_r) / max(len(keep), 1), 4)}
        chosen = {it.key: it for it in group if it.key in keep}
        ordered = [chosen[k] for k in sp.order(list(chosen), options.seed)]
        for it in ordered:
            _draw(it, options, real_by_sha, roots)
        planned[split] = ordered
    return planned, rejects, balance_report


def _draw(it: Item, options: ShardOptions, real_by_sha: dict[str, tuple[str, bool]], roots: list[Path]) -> None:
    key_int = int.from_bytes(hashlib.sha256(it.key.encode()).digest()[:8], "big")
    rng = np.random.default_rng([options.seed, key_int])
    template = _pick(options.templates, rng)
    fallback = _pick(options.templates, rng, exclude="pair") or "json"
    if template == "pair":
        pair = _pair_source(it, real_by_sha, roots) if it.label == "fake" else None
        if pair is None:
            template = fallback
        else:
            it.pair_with, it.pair_transpose = pair
    it.template, it.fallback = template, fallback
    it.lang = _pick(options.langs, rng)
    it.prompt = conv.draw_prompt(template, it.lang, rng)
    it.pair_side = "left" if rng.random() < 0.5 else "right"
    lo, hi = options.jpeg_quality
    quality = int(rng.integers(lo, hi + 1))
    it.quality = quality if options.codec == "jpeg" else None


def _load_rgb(path: str, transpose: bool = False) -> np.ndarray:
    """HxWx3 uint8 RGB pixels of an image file (EXIF orientation applied if ``transpose``)."""
    with Image.open(path) as im:
        return np.asarray((ImageOps.exif_transpose(im) if transpose else im).convert("RGB"))


def _load_mask(path: str, size_hw: tuple[int, int]) -> np.ndarray:
    with Image.open(path) as im:
        if im.size != (size_hw[1], size_hw[0]):
            raise ValueError(f"mask is {im.size[0]}x{im.size[1]} but image is {size_hw[1]}x{size_hw[0]}")
        m = np.asarray(im.convert("L"))
    return np.where(m > 127, 255, 0).astype(np.uint8)


def _encode_png(arr: np.ndarray, level: int) -> bytes:
    """PNG bytes of an HxWx3 RGB or HxW L uint8 array; masks use zlib's RLE strategy (smaller)."""
    params = [cv2.IMWRITE_PNG_COMPRESSION, level]
    if arr.ndim == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR)
    else:
        params += [cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]
    ok, buf = cv2.imencode(".png", arr, params)
    if not ok:
        raise ValueError("PNG encoding failed")
    return buf.tobytes()


def encode_image(image: np.ndarray, codec: str, quality: int | None, png_level: int) -> tuple[str, bytes]:
    """Encode an HxWx3 uint8 RGB image by the codec policy; returns (extension, bytes). No
    metadata is written, for real and fake alike."""
    if codec == "png":
        return "png", _encode_png(image, png_level)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return "jpg", buf.tobytes()


def _pair_picture(forged: np.ndarray, mask: np.ndarray, real_path: str, transpose: bool, side: str) -> tuple[np.ndarray, np.ndarray]:
    """The forgery and its authentic photo side by side (Hx2Wx3) and the matching mask (Hx2W)."""
    real = _load_rgb(real_path, transpose)
    h, w = forged.shape[:2]
    rh, rw = real.shape[:2]
    if abs(rw / rh - w / h) > 0.02 * (w / h):
        raise ValueError(f"authentic photo {rw}x{rh} does not match the forgery's {w}x{h}")
    if (rh, rw) != (h, w):
        real = np.asarray(Image.fromarray(real).resize((w, h), Image.Resampling.BICUBIC))
    empty = np.zeros_like(mask)
    if side == "left":
        return np.concatenate([forged, real], 1), np.concatenate([mask, empty], 1)
    return np.concatenate([real, forged], 1), np.concatenate([empty, mask], 1)


_BAD_INPUT = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)  # PIL: SyntaxError for some broken files


def encode_item(it: Item, options: ShardOptions) -> Encoded:
    """Load, resize to the Qwen frame, write the answer and encode one sample. Never raises for a
    bad sample (unreadable, size mismatch, extreme aspect ratio, …): returns an `Encoded` with
    ``error`` set instead."""
    try:
        return _encode_item(it, options)
    except _BAD_INPUT as exc:
        out = Encoded(it.key, it.split, label=it.label, method=it.method, lang=it.lang, path=it.image)
        out.error = f"{type(exc).__name__}: {exc}"
        return out


def _encode_item(it: Item, options: ShardOptions) -> Encoded:
    out = Encoded(it.key, it.split, label=it.label, method=it.method, lang=it.lang, path=it.image)
    image = _load_rgb(it.image, it.transpose)
    h, w = image.shape[:2]
    if it.mask is not None:
        mask = _load_mask(it.mask, (h, w))
    elif it.label == "real":
        mask = np.zeros((h, w), np.uint8)
    else:
        raise ValueError("forged sample without a mask")
    if it.label == "real" and mask.any():
        raise ValueError("authentic sample with a non-empty mask")
    if it.label == "fake" and not mask.any():
        raise ValueError("forged sample with an empty mask")
    template, prompt = it.template, it.prompt
    if template == "pair":
        try:
            image, mask = _pair_picture(image, mask, it.pair_with or "", it.pair_transpose, it.pair_side)
        except _BAD_INPUT:
            rng = np.random.default_rng([options.seed, 1, int.from_bytes(hashlib.sha256(it.key.encode()).digest()[:8], "big")])
            template, prompt = it.fallback, conv.draw_prompt(it.fallback, it.lang, rng)
    frame_img, frame_mask = resize_to_frame(image, mask, options.min_pixels, options.max_pixels)
    fh, fw = frame_mask.shape
    area = float((frame_mask > 0).mean())
    label = it.label
    if template == "json":
        polys = mask_to_polygons(frame_mask, PolygonOptions(options.max_regions, options.max_points))
        answer = conv.json_answer(label, polys)
    elif template == "explain":
        answer = conv.explain_answer(label, it.log, frame_mask, float(it.log.get("mask_area", area)), it.lang)
    elif template == "conclusion":
        answer = conv.conclusion_answer(label, it.lang)
    else:
        answer = conv.pair_answer(it.pair_side, it.log, frame_mask, it.lang)
    ext, img_bytes = encode_image(frame_img, options.codec, it.quality, options.png_level)
    source = {"path": it.source.get("path"), "sha256": it.source.get("sha256"),
              "size": it.source.get("size") or [w, h]}
    record = {
        "key": it.key, "split": it.split,
        "messages": conv.make_messages(prompt, answer),
        "images": [f"{it.key}.{ext}"],
        "label": label, "method": it.method, "template": template, "lang": it.lang,
        "log": it.log, "source": source,
        "frame": {"size": [fw, fh], "input_size": [int(image.shape[1]), int(image.shape[0])],
                  "pair_with": it.pair_with if template == "pair" else None,
                  "pair_side": it.pair_side if template == "pair" else None},
        "codec": {"format": "jpeg" if ext == "jpg" else "png", "quality": it.quality},
    }
    out.template = template
    out.members = {ext: img_bytes, "mask.png": _encode_png(frame_mask, options.png_level),
                   "json": json.dumps(record, ensure_ascii=False).encode("utf-8")}
    return out


def _tar_size(member_sizes: list[int]) -> int:
    return sum(_TAR_BLOCK + -(-n // _TAR_BLOCK) * _TAR_BLOCK for n in member_sizes)


def _tar_file_size(data_bytes: int) -> int:
    return -(-(data_bytes + 2 * _TAR_BLOCK) // _TAR_RECORD) * _TAR_RECORD


class _HashingFile:
    """Write-only file wrapper that hashes what passes through (tarfile stream mode only writes)."""

    def __init__(self, path: Path):
        self.f = open(path, "wb")
        self.sha = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        return self.f.write(data)

    def close_synced(self) -> None:
        self.f.flush()
        os.fsync(self.f.fileno())
        self.f.close()


class _ShardSink:
    """Writes one split's shards: caps, temporary names, renames, per-shard statistics."""

    def __init__(self, out: Path, split: str, first_index: int, options: ShardOptions):
        self.out, self.split, self.index, self.options = out, split, first_index, options
        self.writer: tarfile.TarFile | None = None
        self.file: _HashingFile | None = None
        self.count, self.data_bytes = 0, 0
        self.stats: Counter = Counter()

    def _open(self) -> None:
        self.file = _HashingFile(self.out / f"{self.name}.tmp")
        self.writer = tarfile.open(fileobj=self.file, mode="w|", format=tarfile.USTAR_FORMAT)
        self.count, self.data_bytes, self.stats = 0, 0, Counter()

    @property
    def name(self) -> str:
        return f"{self.split}-{self.index:06d}.tar"

    def fits(self, sizes: list[int]) -> bool:
        if self.writer is None or self.count == 0:
            return True
        if self.count >= self.options.shard_size:
            return False
        return _tar_file_size(self.data_bytes + _tar_size(sizes)) <= self.options.shard_bytes

    def add(self, enc: Encoded) -> dict[str, Any] | None:
        """Add a sample; returns the record of a shard completed to make room, if any."""
        sizes = [len(v) for v in enc.members.values()]
        done = None
        if not self.fits(sizes):
            done = self.close()
        if self.writer is None:
            self._open()
        for ext in sorted(enc.members):
            data = enc.members[ext]
            ti = tarfile.TarInfo(f"{enc.key}.{ext}")
            ti.size, ti.mtime, ti.mode, ti.uname, ti.gname = len(data), TAR_MTIME, 0o444, "bigdata", "bigdata"
            self.writer.addfile(ti, io.BytesIO(data))
        self.count += 1
        self.data_bytes += _tar_size(sizes)
        self.stats.update([f"label:{enc.label}", f"method:{enc.method}", f"template:{enc.template}", f"lang:{enc.lang}"])
        return done

    def close(self) -> dict[str, Any] | None:
        """Finish the open shard: close, fsync, rename from the temporary name."""
        if self.writer is None:
            return None
        self.writer.close()
        self.file.close_synced()
        final = self.out / self.name
        os.replace(self.out / f"{self.name}.tmp", final)
        record = {"name": self.name, "sha256": self.file.sha.hexdigest(), "bytes": final.stat().st_size,
                  "count": self.count, "stats": dict(sorted(self.stats.items()))}
        self.writer, self.file = None, None
        self.index += 1
        return record


def _atomic_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)


def _plan_digest(planned: dict[str, list[Item]]) -> str:
    h = hashlib.sha256()
    for split in sp.SPLITS:
        for it in planned[split]:
            h.update(f"{split}\x1f{it.key}\x1f{it.image}\x1f{it.template}\n".encode())
    return h.hexdigest()


def _encoded_stream(items: list[Item], options: ShardOptions) -> Iterator[Encoded]:
    if options.workers <= 1 or len(items) < 2:
        for it in items:
            yield encode_item(it, options)
        return
    from concurrent.futures import ProcessPoolExecutor
    from functools import partial

    with ProcessPoolExecutor(options.workers) as pool:
        yield from pool.map(partial(encode_item, options=options), items, chunksize=4)


def build_shards(options: ShardOptions, progress: Callable[[int, int], None] | None = None) -> BuildReport:
    """Write the shards, manifest and rejects described in the module docstring.

    ``progress(done, total)`` is called after every sample. Raises OptionError for bad options,
    a non-empty output without ``resume``, or a resume whose inputs/options changed.
    """
    options.validate()
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    planned, early_rejects, balance_report = plan(options)
    digest = _plan_digest(planned)
    content = options.content_options()
    state = _start_state(out, options, digest, content)
    total = sum(len(v) for v in planned.values())
    done = sum(state["splits"][s]["consumed"] for s in sp.SPLITS)
    for split in sp.SPLITS:
        st = state["splits"][split]
        todo = planned[split][st["consumed"]:]
        sink = _ShardSink(out, split, len(st["shards"]), options)
        pending_rejects: list[dict[str, str]] = []
        consumed = st["consumed"]
        for enc in _encoded_stream(todo, options):
            consumed += 1
            done += 1
            if enc.error:
                pending_rejects.append(_reject(enc.path, enc.error) | {"key": enc.key})
            else:
                finished = sink.add(enc)
                if finished:
                    # the finished shard holds everything consumed before this sample
                    _commit(out, state, split, finished, consumed - 1, pending_rejects)
                    pending_rejects = []
            if progress:
                progress(done, total)
        finished = sink.close()
        if finished:
            _commit(out, state, split, finished, consumed, pending_rejects)
        else:
            st["consumed"] = consumed
            st["rejects"].extend(pending_rejects)
            _atomic_json(out / PROGRESS, state)
    manifest = _manifest(state, planned, balance_report, content, options, early_rejects)
    all_rejects = early_rejects + [r for s in sp.SPLITS for r in state["splits"][s]["rejects"]]
    with open(out / REJECTS, "w", encoding="utf-8") as f:
        for r in all_rejects:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    _atomic_json(out / MANIFEST, manifest)
    (out / PROGRESS).unlink(missing_ok=True)
    if options.swift is not None:
        from forgery_synth.swift_export import export_swift

        export_swift(out, Path(options.swift))
    counts = {s: manifest["splits"][s]["count"] for s in sp.SPLITS}
    shards = [sh["name"] for s in sp.SPLITS for sh in manifest["splits"][s]["shards"]]
    return BuildReport(out, counts, len(all_rejects), shards, manifest)


def _start_state(out: Path, options: ShardOptions, digest: str, content: dict[str, Any]) -> dict[str, Any]:
    fresh = {"plan_digest": digest, "options": content,
             "splits": {s: {"consumed": 0, "shards": [], "rejects": []} for s in sp.SPLITS}}
    prog, man = out / PROGRESS, out / MANIFEST
    existing = [p.name for p in out.iterdir() if p.name.endswith((".tar", ".tar.tmp")) or p.name in (PROGRESS, MANIFEST)]
    if not options.resume:
        if existing:
            raise OptionError(f"{out} already holds shards ({', '.join(sorted(existing)[:3])}…); "
                              "pass --resume to continue an interrupted run, or choose an empty directory")
        return fresh
    for p in out.glob("*.tar.tmp"):
        p.unlink()
    if prog.is_file():
        state = json.loads(prog.read_text(encoding="utf-8"))
    elif man.is_file():
        state = json.loads(man.read_text(encoding="utf-8")).get("state", {})
    else:
        if any(p.endswith(".tar") for p in existing):
            raise OptionError(f"{out} holds shards but no {PROGRESS} or {MANIFEST}: cannot resume safely")
        return fresh
    if state.get("plan_digest") != digest or state.get("options") != content:
        raise OptionError(f"cannot resume into {out}: the inputs or options differ from the interrupted run")
    # shards past the last commit (renamed but not yet recorded) are rewritten identically
    recorded = {sh["name"] for s in sp.SPLITS for sh in state["splits"][s]["shards"]}
    for p in out.glob("*.tar"):
        if p.name not in recorded:
            p.unlink()
    return state


def _commit(out: Path, state: dict[str, Any], split: str, shard: dict[str, Any], consumed: int,
            rejects: list[dict[str, str]]) -> None:
    st = state["splits"][split]
    st["shards"].append(shard)
    st["consumed"] = consumed
    st["rejects"].extend(rejects)
    _atomic_json(out / PROGRESS, state)


def _manifest(state: dict[str, Any], planned: dict[str, list[Item]], balance_report: dict[str, Any],
              content: dict[str, Any], options: ShardOptions, early_rejects: list[dict[str, str]]) -> dict[str, Any]:
    splits: dict[str, Any] = {}
    totals: Counter = Counter()
    for s in sp.SPLITS:
        st = state["splits"][s]
        c: Counter = Counter()
        for sh in st["shards"]:
            c.update(sh["stats"])
        count = sum(sh["count"] for sh in st["shards"])
        totals.update(c)
        splits[s] = {
            "count": count,
            "labels": {k.split(":", 1)[1]: v for k, v in sorted(c.items()) if k.startswith("label:")},
            "methods": {k.split(":", 1)[1]: v for k, v in sorted(c.items()) if k.startswith("method:")},
            "templates": {k.split(":", 1)[1]: v for k, v in sorted(c.items()) if k.startswith("template:")},
            "langs": {k.split(":", 1)[1]: v for k, v in sorted(c.items()) if k.startswith("lang:")},
            "sources": len({it.source["sha256"] for it in planned[s]}),
            "rejects": len(st["rejects"]),
            "balance": balance_report[s],
            "shards": [{k: sh[k] for k in ("name", "sha256", "bytes", "count")} for sh in st["shards"]],
        }
    return {
        "format": "forgery-shards/1",
        "version": _version(),
        "inputs": {"samples": [str(Path(p).resolve()) for p in options.samples],
                   "real": [str(Path(p).resolve()) for p in options.real]},
        "options": content,
        "members": ["<key>.png|jpg", "<key>.mask.png", "<key>.json"],
        "conversation_keys": list(CONVERSATION_KEYS),
        "splits": splits,
        "count": sum(splits[s]["count"] for s in sp.SPLITS),
        "labels": {k.split(":", 1)[1]: v for k, v in sorted(totals.items()) if k.startswith("label:")},
        "rejects": len(early_rejects) + sum(splits[s]["rejects"] for s in sp.SPLITS),
        "state": state,
    }


def iter_tar_samples(path: Path) -> Iterator[tuple[str, dict[str, bytes]]]:
    """(key, {extension: bytes}) for each sample of one tar, grouped the webdataset way (key =
    member name up to its first dot). Consecutive members with the same key form one sample."""
    key, group = None, {}
    with tarfile.open(path, "r:") as tf:
        for m in tf:
            if not m.isfile():
                continue
            base = m.name.rsplit("/", 1)[-1]
            k, _, ext = base.partition(".")
            prefix = m.name[: len(m.name) - len(base)]
            k = prefix + k
            if k != key and group:
                yield key, group
                group = {}
            key = k
            group[ext] = tf.extractfile(m).read()
    if group:
        yield key, group


def shard_paths(out: Path, split: str | None = None) -> list[Path]:
    """The completed shards of a directory (by name, optionally one split's)."""
    pattern = f"{split}-*.tar" if split else "*-*.tar"
    return sorted(p for p in Path(out).glob(pattern) if p.is_file())


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
