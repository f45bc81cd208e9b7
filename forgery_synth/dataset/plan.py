"""The build plan: which samples and authentic photos go to which split, with which template and language.

A pure function of the inputs and options, so a resumed build continues the very same sequence."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from forgery_synth.dataset import conversations as conv
from forgery_synth.dataset import splits as sp
from forgery_synth.dataset.shard_options import IMAGE_EXTS, ShardOptions
from forgery_synth.dataset.tar_shards import KEY_RE
from forgery_synth.fingerprints.bank import log_camera
from forgery_synth.synthesis.exif import camera_name
from forgery_synth.synthesis.loading import ImageRejected, load_image, probe_image, sha256_file


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


def _reject(path: str, error: str) -> dict[str, str]:
    return {"path": path, "error": error}


def collect(options: ShardOptions) -> tuple[list[Item], list[dict[str, str]], dict[str, list[tuple[str, bool]]]]:
    """Read the samples' index.jsonl files and the authentic folders.

    Returns (items, rejects, {sha256: [(authentic image path, apply EXIF orientation), ...]}), the
    authentic files of each source photo in reading order. Lines with a missing or unreadable log,
    no source sha256, a bad id or a duplicate key are rejected here; pixel problems later.
    """
    items: list[Item] = []
    rejects: list[dict[str, str]] = []
    real_by_sha: dict[str, list[tuple[str, bool]]] = {}
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
            elif not KEY_RE.match(sid):
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
                    real_by_sha.setdefault(sha, []).append((image, False))
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
            try:
                exif = probe_image(path)[1]
            except ImageRejected:  # rejected later, when its pixels are encoded
                exif = None
            source = {"path": str(path), "sha256": sha, "size": None, "exif": exif, "camera": camera_name(exif)}
            log = {"id": key, "label": "real", "seed": None, "version": _version(), "method": "authentic",
                   "source": source, "ops": [], "mask_area": 0.0}
            items.append(Item(key, "real", "authentic", str(path), None, log, source, transpose=True))
            real_by_sha.setdefault(sha, []).append((str(path), True))
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


def _pair_source(item: Item, real_by_sha: dict[str, list[tuple[str, bool]]], sample_roots: list[Path]) -> tuple[str, bool] | None:
    """The other half of a pair picture: a file of the photo `item` was made from.

    A forgery gets an authentic file of its source photo. An authentic sample gets another file of
    the same photo when there is one (another processing of it, or the raw photo), else itself: two
    versions of one photo, neither forged, as a forgery's pair shows two versions of one photo.
    None when a forgery's authentic photo is not at hand.
    """
    sha = item.source.get("sha256")
    found = list(real_by_sha.get(sha, []))
    raw = item.source.get("path")
    if raw and not any(p == raw for p, _ in found):
        for base in [Path.cwd(), *sample_roots, *(r.parent for r in sample_roots)]:
            cand = (base / raw) if not Path(raw).is_absolute() else Path(raw)
            if cand.is_file() and sha256_file(cand) == sha:
                found.append((str(cand), True))
                real_by_sha.setdefault(sha, []).append((str(cand), True))
                break
    if item.label == "fake":
        return found[0] if found else None
    others = [c for c in found if Path(c[0]).resolve() != Path(item.image).resolve()]
    return others[0] if others else (item.image, item.transpose)


def plan(options: ShardOptions) -> tuple[dict[str, list[Item]], list[dict[str, str]], dict[str, Any]]:
    """Collect, split by source photo, balance labels, order, and draw every per-sample choice.

    Returns (items per split in write order: labels alternating, `splits.interleave`; rejects, balance report). Each sample's draws come
    from ``numpy.random.default_rng([seed, hash(key)])``: no global random state, independent of
    input order.
    """
    items, rejects, real_by_sha = collect(options)
    by_split: dict[str, list[Item]] = {s: [] for s in sp.SPLITS}
    group_of = _photo_groups(items, real_by_sha, options.near_duplicates)
    if options.split_by == "camera":
        camera_of: dict[str, str] = {}
        for it in sorted(items, key=lambda it: it.key):
            camera_of[it.source["sha256"]] = camera_of.get(it.source["sha256"]) or log_camera(it.log)
        split_of, decided_by = sp.assign_by_camera(group_of, camera_of, options.splits)
    else:
        split_of_group = sp.assign_splits(set(group_of.values()), options.splits)
        split_of, decided_by = {sha: split_of_group[g] for sha, g in group_of.items()}, {}
    for it in items:
        it.split = split_of[it.source["sha256"]]
        by_split[it.split].append(it)
    balance_report: dict[str, Any] = {
        "near_duplicates": sorted(sorted(g) for g in _members(group_of).values() if len(g) > 1),
        "split_by": _camera_report(options.split_by, split_of, decided_by)}
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
        ordered = [chosen[k] for k in sp.interleave([k for k in chosen if chosen[k].label == "real"],
                                                    [k for k in chosen if chosen[k].label == "fake"], options.seed)]
        for it in ordered:
            _draw(it, options, real_by_sha, roots)
        planned[split] = ordered
    return planned, rejects, balance_report


def _camera_report(split_by: str, split_of: dict[str, str], decided_by: dict[str, str]) -> dict[str, Any]:
    """The manifest's record of the split: by what, and with --split-by camera, the cameras of each
    split and how many source photos of no known camera were split by source."""
    report: dict[str, Any] = {"by": split_by}
    if split_by == "camera":
        report["cameras"] = {s: sorted({c for sha, c in decided_by.items() if c and split_of[sha] == s})
                             for s in sp.SPLITS}
        report["unknown_camera_sources"] = {s: sum(1 for sha, c in decided_by.items() if not c and split_of[sha] == s)
                                            for s in sp.SPLITS}
    return report


def photo_hash(path: str, transpose: bool) -> int:
    """The 64-bit perceptual hash (pHash, imagehash) of a photo, read by the one image loader."""
    import imagehash

    bits = imagehash.phash(Image.fromarray(load_image(path, orient=transpose).rgb).convert("L")).hash
    return int("".join("1" if b else "0" for b in bits.flatten()), 2)


def _photo_groups(items: list[Item], real_by_sha: dict[str, list[tuple[str, bool]]], max_distance: int) -> dict[str, str]:
    """Source sha256 -> its near-duplicate group's representative (see `splits.near_duplicate_groups`).

    Each source photo is hashed once, from its authentic file when one is at hand, else from its
    first sample (a local forgery barely moves a perceptual hash).
    """
    first: dict[str, tuple[str, bool]] = {}
    for it in sorted(items, key=lambda it: it.key):
        sha = it.source["sha256"]
        if sha not in first:
            first[sha] = real_by_sha[sha][0] if real_by_sha.get(sha) else (it.image, it.transpose)
    if max_distance < 0:
        return {sha: sha for sha in first}
    hashes = {}
    for sha, (path, transpose) in first.items():
        try:
            hashes[sha] = photo_hash(path, transpose)
        except (OSError, ValueError, ImageRejected):  # rejected later, when its pixels are encoded
            hashes[sha] = None
    groups = sp.near_duplicate_groups({k: v for k, v in hashes.items() if v is not None}, max_distance)
    return {sha: groups.get(sha, sha) for sha in first}


def _members(group_of: dict[str, str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for sha, rep in group_of.items():
        out.setdefault(rep, []).append(sha)
    return out


def _draw(it: Item, options: ShardOptions, real_by_sha: dict[str, list[tuple[str, bool]]], roots: list[Path]) -> None:
    key_int = int.from_bytes(hashlib.sha256(it.key.encode()).digest()[:8], "big")
    rng = np.random.default_rng([options.seed, key_int])
    template = _pick(options.templates, rng)
    fallback = _pick(options.templates, rng, exclude="pair") or "json"
    if template == "pair":  # drawn at the same rate for both labels
        pair = _pair_source(it, real_by_sha, roots)
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
