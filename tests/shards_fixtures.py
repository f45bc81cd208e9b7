"""A hand-written samples directory (the synthesis engine's contract, DESIGN.md) for shard tests.

`make_sample_tree(root)` writes ``root/photos/*.jpg`` (authentic photos, also usable as
``--real``) and ``root/samples`` (images/, masks/, logs/, index.jsonl): forged samples with blob
masks and operation logs, plus one authentic sample with an all-zero mask.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

METHODS = ("copy-move", "splice", "erase", "blur", "noise")


def blob_mask(h: int, w: int, rng: np.random.Generator, n_blobs: int = 1) -> np.ndarray:
    """HxW uint8 {0, 255}: ``n_blobs`` random filled ellipses, blob-like regions."""
    mask = np.zeros((h, w), np.uint8)
    for _ in range(n_blobs):
        cx, cy = int(rng.integers(w // 5, 4 * w // 5)), int(rng.integers(h // 5, 4 * h // 5))
        ax, ay = int(rng.integers(max(6, w // 12), max(7, w // 5))), int(rng.integers(max(6, h // 12), max(7, h // 5)))
        cv2.ellipse(mask, (cx, cy), (ax, ay), float(rng.uniform(0, 180)), 0, 360, 255, -1)
    return mask


def photo(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """HxWx3 uint8: a smooth random gradient plus noise, photo-like enough for tests."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([xx / w * 200, yy / h * 200, (xx + yy) / (w + h) * 255], -1)
    noise = rng.normal(0, 8, (h, w, 3))
    return np.clip(base + noise + rng.uniform(-40, 40, 3), 0, 255).astype(np.uint8)


def make_sample_tree(root: Path, n_sources: int = 8, per_source: int = 2, seed: int = 0,
                     real_samples: int = 1) -> tuple[Path, Path]:
    """Write photos and a samples directory under ``root``; returns (samples_dir, photos_dir)."""
    rng = np.random.default_rng(seed)
    photos, samples = root / "photos", root / "samples"
    for d in (photos, samples / "images", samples / "masks", samples / "logs"):
        d.mkdir(parents=True, exist_ok=True)
    index = []
    for s in range(n_sources):
        h, w = int(rng.integers(96, 201)), int(rng.integers(96, 201))
        img = photo(h, w, rng)
        ppath = photos / f"p{s}.jpg"
        Image.fromarray(img).save(ppath, quality=92)
        sha = hashlib.sha256(ppath.read_bytes()).hexdigest()
        base = np.asarray(Image.open(ppath).convert("RGB"))
        n_real = real_samples if s == 0 else 0
        for k in range(per_source + n_real):
            label = "real" if k >= per_source else "fake"
            sid = hashlib.sha256(f"{seed}|{sha}|{k}".encode()).hexdigest()[:24]
            method = "authentic" if label == "real" else METHODS[(s + k) % len(METHODS)]
            if label == "real":
                mask = np.zeros((h, w), np.uint8)
                out = base.copy()
            else:
                mask = blob_mask(h, w, rng, 1 + (s + k) % 2)
                out = base.copy()
                shifted = np.roll(base, (h // 3, w // 3), (0, 1))
                out[mask > 0] = shifted[mask > 0]
            Image.fromarray(out).save(samples / "images" / f"{sid}.png")
            Image.fromarray(mask, "L").save(samples / "masks" / f"{sid}.png")
            ops = [] if label == "real" else [
                {"op": method, "region": {"kind": "ellipse"}, "src_box": [0, 0, 10, 10], "angle": 12.5,
                 "scale": 0.9, "blend": "poisson"}]
            ops.append({"op": "jpeg", "scope": "global", "quality": 85})
            log = {"id": sid, "label": label, "seed": int(seed * 1000 + s * 10 + k), "version": "0.1.0",
                   "method": method,
                   "source": {"path": f"photos/p{s}.jpg", "sha256": sha, "size": [w, h],
                              "exif": {"Make": "Canon", "Model": "EOS 80D", "Software": None}},
                   "ops": ops, "mask_area": float((mask > 0).mean())}
            (samples / "logs" / f"{sid}.json").write_text(json.dumps(log))
            index.append({"id": sid, "image": f"images/{sid}.png", "mask": f"masks/{sid}.png",
                          "log": f"logs/{sid}.json", "label": label, "method": method})
    (samples / "index.jsonl").write_text("".join(json.dumps(e) + "\n" for e in sorted(index, key=lambda e: e["id"])))
    (samples / "rejects.jsonl").write_text("")
    return samples, photos


def build_small(root: Path, **overrides) -> tuple[Path, Path, Path]:
    """Write a sample tree under ``root`` and shards from it; returns (shard_dir, samples, photos)."""
    from forgery_synth.dataset.shard_options import ShardOptions
    from forgery_synth.dataset.shards import build_shards

    samples, photos = make_sample_tree(root, n_sources=overrides.pop("n_sources", 12))
    options = dict(out=root / "shards", samples=[samples], real=[photos], splits=(0.6, 0.2, 0.2))
    options.update(overrides)
    build_shards(ShardOptions(**options))
    return root / "shards", samples, photos
