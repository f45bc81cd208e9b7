"""Benchmark `build-shards` against a floor measured in the same run, and webdataset read-back.

Floor: decode the same input images — each sample's picture and its mask, both image members of
every sample — re-encode them with the same codec settings and write a plain tar of them: the work
no shard builder can avoid. The builder adds the Qwen-frame resize, polygons, conversations, pair
pictures, hashing and the manifest. Target: build time within 1.5x of
the floor. Read-back: ``webdataset.WebDataset(urls).decode("pil")`` over the shards.

    .venv/bin/python bench/shards.py                      # PNG codec, ~1024 px photos
    .venv/bin/python bench/shards.py --codec jpeg --size 768

Inputs: the colour photos bundled with scikit-image, upscaled to --size on the long side, forged
by the synthesis engine (--count samples per photo); the photos also serve as --real.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from forgery_synth.dataset.encode import _encode_png, encode_image
from forgery_synth.dataset.shard_options import ShardOptions
from forgery_synth.dataset.shards import build_shards
from forgery_synth.dataset.tar_shards import iter_tar_samples, shard_paths

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field", "retina",
          "colorwheel", "logo")


def make_inputs(root: Path, size: int, count: int) -> tuple[Path, Path]:
    """Photos (JPEG q90, long side ``size``) and a samples directory forged from them."""
    from skimage import data

    from forgery_synth.synthesis.engine import SynthJob
    from forgery_synth.synthesis.options import SynthOptions

    photos = root / "photos"
    photos.mkdir(parents=True)
    for name in PHOTOS:
        img = getattr(data, name)()
        if img.ndim != 3:
            continue
        img = Image.fromarray(np.ascontiguousarray(img[..., :3]))
        scale = size / max(img.size)
        img = img.resize((round(img.width * scale), round(img.height * scale)), Image.Resampling.BICUBIC)
        img.save(photos / f"{name}.jpg", quality=90)
    job = SynthJob([photos], root / "samples", SynthOptions(method="mixed", count=count, post="jpeg:75-95"))
    for _ in job.run():
        pass
    return root / "samples", photos


def input_paths(shard_dir: Path, samples: Path) -> list[tuple[str, str | None]]:
    """(image file, mask file or None) of every sample in the shards: the floor re-encodes exactly these."""
    index = {}
    for line in (samples / "index.jsonl").read_text().splitlines():
        entry = json.loads(line)
        index[entry["id"]] = (samples / entry["image"], samples / entry["mask"])
    paths = []
    for shard in shard_paths(shard_dir):
        for key, members in iter_tar_samples(shard):
            record = json.loads(members["json"])
            image, mask = index.get(key) or (record["source"]["path"], None)
            paths.append((str(image), str(mask) if mask else None))
    return paths


def floor(paths: list[tuple[str, str | None]], out: Path, options: ShardOptions) -> tuple[float, int]:
    """Decode every image member (picture and mask), re-encode it with the same codec settings and
    write a plain tar; returns (seconds, bytes). Authentic samples' masks are all zero, as in the shards."""
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    with tarfile.open(out, "w") as tf:
        for i, (path, mask_path) in enumerate(paths):
            with Image.open(path) as im:
                rgb = np.asarray(im.convert("RGB"))
            if mask_path:
                with Image.open(mask_path) as im:
                    mask = np.asarray(im.convert("L"))
            else:
                mask = np.zeros(rgb.shape[:2], np.uint8)
            quality = int(rng.integers(options.jpeg_quality[0], options.jpeg_quality[1] + 1))
            ext, data = encode_image(rgb, options.codec, quality, options.png_level)
            for name, blob in ((f"{i:08d}.{ext}", data), (f"{i:08d}.mask.png", _encode_png(mask, options.png_level))):
                ti = tarfile.TarInfo(name)
                ti.size = len(blob)
                tf.addfile(ti, io.BytesIO(blob))
    return time.perf_counter() - t0, out.stat().st_size


def read_back(shard_dir: Path) -> tuple[float, int]:
    """Iterate the shards with webdataset, decoding images to PIL; returns (seconds, samples)."""
    import webdataset as wds

    urls = [str(p) for p in shard_paths(shard_dir)]
    t0 = time.perf_counter()
    n = 0
    for sample in wds.WebDataset(urls, shardshuffle=False).decode("pil"):
        ext = "png" if "png" in sample else "jpg"
        sample[ext].load() if hasattr(sample[ext], "load") else None
        n += 1
    return time.perf_counter() - t0, n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=1024, help="long side of the input photos")
    ap.add_argument("--count", type=int, default=6, help="forgeries per photo")
    ap.add_argument("--codec", default="png", choices=("png", "jpeg"))
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3, help="timed repetitions (best is reported)")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-shards-"))
    try:
        samples, photos = make_inputs(root, args.size, args.count)
        builds, floors, reads = [], [], []
        for r in range(args.repeat):
            out = root / f"shards{r}"
            opts = ShardOptions(out=out, samples=[samples], real=[photos], codec=args.codec, workers=args.workers,
                                splits=(0.8, 0.1, 0.1), real_ratio=0.3)
            t0 = time.perf_counter()
            report = build_shards(opts)
            builds.append(time.perf_counter() - t0)
            n = sum(report.counts.values())
            shard_bytes = sum(p.stat().st_size for p in shard_paths(out))
            paths = input_paths(out, samples)
            f_s, f_bytes = floor(paths, root / f"floor{r}.tar", opts)
            floors.append(f_s)
            reads.append(read_back(out))
        b, f = min(builds), min(floors)
        rs, rn = min(reads)
        frame = json.loads(next(iter_tar_samples(shard_paths(out)[0]))[1]["json"])["frame"]["size"]
        print(f"inputs: {n} samples ({args.size}px photos -> {frame[0]}x{frame[1]}-ish Qwen frames), codec {args.codec}, "
              f"workers {args.workers}, best of {args.repeat}")
        print("| step | seconds | samples/s | MB/s written |")
        print("|---|---|---|---|")
        print(f"| build-shards | {b:.2f} | {n / b:.1f} | {shard_bytes / b / 1e6:.1f} |")
        print(f"| floor (decode + re-encode + plain tar) | {f:.2f} | {n / f:.1f} | {f_bytes / f / 1e6:.1f} |")
        print(f"| webdataset read-back, decode('pil') | {rs:.2f} | {rn / rs:.1f} | {shard_bytes / rs / 1e6:.1f} (read) |")
        print(f"ratio build / floor: {b / f:.2f}x (target <= 1.5x)")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
