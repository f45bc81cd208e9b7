"""The inpaint row of the synthesis benchmark: seconds per sample, and what batching changes.

`forgery synth --method inpaint --inpaint-model tiny` on 1024x768 photos (as bench/synth.py),
with 1 and with 4 samples per pipeline call, against two floors measured in the same run: the
decode+encode floor of any synthesis (bench/synth.py's) and the bare pipeline call (batch 1, the
same 64x64 input each time), so the share of the run that is cropping, region drawing, compositing
and writing shows. The model is built before timing (it loads once per process).

    .venv/bin/python bench/synth_inpaint.py [--photos 4] [--count 2] [--steps 8] [--repeat 1] [--device cpu]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from synth import floor_seconds, make_photos, method_seconds  # noqa: E402  (bench/synth.py: same photos, same floor)

from forgery_synth.methods.inpaint import load_model, run_pipeline
from forgery_synth.methods.inpaint_config import InpaintConfig


def pipeline_seconds(config: InpaintConfig, steps: int, repeat: int) -> float:
    """Seconds for one bare pipeline call on a 64x64 (native size) input, batch 1."""
    pipe = load_model(config)
    size = int(pipe.unet.config.sample_size) * int(pipe.vae_scale_factor)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    mask = np.zeros((size, size), np.uint8)
    mask[size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = 255
    params = {"model": config.model, "pipeline": type(pipe).__name__, "scheduler": type(pipe.scheduler).__name__,
              "prompt": "a red backpack", "negative_prompt": "", "steps": steps, "guidance": config.guidance,
              "strength": config.strength, "seed": 0, "device": _device(config), "dtype": _dtype(config), "batch": 1, "size": size}
    best = float("inf")
    for _ in range(repeat + 1):  # the first call warms up
        start = time.perf_counter()
        run_pipeline([(params, image, mask)])
        best = min(best, time.perf_counter() - start)
    return best


def _device(config: InpaintConfig) -> str:
    from forgery_synth.models.inpaint_pipeline import resolve_device

    return resolve_device(config.device)


def _dtype(config: InpaintConfig) -> str:
    from forgery_synth.models.inpaint_pipeline import resolve_dtype

    return resolve_dtype(config.dtype, _device(config))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=4)
    parser.add_argument("--count", type=int, default=2, help="samples per photo")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", default="tiny")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    import torch

    print(f"torch threads {torch.get_num_threads()}, device {args.device}, model {args.model}, steps {args.steps}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        paths = make_photos(work, args.photos)
        floor = floor_seconds(paths, max(1, args.repeat))
        base = InpaintConfig(args.model, device=args.device, steps=args.steps)
        bare = pipeline_seconds(base, args.steps, args.repeat)
        print(f"floor (decode + encode): {floor * 1000:.1f} ms/image; bare pipeline call (batch 1): {bare:.3f} s")
        print("| samples per call | s/sample | vs batch 1 | vs bare call | vs decode+encode floor |")
        print("|---|---|---|---|---|")
        first = None
        for batch in (1, 4):
            config = InpaintConfig(args.model, device=args.device, steps=args.steps, batch_size=batch)
            sec = method_seconds(paths, "inpaint", args.repeat, work, count=args.count, inpaint=config)
            first = first or sec
            print(f"| {batch} | {sec:.3f} | {first / sec:.2f}x faster | {sec / bare:.2f}x | {sec / floor:.0f}x |")


if __name__ == "__main__":
    main()
