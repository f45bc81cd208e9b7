"""Readers of evaluation data: our shards, our samples directory, IMDL-BenCo JSON lists, and
image-folder + mask-folder benchmark layouts (other detectors' predictions: `predictions.py`).

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

import json
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from trainer.evaluation.samples import (
    IMAGE_EXTS,
    EvalSample,
    SourceOptions,
    _finish,
    _label,
)

MASK_DIR_WORDS = {"gt", "gts", "mask", "masks", "groundtruth", "ground_truth", "ground-truth", "gtmask",
                  "gt_masks", "edgemask"}


AUTH_DIR_WORDS = {"au", "authentic", "auth", "real", "pristine", "original", "originals", "orig"}


#: Suffixes stripped from a mask's stem to find its image (longest first, case-insensitive).
MASK_SUFFIXES = ("_groundtruth", "_edgemask", "_gt_mask", "_gtmask", "_forged", "forged", "_mask", "-mask",
                 ".mask", "_gt", "-gt")


AUTH_STEM = re.compile(r"(^au_|_orig$|_original$|_real$|_authentic$)", re.I)


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
