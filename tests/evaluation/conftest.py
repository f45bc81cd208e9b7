"""Fixtures for the evaluation tests: small generated benchmarks (no network, a few KB each)."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def _make_pair(seed: int, h: int = 40, w: int = 48) -> tuple[np.ndarray, np.ndarray]:
    """A random RGB image (HxWx3 uint8) and a rectangular forged region (HxW bool)."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    mask = np.zeros((h, w), bool)
    y, x = int(rng.integers(2, h // 2)), int(rng.integers(2, w // 2))
    mask[y:y + h // 3, x:x + w // 3] = True
    img[mask] = 255 - img[mask]
    return img, mask


def _save_png(path: Path, a: np.ndarray) -> Path:
    """Write an array as an image (bool -> 0/255)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    Image.fromarray(a).save(path)
    return path


def _casia_layout(root: Path, n_fake: int = 3, n_real: int = 2) -> dict[str, np.ndarray]:
    """Tp/ + Gt/ (``<stem>_gt.png``) + Au/; returns stem -> ground-truth mask (real: all False)."""
    truth: dict[str, np.ndarray] = {}
    for i in range(n_fake):
        img, m = _make_pair(i)
        _save_png(root / "Tp" / f"Tp_S_{i:03d}.png", img)
        _save_png(root / "Gt" / f"Tp_S_{i:03d}_gt.png", m)
        truth[f"Tp_S_{i:03d}"] = m
    for i in range(n_real):
        img, _ = _make_pair(100 + i)
        _save_png(root / "Au" / f"Au_{i:03d}.jpg", img)
        truth[f"Au_{i:03d}"] = np.zeros(img.shape[:2], bool)
    return truth


def _samples_dir(root: Path, n_fake: int = 2, n_real: int = 2) -> dict[str, np.ndarray]:
    """Our samples directory (images/, masks/, index.jsonl)."""
    truth: dict[str, np.ndarray] = {}
    lines = []
    for i in range(n_fake + n_real):
        fake = i < n_fake
        img, m = _make_pair(200 + i)
        if not fake:
            m = np.zeros_like(m)
        sid = f"s{i:02d}"
        _save_png(root / "images" / f"{sid}.png", img)
        _save_png(root / "masks" / f"{sid}.png", m)
        lines.append({"id": sid, "image": f"images/{sid}.png", "mask": f"masks/{sid}.png", "log": f"logs/{sid}.json",
                      "label": "fake" if fake else "real", "method": "copy-move" if fake else "authentic"})
        truth[sid] = m
    (root / "index.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return truth


def _make_shards(root: Path, split: str = "test", n_fake: int = 2, n_real: int = 1) -> dict[str, np.ndarray]:
    """One webdataset shard ``{split}-000000.tar`` with our member naming."""
    root.mkdir(parents=True, exist_ok=True)
    truth: dict[str, np.ndarray] = {}
    with tarfile.open(root / f"{split}-000000.tar", "w") as tf:
        for i in range(n_fake + n_real):
            fake = i < n_fake
            img, m = _make_pair(300 + i)
            if not fake:
                m = np.zeros_like(m)
            key = f"k{i:04d}"
            meta = {"messages": [], "images": [f"{key}.png"], "label": "fake" if fake else "real",
                    "method": "splice" if fake else "authentic", "log_json": "{}"}
            for name, data in ((f"{key}.png", _png(img)), (f"{key}.mask.png", _png(m.astype(np.uint8) * 255)),
                               (f"{key}.json", json.dumps(meta).encode())):
                ti = tarfile.TarInfo(name)
                ti.size = len(data)
                tf.addfile(ti, io.BytesIO(data))
            truth[key] = m
    (root / "manifest.json").write_text("{}")
    return truth


def _png(a: np.ndarray) -> bytes:
    """PNG bytes of an array."""
    b = io.BytesIO()
    Image.fromarray(a).save(b, format="PNG")
    return b.getvalue()


def _prediction_folder(root: Path, truth: dict[str, np.ndarray], quality: str = "perfect",
                      scores: dict[str, float] | None = None) -> Path:
    """Mask PNGs named like the images (0-255 probabilities) and an optional scores.csv."""
    root.mkdir(parents=True, exist_ok=True)
    for stem, m in truth.items():
        p = m.astype(np.float32)
        if quality == "shifted":
            p = np.roll(p, 3, axis=1)
        _save_png(root / f"{stem}.png", (p * 255).astype(np.uint8))
    if scores is not None:
        (root / "scores.csv").write_text("image,score\n" + "".join(f"{k}.png,{v}\n" for k, v in scores.items()))
    return root


@pytest.fixture(scope="session")
def make_pair():
    """Makes a random RGB image and a rectangular forged region: ``make_pair(seed, h=40, w=48) -> (img, mask)``."""
    return _make_pair


@pytest.fixture(scope="session")
def save_png():
    """Writes an array as an image (bool -> 0/255), making folders: ``save_png(path, array) -> path``."""
    return _save_png


@pytest.fixture(scope="session")
def casia_layout():
    """Writes a CASIA-style folder (Tp/, Gt/, Au/): ``casia_layout(root, n_fake=3, n_real=2) -> {stem: mask}``."""
    return _casia_layout


@pytest.fixture(scope="session")
def samples_dir():
    """Writes our samples directory: ``samples_dir(root, n_fake=2, n_real=2) -> {id: mask}``."""
    return _samples_dir


@pytest.fixture(scope="session")
def make_shards():
    """Writes one webdataset shard ``{split}-000000.tar``: ``make_shards(root, split="test", ...) -> {key: mask}``."""
    return _make_shards


@pytest.fixture(scope="session")
def prediction_folder():
    """Writes predicted masks (and scores.csv): ``prediction_folder(root, truth, quality="perfect", scores=None)``."""
    return _prediction_folder
