"""Shared fixtures: small real photos (from scikit-image's bundled data) written to a temp folder,
and the helpers that tests in more than one folder use: a hand-written samples directory and shards
built from it (tests/dataset, tests/training, tests/model), quick training configs, and the cached
offline processor (tests/model, tests/training).

The samples directory follows the synthesis engine's contract (ARCHITECTURE.md): ``make_sample_tree(root)``
writes ``root/photos/*.jpg`` (authentic photos, also usable as ``--real``) and ``root/samples``
(images/, masks/, logs/, index.jsonl): forged samples with blob masks and operation logs, plus one
authentic sample with an all-zero mask.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import pytest
from PIL import Image

from forgery_synth.synthesis.sample_photos import sample_photo_paths

if TYPE_CHECKING:
    from trainer.training.config import TrainConfig

SMALL_SIDE = 200


def _small(name: str) -> np.ndarray:
    """A bundled photo as HxWx3 uint8 with its long side scaled to SMALL_SIDE."""
    path = next(p for p in sample_photo_paths() if p.name == name)
    im = Image.open(path).convert("RGB")
    scale = SMALL_SIDE / max(im.size)
    return np.asarray(im.resize((round(im.width * scale), round(im.height * scale)), Image.BICUBIC))


@pytest.fixture(scope="session")
def photo() -> np.ndarray:
    """A small real photo: HxWx3 uint8 (coffee.png, 200x133)."""
    return _small("coffee.png")


@pytest.fixture(scope="session")
def donor_photo() -> np.ndarray:
    """A second small real photo: HxWx3 uint8 (chelsea.png)."""
    return _small("chelsea.png")


@pytest.fixture()
def photo_dir(tmp_path: Path) -> Path:
    """A folder of four small real photos (PNG and JPEG) for end-to-end runs."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("coffee.png", "chelsea.png", "astronaut.png", "rocket.jpg"):
        im = Image.fromarray(_small(name))
        if name.endswith(".jpg"):
            im.save(folder / name, quality=92)
        else:
            im.save(folder / name)
    return folder


FACE_SIDE = 512
"""Long side of the portrait fixtures: the face detector needs a face of some size (faces.MIN_FACE)."""


def _portrait(name: str) -> np.ndarray:
    """A bundled portrait as HxWx3 uint8, long side FACE_SIDE: "astronaut" (scikit-image) or
    "grace_hopper" (matplotlib's sample data)."""
    if name == "astronaut":
        im = Image.open(next(p for p in sample_photo_paths() if p.name == "astronaut.png")).convert("RGB")
    else:
        import matplotlib.cbook

        im = Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg")).convert("RGB")
    scale = FACE_SIDE / max(im.size)
    return np.asarray(im.resize((round(im.width * scale), round(im.height * scale)), Image.BICUBIC))


@pytest.fixture(scope="session")
def face_photo() -> np.ndarray:
    """A real portrait: HxWx3 uint8 (scikit-image's astronaut, 512x512)."""
    return _portrait("astronaut")


@pytest.fixture(scope="session")
def face_donor() -> np.ndarray:
    """A second real portrait: HxWx3 uint8 (matplotlib's grace_hopper.jpg, 439x512)."""
    return _portrait("grace_hopper")


@pytest.fixture()
def portrait_dir(tmp_path: Path) -> Path:
    """A folder of the two portraits (PNG), for end-to-end runs of the portrait methods."""
    folder = tmp_path / "portraits"
    folder.mkdir()
    for name in ("astronaut", "grace_hopper"):
        Image.fromarray(_portrait(name)).save(folder / f"{name}.png")
    return folder


# --- a hand-written samples directory and shards (tests/dataset, tests/training, tests/model) ---

METHODS = ("copy-move", "splice", "erase", "blur", "noise")


def _blob_mask(h: int, w: int, rng: np.random.Generator, n_blobs: int = 1) -> np.ndarray:
    """HxW uint8 {0, 255}: ``n_blobs`` random filled ellipses, blob-like regions."""
    mask = np.zeros((h, w), np.uint8)
    for _ in range(n_blobs):
        cx, cy = int(rng.integers(w // 5, 4 * w // 5)), int(rng.integers(h // 5, 4 * h // 5))
        ax, ay = int(rng.integers(max(6, w // 12), max(7, w // 5))), int(rng.integers(max(6, h // 12), max(7, h // 5)))
        cv2.ellipse(mask, (cx, cy), (ax, ay), float(rng.uniform(0, 180)), 0, 360, 255, -1)
    return mask


def _synthetic_photo(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """HxWx3 uint8: a smooth random gradient plus noise, photo-like enough for tests."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([xx / w * 200, yy / h * 200, (xx + yy) / (w + h) * 255], -1)
    noise = rng.normal(0, 8, (h, w, 3))
    return np.clip(base + noise + rng.uniform(-40, 40, 3), 0, 255).astype(np.uint8)


def _make_sample_tree(root: Path, n_sources: int = 8, per_source: int = 2, seed: int = 0,
                      real_samples: int = 1) -> tuple[Path, Path]:
    """Write photos and a samples directory under ``root``; returns (samples_dir, photos_dir)."""
    rng = np.random.default_rng(seed)
    photos, samples = root / "photos", root / "samples"
    for d in (photos, samples / "images", samples / "masks", samples / "logs"):
        d.mkdir(parents=True, exist_ok=True)
    index = []
    for s in range(n_sources):
        h, w = int(rng.integers(96, 201)), int(rng.integers(96, 201))
        img = _synthetic_photo(h, w, rng)
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
                mask = _blob_mask(h, w, rng, 1 + (s + k) % 2)
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


def _build_small(root: Path, **overrides) -> tuple[Path, Path, Path]:
    """Write a sample tree under ``root`` and shards from it; returns (shard_dir, samples, photos)."""
    from forgery_synth.dataset.shard_options import ShardOptions
    from forgery_synth.dataset.shards import build_shards

    samples, photos = _make_sample_tree(root, n_sources=overrides.pop("n_sources", 12))
    options = dict(out=root / "shards", samples=[samples], real=[photos], splits=(0.6, 0.2, 0.2))
    options.update(overrides)
    build_shards(ShardOptions(**options))
    return root / "shards", samples, photos


@pytest.fixture(scope="session")
def blob_mask():
    """Makes an HxW uint8 {0, 255} mask of random filled ellipses: ``blob_mask(h, w, rng, n_blobs=1)``."""
    return _blob_mask


@pytest.fixture(scope="session")
def make_sample_tree():
    """Writes photos and a samples directory: ``make_sample_tree(root, n_sources=8, ...) -> (samples, photos)``."""
    return _make_sample_tree


@pytest.fixture(scope="session")
def build_small():
    """Writes a sample tree and shards from it: ``build_small(root, **options) -> (shard_dir, samples, photos)``."""
    return _build_small


# --- tiny shards and quick configs for training runs (tests/training, tests/model) ---

TINY_PIXELS = dict(min_pixels=56 * 56, max_pixels=84 * 84)


def _build_tiny_shards(root: Path) -> Path:
    """Shards from the hand-written sample tree (``build_small``), small frames.

    Templates json and conclusion only (short answers keep the CPU runs fast); train/val/test.
    """
    shards, _, _ = _build_small(root, n_sources=10, templates={"json": 0.8, "conclusion": 0.2},
                                splits=(0.6, 0.2, 0.2), **TINY_PIXELS)
    return shards


def _quick_config(data: Path, out: Path, **over) -> TrainConfig:
    """A few-step CPU config: teacher-forced validation on 2 samples, no progress bar."""
    from trainer.training.config import load_config

    values = dict(stage=1, data=str(data), out=str(out), base_model="tiny", sam="tiny", max_steps=2, grad_accum=2, val_samples=2,
                  val_mode="teacher", shuffle_buffer=8, progress=False, templates=["json", "conclusion"])
    values.update(over)
    return load_config(None, values)


@pytest.fixture(scope="session")
def build_tiny_shards():
    """Writes tiny train/val/test shards (small frames, json + conclusion): ``build_tiny_shards(root) -> shard_dir``."""
    return _build_tiny_shards


@pytest.fixture(scope="session")
def quick_config():
    """Makes a few-step CPU TrainConfig: ``quick_config(data, out, **overrides)``."""
    return _quick_config


# --- the offline processor (tests/model, tests/training) ---


@functools.lru_cache(maxsize=1)
def _tiny_processor():
    """The offline processor with the forensic tokens (built once per test session: ~3 s)."""
    from trainer.model.tokens import (
        add_forensic_tokens,
        build_offline_tokenizer,
        build_processor,
    )

    tokenizer = build_offline_tokenizer()
    add_forensic_tokens(tokenizer)
    return build_processor(tokenizer)


@pytest.fixture(scope="session")
def tiny_processor():
    """Gives the offline processor with the forensic tokens: ``tiny_processor()`` (cached, built once a session)."""
    return _tiny_processor


# --- rendered documents (tests/documents, tests/methods: the text methods' sources) ---


@functools.lru_cache(maxsize=8)
def _document(kind: str, lang: str, seed: int) -> tuple[np.ndarray, dict]:
    from forgery_synth.documents.render import render_page

    portrait = _small("astronaut.png") if kind == "id-card" else None
    return render_page(kind, lang, seed, portrait)


@pytest.fixture(scope="session")
def document():
    """Renders a synthetic document (cached): ``document(kind, lang, seed) -> (HxWx3 uint8, layout dict)``."""
    return _document


@pytest.fixture(scope="session")
def document_page() -> tuple[np.ndarray, dict]:
    """A rendered Chinese ID card and its layout (the text methods' source)."""
    return _document("id-card", "zh", 1)


@pytest.fixture(scope="session")
def document_donor() -> tuple[np.ndarray, dict]:
    """A second document, an English invoice, and its layout (text-splice's donor)."""
    return _document("invoice", "en", 2)

# --- synthetic cameras with a known sensor fingerprint (tests/fingerprints, tests/dataset, tests/model) ---

CAMERA_GAIN = 0.03
"""Strength g of a synthetic camera's PRNU: a photo is scene * (1 + g K) + shot noise, K ~ N(0, 1)."""


class CameraKit:
    """Photos of synthetic cameras: each camera name has a fixed random pattern K (HxW float32, N(0, 1),
    seeded by the name) multiplied into crops of the bundled photos, plus Gaussian shot noise (1 grey
    level); written as PNG with EXIF Make/Model (piexif)."""

    SCENES = ("astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg", "motorcycle_left.png", "camera.png")

    def __init__(self) -> None:
        paths = {p.name: p for p in sample_photo_paths()}
        self.scenes = [np.asarray(Image.open(paths[n]).convert("RGB")) for n in self.SCENES if n in paths]

    def pattern(self, camera: str, size_hw: tuple[int, int] = (160, 192)) -> np.ndarray:
        seed = int.from_bytes(hashlib.sha256(camera.encode()).digest()[:8], "big")
        return np.random.default_rng(seed).standard_normal(size_hw).astype(np.float32)

    def scene(self, index: int, size_hw: tuple[int, int] = (160, 192)) -> np.ndarray:
        """Scene ``index`` (no camera): a crop of a bundled photo resized to ``size_hw``, float32 0-255."""
        rng = np.random.default_rng([index, 99])
        base = self.scenes[index % len(self.scenes)]
        h, w = base.shape[:2]
        side = int(min(h, w) * rng.uniform(0.5, 0.9))
        y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        crop = base[y:y + side, x:x + side]
        return cv2.resize(crop, (size_hw[1], size_hw[0]), interpolation=cv2.INTER_AREA).astype(np.float32)

    def shoot(self, camera: str, scene: np.ndarray) -> np.ndarray:
        """``scene`` (HxWx3 float 0-255) as ``camera`` records it: HxWx3 uint8."""
        k = self.pattern(camera, scene.shape[:2])
        rng = np.random.default_rng(int(scene.sum()) % 2**32)
        out = scene * (1.0 + CAMERA_GAIN * k[..., None]) + rng.normal(0.0, 1.0, scene.shape)
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)

    def photo(self, camera: str, index: int, size_hw: tuple[int, int] = (160, 192)) -> np.ndarray:
        return self.shoot(camera, self.scene(index, size_hw))

    def write(self, folder: Path, camera: str, indices, size_hw: tuple[int, int] = (160, 192),
              exif: bool = True) -> list[Path]:
        """Photos ``indices`` of ``camera`` as PNGs in ``folder`` (with EXIF Make = first word of
        ``camera``, Model = the rest, unless ``exif`` is False)."""
        import piexif

        folder.mkdir(parents=True, exist_ok=True)
        make, _, model = camera.partition(" ")
        raw = piexif.dump({"0th": {piexif.ImageIFD.Make: make.encode(), piexif.ImageIFD.Model: model.encode()}})
        paths = []
        for i in indices:
            path = folder / f"{camera.replace(' ', '_')}_{size_hw[1]}x{size_hw[0]}_{i}.png"
            Image.fromarray(self.photo(camera, i, size_hw)).save(path, **({"exif": raw} if exif else {}))
            paths.append(path)
        return paths


@pytest.fixture(scope="session")
def camera_kit() -> CameraKit:
    """Synthetic cameras with known fingerprints (:class:`CameraKit`): ``pattern``, ``scene``,
    ``shoot``, ``photo``, ``write``."""
    return CameraKit()


@pytest.fixture(scope="session")
def assert_snippets_import():
    """``assert_snippets_import(snippets, where)``: every import of the Python code blocks resolves,
    names included (the README's and the reference pages' examples alike)."""
    import ast
    import importlib

    def check(snippets: list[str], where: str) -> None:
        assert snippets, f"{where}: no Python example"
        for code in snippets:
            for node in ast.walk(ast.parse(code)):
                if isinstance(node, ast.ImportFrom):
                    module = importlib.import_module(node.module)
                    for alias in node.names:
                        assert hasattr(module, alias.name), f"{where}: {node.module} has no {alias.name}"
                elif isinstance(node, ast.Import):
                    for alias in node.names:
                        importlib.import_module(alias.name)

    return check
