"""Synthesis speed against the floor of any synthesis: decoding the source and encoding the outputs.

For each method, seconds per image on 1024x768 photos (one thread), and the ratio to the floor
measured in the same run: decode the source JPEG, encode the image PNG and the two mask PNGs.
The portrait methods (subject "portrait") run on two portraits (scikit-image's astronaut and
matplotlib's grace_hopper.jpg, long side 1024, JPEG q92) against the floor of those photos.
Then the throughput of `--workers 2` against `--workers 1` on the same job. Then documents:
`forgery documents` per page (each kind in zh and en) against its floor (encode the page PNG), and
the text methods on those pages (their layouts beside them) against the same decode+encode floor
measured on the pages.

    .venv/bin/python bench/synth.py [--photos 6] [--repeat 2] [--documents-only]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from forgery_synth.documents.generate import DocumentOptions, generate_documents
from forgery_synth.methods import METHODS
from forgery_synth.synthesis.engine import synthesize
from forgery_synth.synthesis.loading import load_image
from forgery_synth.synthesis.options import SynthOptions
from forgery_synth.synthesis.render import encode_mask, encode_png
from forgery_synth.synthesis.sample_photos import sample_photo_paths

SIZE = (1024, 768)


def make_photos(folder: Path, n: int) -> list[Path]:
    """`n` bundled photos resized to 1024x768, saved as JPEG q92 (a camera-like input)."""
    paths = []
    for src in sample_photo_paths()[:n]:
        im = Image.open(src).convert("RGB").resize(SIZE, Image.BICUBIC)
        path = folder / (src.stem + ".jpg")
        im.save(path, quality=92)
        paths.append(path)
    return paths


def make_portraits(folder: Path, copies: int = 2) -> list[Path]:
    """The two bundled portraits, long side 1024, as JPEG q92, `copies` files each (distinct
    bytes: a brightness step of one level), so a face swap always finds another donor."""
    import matplotlib.cbook

    sources = [next(p for p in sample_photo_paths() if p.name == "astronaut.png"),
               Path(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))]
    paths = []
    for src in sources:
        im = Image.open(src).convert("RGB")
        s = 1024 / max(im.size)
        im = im.resize((round(im.width * s), round(im.height * s)), Image.BICUBIC)
        for k in range(copies):
            path = folder / f"{Path(src).stem}-{k}.jpg"
            Image.fromarray(np.clip(np.asarray(im).astype(int) + k, 0, 255).astype(np.uint8)).save(path, quality=92)
            paths.append(path)
    return paths


def floor_seconds(paths: list[Path], repeat: int) -> float:
    """Seconds per image to decode the source and encode the image and two masks."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for p in paths:
            rgb = load_image(p).rgb
            encode_png(rgb)
            mask = np.zeros(rgb.shape[:2], np.uint8)
            mask[100:300, 200:400] = 255
            encode_mask(mask)
            encode_mask(mask)
        best = min(best, (time.perf_counter() - start) / len(paths))
    return best


def method_seconds(
    paths: list[Path], method: str, repeat: int, work: Path, workers: int = 1, count: int = 1, **options
) -> float:
    """Seconds per sample for a whole `synthesize` run (writing files included), best of `repeat`.

    Extra keyword arguments go to SynthOptions (e.g. `inpaint=InpaintConfig(...)`).
    """
    from forgery_synth.synthesis import content, faces

    best = float("inf")
    for r in range(repeat):
        content._cache.clear()  # every run pays the face detection of its sources, as a fresh process does
        faces._cache.clear()
        out = work / f"{method}-{workers}-{r}"
        start = time.perf_counter()
        report = synthesize(paths, out, SynthOptions(method=method, count=count, seed=r, **options), workers=workers)
        elapsed = time.perf_counter() - start
        shutil.rmtree(out)
        best = min(best, elapsed / max(1, report.written))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=6)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--documents-only", action="store_true", help="only the documents and text methods")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.documents_only:
            documents(work, args.repeat)
            return
        paths = make_photos(work, args.photos)
        floor = floor_seconds(paths, args.repeat)
        print(f"{len(paths)} photos at {SIZE[0]}x{SIZE[1]}, one thread; floor (decode + encode image and masks): {floor * 1000:.0f} ms/image")
        print("| method | ms/image | ratio to floor |")
        print("|---|---:|---:|")
        classical = [m for m, spec in METHODS.items() if not spec.needs_model and spec.subject == "any"]  # inpaint: bench/synth_inpaint.py
        for method in [*classical, "authentic", "mixed"]:
            seconds = method_seconds(paths, method, args.repeat, work)
            print(f"| {method} | {seconds * 1000:.0f} | {seconds / floor:.2f}x |", flush=True)
        faces = work / "faces"
        faces.mkdir()
        portraits = make_portraits(faces)
        face_floor = floor_seconds(portraits, args.repeat)
        print(f"\n{len(portraits)} portraits (long side 1024); floor: {face_floor * 1000:.0f} ms/image")
        print("| method | ms/image | ratio to floor |")
        print("|---|---:|---:|")
        for method in [m for m, spec in METHODS.items() if spec.subject == "portrait"]:
            seconds = method_seconds(portraits, method, args.repeat, work)
            print(f"| {method} | {seconds * 1000:.0f} | {seconds / face_floor:.2f}x |", flush=True)
        many = make_photos(work, len(sample_photo_paths()))
        one = method_seconds(many, "mixed", 1, work, workers=1, count=8)
        two = method_seconds(many, "mixed", 1, work, workers=2, count=8)
        print(f"\nmixed, {len(many)} photos x 8 samples: --workers 1 {1 / one:.1f} samples/s, "
              f"--workers 2 {1 / two:.1f} samples/s, speed-up {one / two:.2f}x")
        documents(work, args.repeat)


def documents(work: Path, repeat: int) -> None:
    """`forgery documents` per page, then the text methods on the pages, each against its floor."""
    best, pages = float("inf"), []
    for r in range(repeat):
        folder = work / f"docs-{r}"
        start = time.perf_counter()
        stems = list(generate_documents(folder, DocumentOptions(count=6, seed=0)))
        best = min(best, (time.perf_counter() - start) / len(stems))
        pages = sorted(folder.glob("*.png"))
    floor, rgbs = float("inf"), [load_image(p).rgb for p in pages]
    for _ in range(repeat):
        start = time.perf_counter()
        for rgb in rgbs:
            encode_png(rgb)
        floor = min(floor, (time.perf_counter() - start) / len(pages))
    print(f"\n{len(pages)} document pages (id-card, invoice, certificate x zh, en); floor (encode the page PNG): "
          f"{floor * 1000:.0f} ms/page")
    print("| step | ms/page | ratio to floor |")
    print("|---|---:|---:|")
    print(f"| forgery documents (render, chain, PNG, layout) | {best * 1000:.0f} | {best / floor:.2f}x |", flush=True)
    io_floor = floor_seconds(pages, repeat)
    print(f"\ntext methods on those pages; floor (decode + encode image and masks): {io_floor * 1000:.0f} ms/page")
    print("| method | ms/image | ratio to floor |")
    print("|---|---:|---:|")
    for method in [m for m, spec in METHODS.items() if spec.subject == "document"]:
        seconds = method_seconds(pages, method, repeat, work)
        print(f"| {method} | {seconds * 1000:.0f} | {seconds / io_floor:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
