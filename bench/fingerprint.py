"""Camera fingerprint speed against an I/O floor: decoding the photos.

`forgery fingerprint` per photo (EXIF probe, decode, wavelet residual, the ML sums; the final
cleaning once per camera, shared out over its photos) on camera-like JPEGs (q92, EXIF Make/Model),
and the ratio to the floor measured in the same run: decoding the same files with the one loader
(`load_image`). Then the prnu expert view (`correlation_map`, 64 x 64 windows) per image at the same
size, against the same floor.

    .venv/bin/python bench/fingerprint.py [--photos 12] [--size 1024x768] [--repeat 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import piexif
from PIL import Image

from forgery_synth.fingerprints.build import build_fingerprints
from forgery_synth.fingerprints.prnu import correlation_map
from forgery_synth.synthesis.loading import load_image
from forgery_synth.synthesis.sample_photos import sample_photo_paths


def make_photos(folder: Path, n: int, size: tuple[int, int]) -> list[Path]:
    """``n`` bundled photos (cycled) resized to ``size`` with a fixed multiplicative pattern, JPEG q92 with EXIF."""
    k = np.random.default_rng(0).standard_normal((size[1], size[0], 1)).astype(np.float32)
    raw = piexif.dump({"0th": {piexif.ImageIFD.Make: b"Bench", piexif.ImageIFD.Model: b"Cam 1"}})
    sources = sample_photo_paths()
    paths = []
    for i in range(n):
        im = np.asarray(Image.open(sources[i % len(sources)]).convert("RGB").resize(size, Image.BICUBIC), np.float32)
        im = np.clip(np.rint(im * (1 + 0.02 * k)), 0, 255).astype(np.uint8)
        path = folder / f"p{i:03d}.jpg"
        Image.fromarray(im).save(path, quality=92, exif=raw)
        paths.append(path)
    return paths


def best_of(repeat: int, fn) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=int, default=12)
    ap.add_argument("--size", default="1024x768")
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    import cv2

    cv2.setNumThreads(1)
    w, h = (int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "photos"
        folder.mkdir()
        paths = make_photos(folder, args.photos, (w, h))
        n = len(paths)
        floor = best_of(args.repeat, lambda: [load_image(p, orient=False) for p in paths]) / n
        estimate = best_of(args.repeat, lambda: build_fingerprints([folder], Path(tmp) / "out", min_photos=2)) / n
        from forgery_synth.fingerprints.bank import FingerprintBank

        k = FingerprintBank(Path(tmp) / "out").fingerprint("Bench Cam 1")
        rgb = load_image(paths[0]).rgb
        view = best_of(args.repeat, lambda: correlation_map(rgb, k))
    print(f"{n} photos {w}x{h} JPEG q92, one thread")
    print(f"floor (decode)            {floor * 1000:8.1f} ms/photo")
    print(f"fingerprint estimate      {estimate * 1000:8.1f} ms/photo   x{estimate / floor:.1f} the floor")
    print(f"prnu view (64x64 windows) {view * 1000:8.1f} ms/image   x{view / floor:.1f} the floor")


if __name__ == "__main__":
    main()
