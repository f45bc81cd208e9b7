"""Readers of evaluation data: our shards, our samples directory, IMDL-BenCo JSON lists, and
image-folder + mask-folder benchmark layouts; plus readers of other detectors' predictions.

Every reader yields ``EvalSample`` one at a time (images are decoded lazily, one per sample) and
never stops on a bad file: the sample comes back with ``error`` set and the run goes on.

Ground truth conventions (the same as IMDL-BenCo's ``AbstractDataset``):
    * images are decoded with Pillow and converted to RGB (no EXIF rotation: masks are not
      rotated either);
    * a mask is binarised as ``mean over its channels > 127.5`` (for an 8-bit grey mask: > 127);
    * label 1 (forged) for every image with a mask, 0 (authentic) for ``"Negative"`` entries and
      for images in an authentic folder; our shards and sample directories carry the label.

Sources (``open_source`` picks the reader from what the path holds):
    * shards: a ``.tar`` file, or a directory with ``{split}-NNNNNN.tar`` (webdataset members
      ``<key>.png|jpg``, ``<key>.mask.png``, ``<key>.json``);
    * a samples directory: ``index.jsonl`` lines ``{"id","image","mask","log","label","method"}``
      with paths relative to the directory;
    * an IMDL-BenCo JSON list ``[[image, mask_or_"Negative"], ...]`` (a ``.json`` file; relative
      paths are tried against the JSON file's directory, then the working directory);
    * an image-folder layout (CASIA, Columbia, Coverage, NIST16, IMD2020 style), see
      ``scan_folder_layout``.
"""

from __future__ import annotations

import csv
import io
import json
import re
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from PIL import Image

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp"}
MASK_DIR_WORDS = {"gt", "gts", "mask", "masks", "groundtruth", "ground_truth", "ground-truth", "gtmask",
                  "gt_masks", "edgemask"}
AUTH_DIR_WORDS = {"au", "authentic", "auth", "real", "pristine", "original", "originals", "orig"}
#: Suffixes stripped from a mask's stem to find its image (longest first, case-insensitive).
MASK_SUFFIXES = ("_groundtruth", "_edgemask", "_gt_mask", "_gtmask", "_forged", "forged", "_mask", "-mask",
                 ".mask", "_gt", "-gt")
AUTH_STEM = re.compile(r"(^au_|_orig$|_original$|_real$|_authentic$)", re.I)


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
    """Decode an image file or bytes to HxWx3 uint8 RGB.

    Raises:
        OSError / ValueError: when Pillow cannot decode it.
    """
    src = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data
    with Image.open(src) as im:
        im.load()
        return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()


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


# ---------------------------------------------------------------- our shards


def shard_paths(path: Path, split: str | None) -> list[Path]:
    """The shard files of ``split`` (all ``*.tar`` when split is None), sorted."""
    if path.is_file():
        return [path]
    pattern = f"{split}-*.tar" if split else "*.tar"
    return sorted(path.glob(pattern))


def iter_shards(path: Path, opt: SourceOptions) -> Iterator[EvalSample]:
    """Samples of our webdataset shards (members grouped by key = name before the first dot)."""
    name = opt.name or (path.stem if path.is_file() else path.name)
    for shard in shard_paths(path, opt.split):
        try:
            tf = tarfile.open(shard, "r")
        except (tarfile.TarError, OSError) as e:
            yield EvalSample(id=shard.name, ref=str(shard), label=None, method=None, dataset=name,
                             error=f"cannot open shard {shard}: {e}")
            continue
        with tf:
            # Members of one sample are consecutive (webdataset layout): yield each sample as soon
            # as the next key starts, so only one sample's bytes are held at a time.
            key, group = None, {}
            for member in tf:
                if not member.isfile():
                    continue
                base = member.name.rsplit("/", 1)[-1]
                if "." not in base:
                    continue
                member_key, ext = base.split(".", 1)
                f = tf.extractfile(member)
                if f is None:
                    continue
                if member_key != key:
                    if key is not None:
                        yield _shard_sample(shard, key, group, name, opt.decode)
                    key, group = member_key, {}
                group[ext.lower()] = f.read()
            if key is not None:
                yield _shard_sample(shard, key, group, name, opt.decode)


def _shard_sample(shard: Path, key: str, g: dict[str, bytes], name: str, decode: bool) -> EvalSample:
    ref = f"{shard.name}:{key}"
    meta: dict[str, Any] = {}
    if "json" in g:
        try:
            meta = json.loads(g["json"].decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            return EvalSample(id=key, ref=ref, label=None, method=None, dataset=name,
                              error=f"bad json in {ref}: {e}")
    label = _label(meta.get("label"))
    method = meta.get("method") or ("authentic" if label == 0 else None)
    img_ext = next((e for e in ("png", "jpg", "jpeg", "webp") if e in g), None)
    s = EvalSample(id=key, ref=ref, label=label, method=method, dataset=name, meta={"conversation": meta})
    return _finish(s, g.get(img_ext) if img_ext else None, g.get("mask.png"), decode)


# ---------------------------------------------------------------- our samples directory


def iter_samples_dir(path: Path, opt: SourceOptions) -> Iterator[EvalSample]:
    """Samples listed in ``path/index.jsonl`` (paths relative to ``path``)."""
    name = opt.name or path.name
    with open(path / "index.jsonl", encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                sid = str(row["id"])
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                yield EvalSample(id=f"line{n}", ref=f"index.jsonl:{n}", label=None, method=None, dataset=name,
                                 error=f"bad index line {n}: {e}")
                continue
            label = _label(row.get("label"))
            img = path / row["image"] if row.get("image") else None
            mask = path / row["mask"] if row.get("mask") else None
            s = EvalSample(id=sid, ref=str(img) if img else sid, label=label,
                           method=row.get("method") or ("authentic" if label == 0 else None), dataset=name,
                           meta={"path": str(img) if img else None})
            yield _finish(s, img, mask, opt.decode)


# ---------------------------------------------------------------- IMDL-BenCo JSON list


def _resolve(p: str, base: Path) -> Path:
    q = Path(p)
    if q.is_absolute():
        return q
    return base / q if (base / q).exists() else q


def iter_json_list(path: Path, opt: SourceOptions) -> Iterator[EvalSample]:
    """Samples of an IMDL-BenCo JSON list ``[[image, mask_or_"Negative"], ...]``."""
    name = opt.name or path.stem
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(rows, list):
            raise ValueError("the top level is not a list")
    except (OSError, ValueError) as e:
        yield EvalSample(id=path.name, ref=str(path), label=None, method=None, dataset=name,
                         error=f"cannot read JSON list {path}: {e}")
        return
    for n, row in enumerate(rows):
        if not (isinstance(row, list) and len(row) >= 2 and all(isinstance(v, str) for v in row[:2])):
            yield EvalSample(id=f"row{n}", ref=f"{path.name}[{n}]", label=None, method=None, dataset=name,
                             error=f"row {n} is not [image, mask_or_\"Negative\"]")
            continue
        img = _resolve(row[0], path.parent)
        negative = row[1] == "Negative"
        s = EvalSample(id=img.stem, ref=str(img), label=0 if negative else 1,
                       method="authentic" if negative else None, dataset=name, meta={"path": str(img)})
        yield _finish(s, img, None if negative else _resolve(row[1], path.parent), opt.decode)


# ---------------------------------------------------------------- image folder + mask folder


@dataclass
class FolderLayout:
    """What ``scan_folder_layout`` found.

    Attributes:
        pairs: (image, mask) for forged images, sorted by image path.
        authentic: authentic images, sorted.
        errors: (path, message) for images without a mask and masks without an image.
    """

    pairs: list[tuple[Path, Path]]
    authentic: list[Path]
    errors: list[tuple[str, str]]


def _words(name: str) -> set[str]:
    low = name.lower()
    return {low} | set(re.split(r"[_\-\s.]+", low))


def _mask_key(stem: str) -> str:
    low = stem.lower()
    for suf in MASK_SUFFIXES:
        if low.endswith(suf) and len(low) > len(suf):
            return low[: -len(suf)]
    return low


def scan_folder_layout(root: Path) -> FolderLayout:
    """Pair images with masks in a benchmark folder.

    Rules (case-insensitive):
      * a file is a *mask* when a folder on its path (below ``root``) is named like a mask
        folder (``Gt``, ``gt``, ``mask``, ``masks``, ``groundtruth``, ...; a word of the folder
        name counts, e.g. ``4cam_splc_mask``), or its stem ends in ``_gt``, ``_mask``, ``-gt``,
        ``-mask``, ``_groundtruth``, ``forged`` (Coverage);
      * an image is *authentic* when a folder on its path is named ``Au``, ``authentic``,
        ``real``, ``pristine``, ``original``, ``auth`` (word match, e.g. Columbia's
        ``4cam_auth``), or its stem starts with ``Au_`` (CASIA) or ends with ``_orig`` (IMD2020);
      * every other image is forged and gets the mask whose stem, with the suffix above removed,
        equals the image's stem (Coverage's ``1t`` is also tried as ``1``); an image with no
        such mask is an error, reported and skipped.

    Args:
        root: the benchmark's folder.

    Returns:
        The pairs, the authentic images and the errors.
    """
    masks: dict[str, list[Path]] = {}
    candidates: list[Path] = []
    authentic: list[Path] = []
    for p in sorted(root.rglob("*")):
        if not p.is_file() or p.suffix.lower() not in IMAGE_EXTS:
            continue
        rel_dirs = p.relative_to(root).parts[:-1]
        if any(part.startswith(".") for part in p.relative_to(root).parts):
            continue
        dir_words: set[str] = set()
        for d in rel_dirs:
            dir_words |= _words(d)
        stem = p.stem
        if dir_words & MASK_DIR_WORDS or _mask_key(stem) != stem.lower():
            masks.setdefault(_mask_key(stem), []).append(p)
        elif dir_words & AUTH_DIR_WORDS or AUTH_STEM.search(stem):
            authentic.append(p)
        else:
            candidates.append(p)
    pairs: list[tuple[Path, Path]] = []
    errors: list[tuple[str, str]] = []
    used: set[Path] = set()
    for img in candidates:
        low = img.stem.lower()
        keys = [low] + ([low[:-1]] if low.endswith("t") and len(low) > 1 else [])
        found = next((masks[k] for k in keys if k in masks), None)
        if not found:
            errors.append((str(img), "no mask matched this image (authentic images belong in a folder named "
                                     "Au/authentic/real, or use an IMDL-BenCo JSON list)"))
            continue
        pairs.append((img, found[0]))
        used.add(found[0])
    for ms in masks.values():
        for m in ms:
            if m not in used:
                errors.append((str(m), "mask without a matching image"))
    return FolderLayout(pairs=pairs, authentic=authentic, errors=errors)


def iter_folder_layout(path: Path, opt: SourceOptions) -> Iterator[EvalSample]:
    """Samples of an image-folder + mask-folder benchmark (see ``scan_folder_layout``)."""
    name = opt.name or path.name
    layout = scan_folder_layout(path)
    for p, msg in layout.errors:
        if "no mask matched" in msg:
            yield EvalSample(id=Path(p).stem, ref=p, label=None, method=None, dataset=name, error=msg)
    items = [(img, m, 1) for img, m in layout.pairs] + [(img, None, 0) for img in layout.authentic]
    for img, m, label in sorted(items, key=lambda t: str(t[0])):
        s = EvalSample(id=img.stem, ref=str(img), label=label, method="authentic" if label == 0 else None,
                       dataset=name, meta={"path": str(img)})
        yield _finish(s, img, m, opt.decode)


# ---------------------------------------------------------------- dispatch


def source_kind(path: Path, split: str | None = "test") -> str:
    """Which reader ``path`` needs: "shards", "samples", "json", "folder".

    Raises:
        ValueError: when the path does not exist or holds nothing readable.
    """
    if not path.exists():
        raise ValueError(f"{path} does not exist")
    if path.is_file():
        if path.suffix == ".tar":
            return "shards"
        if path.suffix == ".json":
            return "json"
        raise ValueError(f"{path}: expected a directory, a .tar shard or an IMDL-BenCo .json list")
    if (path / "index.jsonl").is_file():
        return "samples"
    if (path / "manifest.json").is_file() or any(path.glob("*.tar")):
        if not shard_paths(path, split):
            raise ValueError(f"{path} holds shards but none named {split}-NNNNNN.tar")
        return "shards"
    if any(p.suffix.lower() in IMAGE_EXTS for p in path.rglob("*") if p.is_file()):
        return "folder"
    raise ValueError(f"{path} holds no shards, index.jsonl, JSON list or images")


def open_source(path: Path, opt: SourceOptions | None = None) -> Iterator[EvalSample]:
    """Iterate the samples of any supported source (see the module docstring).

    Raises:
        ValueError: when the source's kind cannot be recognised (before any sample is read).
    """
    o = opt or SourceOptions()
    kind = source_kind(path, o.split)
    reader = {"shards": iter_shards, "samples": iter_samples_dir, "json": iter_json_list,
              "folder": iter_folder_layout}[kind]
    return reader(path, o)


# ---------------------------------------------------------------- convert


@dataclass
class ConvertResult:
    """Outcome of ``convert_to_json_list``: counts and per-file errors ``(path, message)``."""

    n_fake: int
    n_real: int
    errors: list[tuple[str, str]]


def convert_to_json_list(source: Path, out: Path, relative: bool = False, split: str | None = "test") -> ConvertResult:
    """Write an IMDL-BenCo JSON list ``[[image, mask_or_"Negative"], ...]`` for a source.

    Works for folder layouts, sample directories and JSON lists (re-checked); shards keep their
    images inside tar files, which a JSON list cannot point to, so they are refused.

    Args:
        source: benchmark folder, samples directory or JSON list.
        out: the JSON file to write (parent folders are created).
        relative: write paths relative to ``out``'s folder instead of absolute paths
            (IMDL-BenCo resolves relative paths against its working directory).
        split: unused except for recognising the source.

    Returns:
        Counts and errors. Nothing is written when no pair could be listed.

    Raises:
        ValueError: unrecognised source, or shards.
    """
    kind = source_kind(source, split)
    rows: list[list[str]] = []
    errors: list[tuple[str, str]] = []
    if kind == "shards":
        raise ValueError("shards keep images inside tar files; a JSON list cannot point into them")
    if kind == "folder":
        layout = scan_folder_layout(source)
        rows = [[str(i), str(m)] for i, m in layout.pairs] + [[str(i), "Negative"] for i in layout.authentic]
        errors = layout.errors
    else:
        reader = iter_samples_dir if kind == "samples" else iter_json_list
        for s in reader(source, SourceOptions(split=split, decode=False)):
            if s.error:
                errors.append((s.ref, s.error))
                continue
            img = Path(s.meta.get("path") or s.ref)
            if not img.is_file():
                errors.append((str(img), "image file does not exist"))
                continue
            if s.label == 0:
                rows.append([str(img), "Negative"])
            elif s.label == 1:
                mask = _mask_path_of(source, kind, s)
                if mask is None:
                    errors.append((str(img), "forged image without a mask file"))
                    continue
                rows.append([str(img), str(mask)])
            else:
                errors.append((str(img), "unknown label"))
    rows.sort(key=lambda r: r[0])
    if relative:
        base = out.resolve().parent
        rows = [[_rel(r[0], base), r[1] if r[1] == "Negative" else _rel(r[1], base)] for r in rows]
    else:
        rows = [[str(Path(r[0]).resolve()), r[1] if r[1] == "Negative" else str(Path(r[1]).resolve())] for r in rows]
    if rows:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(rows, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return ConvertResult(n_fake=sum(1 for r in rows if r[1] != "Negative"),
                         n_real=sum(1 for r in rows if r[1] == "Negative"), errors=errors)


def _rel(p: str, base: Path) -> str:
    import os

    return os.path.relpath(Path(p).resolve(), base)


def _mask_path_of(source: Path, kind: str, s: EvalSample) -> Path | None:
    if kind == "samples":
        with open(source / "index.jsonl", encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    row = json.loads(line)
                    if str(row.get("id")) == s.id and row.get("mask"):
                        p = source / row["mask"]
                        return p if p.is_file() else None
        return None
    rows = json.loads(source.read_text(encoding="utf-8"))
    for row in rows:
        if _resolve(row[0], source.parent) == Path(s.ref) and row[1] != "Negative":
            p = _resolve(row[1], source.parent)
            return p if p.is_file() else None
    return None


# ---------------------------------------------------------------- other detectors' predictions


@dataclass
class ExternalPrediction:
    """One prediction of another detector.

    Attributes:
        score: image score in [0, 1], or None when not given.
        mask_path: a grayscale PNG of probabilities (0–255 = 0–1), or None.
    """

    score: float | None
    mask_path: Path | None


class PredictionStore:
    """Predictions made by another detector, looked up by image name.

    Two layouts:
      * a folder of mask PNGs named like the images (``<stem>.png``; ``<stem>.mask.png``,
        ``<stem>_mask.png``, ``<stem>_pred.png`` are accepted too) with an optional
        ``scores.csv`` (header ``image,score``; ``image`` is a file name, stem or path);
      * a JSONL file of ``{"image", "score", "mask"}`` (``mask`` a PNG path relative to the
        JSONL's folder, or null; ``score`` may be null or absent).

    Lookup is by image stem (case-sensitive), falling back to the lower-cased stem.
    """

    _SUFFIXES = (".mask", "_mask", "_pred", "_prediction", "-mask", "-pred")

    def __init__(self, path: Path) -> None:
        """Index the predictions under ``path``.

        Raises:
            ValueError: when ``path`` is neither a folder nor a JSONL file, or a JSONL line or
                scores.csv row is malformed.
        """
        self.path = path
        self.entries: dict[str, ExternalPrediction] = {}
        if path.is_dir():
            for p in sorted(path.iterdir()):
                if p.suffix.lower() != ".png" or not p.is_file():
                    continue
                stem = p.stem
                for suf in self._SUFFIXES:
                    if stem.endswith(suf):
                        stem = stem[: -len(suf)]
                        break
                self.entries.setdefault(stem, ExternalPrediction(None, p))
            csv_path = path / "scores.csv"
            if csv_path.is_file():
                with open(csv_path, newline="", encoding="utf-8") as f:
                    for n, row in enumerate(csv.DictReader(f), 2):
                        try:
                            stem = Path(row["image"]).stem
                            score = float(row["score"])
                        except (KeyError, TypeError, ValueError) as e:
                            raise ValueError(f"{csv_path}:{n}: expected columns image,score ({e})") from e
                        prev = self.entries.get(stem, ExternalPrediction(None, None))
                        self.entries[stem] = ExternalPrediction(score, prev.mask_path)
        elif path.is_file() and path.suffix in (".jsonl", ".ndjson"):
            with open(path, encoding="utf-8") as f:
                for n, line in enumerate(f, 1):
                    if not line.strip():
                        continue
                    try:
                        row = json.loads(line)
                        stem = Path(row["image"]).stem
                        score = None if row.get("score") is None else float(row["score"])
                        mask = None if not row.get("mask") else _resolve(row["mask"], path.parent)
                    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
                        raise ValueError(f"{path}:{n}: expected {{\"image\", \"score\", \"mask\"}} ({e})") from e
                    self.entries[stem] = ExternalPrediction(score, mask)
        else:
            raise ValueError(f"{path}: predictions must be a folder of mask PNGs or a .jsonl file")
        self._lower = {k.lower(): v for k, v in self.entries.items()}

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, sample_id: str, ref: str = "") -> ExternalPrediction | None:
        """The prediction for a sample (by id, then by the stem of its image path), or None."""
        for k in (sample_id, Path(ref.split(":")[-1]).stem if ref else ""):
            if not k:
                continue
            if k in self.entries:
                return self.entries[k]
            if k.lower() in self._lower:
                return self._lower[k.lower()]
        return None


def load_probability_png(path: Path) -> np.ndarray:
    """A grayscale probability PNG as HxW float32 in [0, 1] (level / 255; 16-bit: / 65535).

    RGB PNGs are averaged over channels.
    """
    with Image.open(path) as im:
        im.load()
        if im.mode in ("I;16", "I;16B", "I"):
            return (np.asarray(im, dtype=np.float64) / 65535.0).astype(np.float32)
        if im.mode not in ("L", "RGB"):
            im = im.convert("RGB")
        a = np.asarray(im, dtype=np.float32)
    if a.ndim == 3:
        a = a.mean(axis=2)
    return a / 255.0
