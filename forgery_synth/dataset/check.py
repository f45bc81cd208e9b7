"""`check-shards`: validate a `build-shards` output directory against its manifest and contracts.

Checks: the build finished (no temporary files), every shard listed in the manifest is present
with its sha256, size and count, no unlisted shard lies beside them; every sample has exactly the
members ``<key>.png|jpg``, ``<key>.mask.png``, ``<key>.json``; keys are dot-free and unique; the
JSON parses and fits `SAMPLE_SCHEMA` (the same keys and value types in every sample, the
operation log as JSON text, no nulls: what lets `datasets` read the shards without a schema);
answers hold their special tokens (one ``<cls>``, 32 ``<mask_i>`` in json answers) and json answers parse with polygons inside the frame; images and
masks decode, have the same Qwen-frame size, masks are {0, 255} and empty exactly for authentic
images; one image codec throughout; no source photo in two splits; the manifest's counts per
split, label and method equal what the shards hold.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from forgery_synth.dataset import conversations as conv
from forgery_synth.dataset.splits import SPLITS
from forgery_synth.dataset.tar_shards import (
    CONVERSATION_KEYS,
    MANIFEST,
    PROGRESS,
    iter_tar_samples,
    sample_log,
    schema_problems,
)
from forgery_synth.synthesis.loading import sha256_file

ALLOWED_MEMBERS = ({"png", "mask.png", "json"}, {"jpg", "mask.png", "json"})


def check_sample(key: str, members: dict[str, bytes], split: str, options: dict) -> tuple[list[str], dict | None]:
    """Problems of one sample (``members``: extension → bytes) and its parsed JSON (or None)."""
    where = f"{split}/{key}"
    problems: list[str] = []
    if "." in key:
        problems.append(f"{where}: key contains a dot")
    if set(members) not in ALLOWED_MEMBERS:
        return [f"{where}: members {sorted(members)} are not image + mask.png + json"], None
    ext = "png" if "png" in members else "jpg"
    try:
        record = json.loads(members["json"])
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return problems + [f"{where}: json does not parse ({exc})"], None
    drift = schema_problems(record)
    if drift:
        if isinstance(record, dict) and "log" in record:
            drift = ["json has the old 'log' object, not 'log_json': the shards come from an older build-shards; rebuild them"]
        return problems + [f"{where}: {p}" for p in drift[:3]], None
    try:
        if not isinstance(sample_log(record), dict):
            problems.append(f"{where}: log_json is not a JSON object")
    except ValueError as exc:
        problems.append(f"{where}: log_json does not parse ({exc})")
    if record["key"] != key or record["split"] != split:
        problems.append(f"{where}: json says key {record['key']} / split {record['split']}")
    if record["label"] not in ("real", "fake"):
        problems.append(f"{where}: label {record['label']!r}")
    if record["images"] != [f"{key}.{ext}"]:
        problems.append(f"{where}: images {record['images']} do not name the member {key}.{ext}")
    if not record["source"] or not record["source"].get("sha256") or not record["source"].get("path"):
        problems.append(f"{where}: source lacks path or sha256")
    msgs = record["messages"]
    if [m.get("role") for m in msgs] != ["user", "assistant"]:
        problems.append(f"{where}: messages are not one user and one assistant turn")
        return problems, record
    if msgs[0]["content"].count(conv.IMAGE_PLACEHOLDER) != len(record["images"]):
        problems.append(f"{where}: <image> placeholders do not match images")
    template = record["template"]
    if template not in conv.TEMPLATES:
        problems.append(f"{where}: template {template!r}")
        return problems, record
    problems += [f"{where}: {p}" for p in conv.check_answer(template, msgs[1]["content"], options.get("cls_position", "after-verdict"),
                                                                  options.get("mask_position", "after-region"))]
    try:
        with Image.open(io.BytesIO(members[ext])) as im:
            im.load()
            size, fmt = im.size, im.format
        with Image.open(io.BytesIO(members["mask.png"])) as im:
            mask = np.asarray(im)
            mode = im.mode
    except (OSError, SyntaxError, ValueError) as exc:
        return problems + [f"{where}: image or mask does not decode ({exc})"], record
    if fmt != {"png": "PNG", "jpg": "JPEG"}[ext]:
        problems.append(f"{where}: .{ext} member holds {fmt} data")
    if mode != "L" or mask.shape != (size[1], size[0]):
        problems.append(f"{where}: mask {mode} {mask.shape[::-1]} does not match image {size}")
        return problems, record
    if not set(np.unique(mask).tolist()) <= {0, 255}:
        problems.append(f"{where}: mask values are not {{0, 255}}")
    if (record["label"] == "real") == bool(mask.any()):
        problems.append(f"{where}: {record['label']} sample with {'a non-empty' if mask.any() else 'an empty'} mask")
    if record["frame"]["size"] != list(size):
        problems.append(f"{where}: frame size {record['frame']['size']} != image size {list(size)}")
    w, h = size
    if w % 28 or h % 28 or not options.get("min_pixels", 0) <= w * h <= options.get("max_pixels", 1 << 62):
        problems.append(f"{where}: {w}x{h} is not a Qwen2.5-VL frame (multiples of 28 within min/max pixels)")
    if template == "json":
        try:
            label, polygons = conv.parse_json_answer(msgs[1]["content"])
        except ValueError as exc:
            problems.append(f"{where}: {exc}")
        else:
            if label != record["label"]:
                problems.append(f"{where}: json answer says {label}, label is {record['label']}")
            if label == "real" and polygons:
                problems.append(f"{where}: authentic json answer with polygons")
            pts = [v for p in polygons for v in p]
            if any(not 0 <= x < w for x in pts[0::2]) or any(not 0 <= y < h for y in pts[1::2]):
                problems.append(f"{where}: polygon points outside the {w}x{h} frame")
    return problems, record


def check_shards(out: Path) -> list[str]:
    """Every problem found in a shard directory (empty list: valid)."""
    out = Path(out)
    problems: list[str] = []
    if not out.is_dir():
        return [f"{out} is not a directory"]
    leftovers = sorted(p.name for p in out.iterdir() if p.name.endswith(".tmp") or p.name == PROGRESS)
    if leftovers:
        problems.append(f"unfinished build: {', '.join(leftovers)} present (resume it with --resume)")
    try:
        manifest = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
        splits = manifest["splits"]
        options = manifest.get("options", {})
    except (OSError, json.JSONDecodeError, KeyError) as exc:
        return problems + [f"{MANIFEST} missing or unreadable: {exc}"]
    if manifest.get("conversation_keys", list(CONVERSATION_KEYS)) != list(CONVERSATION_KEYS):
        problems.append(f"{MANIFEST}: conversation_keys {manifest['conversation_keys']} are not {list(CONVERSATION_KEYS)}: "
                        "the shards come from an older build-shards; rebuild them")
    listed = {sh["name"]: (split, sh) for split in SPLITS for sh in splits.get(split, {}).get("shards", [])}
    on_disk = {p.name for p in out.glob("*.tar")}
    problems += [f"{name}: listed in the manifest but missing" for name in sorted(set(listed) - on_disk)]
    problems += [f"{name}: on disk but not in the manifest" for name in sorted(on_disk - set(listed))]
    keys: set[str] = set()
    source_split: dict[str, str] = {}
    exts: Counter = Counter()
    for split in SPLITS:
        counts: Counter = Counter()
        n = 0
        for sh in splits.get(split, {}).get("shards", []):
            path = out / sh["name"]
            if not path.is_file():
                continue
            if sha256_file(path) != sh["sha256"] or path.stat().st_size != sh["bytes"]:
                problems.append(f"{sh['name']}: sha256 or size differs from the manifest")
            in_shard = 0
            try:
                for key, members in iter_tar_samples(path):
                    in_shard += 1
                    if key in keys:
                        problems.append(f"{split}/{key}: key appears twice")
                    keys.add(key)
                    exts.update(e for e in members if e in ("png", "jpg"))
                    found, record = check_sample(key, members, split, options)
                    problems += found
                    if record is None:
                        continue
                    counts.update([f"label:{record['label']}", f"method:{record['method']}"])
                    sha = record["source"]["sha256"]
                    if sha and source_split.setdefault(sha, split) != split:
                        problems.append(f"{split}/{key}: source {sha[:12]} also in {source_split[sha]}")
            except (OSError, EOFError, tarfile.TarError) as exc:
                problems.append(f"{sh['name']}: unreadable tar ({exc})")
            if in_shard != sh["count"]:
                problems.append(f"{sh['name']}: {in_shard} samples, manifest says {sh['count']}")
            n += in_shard
        entry = splits.get(split, {})
        if n != entry.get("count", 0):
            problems.append(f"{split}: {n} samples in the shards, manifest says {entry.get('count', 0)}")
        for kind in ("labels", "methods"):
            got = {k.split(":", 1)[1]: v for k, v in counts.items() if k.startswith(kind[:-1] + ":")}
            if got != entry.get(kind, {}):
                problems.append(f"{split}: {kind} {dict(sorted(got.items()))} != manifest {entry.get(kind, {})}")
    if len(exts) > 1:
        problems.append(f"mixed image codecs {dict(exts)}: the file type would predict something")
    want = {"png": "png", "jpeg": "jpg"}.get(options.get("codec", ""), None)
    if want and exts and set(exts) != {want}:
        problems.append(f"images are {sorted(exts)} but the codec option is {options.get('codec')}")
    return problems

