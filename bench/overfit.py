"""The overfit case of issue 23, through the user's path: does what the model learns survive its own inference?

Eight samples: copy-move forgeries of scikit-image's astronaut, coffee, chelsea and rocket, and the four
photos themselves as authentic samples (a forged and an authentic version of every photo, so the
image verdict cannot come from which photo it is). Every step is the CLI with its defaults:

    forgery synth PHOTOS --out S --method copy-move --seed 0
    forgery build-shards S --real PHOTOS --out D --splits 1,0,0 --templates json:1
    forgery train --stage 1 --data D --out R1 --base-model tiny --sam tiny --max-steps 150 --grad-accum 2
    forgery train --stage 2 --data D --out R2 --init-from R1/last --max-steps 250 --grad-accum 2
    forgery eval --data D --split train --checkpoint R2/last --out E

then reads E/metrics.json: image accuracy (at the checkpoint's threshold and at 0.5), pixel IoU / F1
of the forged images, the mask area drawn on the authentic ones. Goal: accuracy 1.0, pixel IoU >= 0.5.

    .venv/bin/python bench/overfit.py --out out/bench-overfit                # the issue's case
    .venv/bin/python bench/overfit.py --stage1-steps 60 --stage2-steps 0     # quicker, stage 1 only
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")


def write_photos(folder: Path) -> Path:
    """The four scikit-image photos as PNG files in `folder`."""
    from PIL import Image
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    for name in PHOTOS:
        Image.fromarray(getattr(data, name)()).convert("RGB").save(folder / f"{name}.png")
    return folder


def forgery(*args: str, extra: tuple[str, ...] = ()) -> float:
    """Run one `forgery` command (this interpreter's CLI); its seconds. Exits on failure."""
    t = time.perf_counter()
    cmd = [sys.executable, "-m", "cli", *args, *extra]
    proc = subprocess.run(cmd, cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(args[:1])} failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return time.perf_counter() - t


def run_case(out: Path, stage1_steps: int = 150, stage2_steps: int = 250, train_options: tuple[str, ...] = ()) -> dict:
    """The whole case in `out` (emptied first); returns the figures and the seconds of each command."""
    if out.exists():
        shutil.rmtree(out)
    photos = write_photos(out / "photos")
    seconds = {"synth": forgery("synth", str(photos), "--out", str(out / "samples"), "--method", "copy-move",
                                "--seed", "0"),
               "build-shards": forgery("build-shards", str(out / "samples"), "--real", str(photos),
                                       "--out", str(out / "shards"), "--splits", "1,0,0", "--templates", "json:1")}
    seconds["train stage 1"] = forgery("train", "--stage", "1", "--data", str(out / "shards"), "--out", str(out / "run1"),
                                       "--base-model", "tiny", "--sam", "tiny", "--max-steps", str(stage1_steps),
                                       "--grad-accum", "2", extra=train_options)
    final = out / "run1" / "last"
    if stage2_steps:
        seconds["train stage 2"] = forgery("train", "--stage", "2", "--data", str(out / "shards"), "--out",
                                           str(out / "run2"), "--init-from", str(final), "--max-steps",
                                           str(stage2_steps), "--grad-accum", "2")
        final = out / "run2" / "last"
    seconds["eval"] = forgery("eval", "--data", str(out / "shards"), "--split", "train", "--checkpoint", str(final),
                              "--out", str(out / "eval"))
    m = json.loads((out / "eval" / "metrics.json").read_text())
    image, pixel = m["image"], m["pixel"]
    return {"accuracy": image.get("accuracy"), "balanced_accuracy": image.get("balanced_accuracy"),
            "auc": image.get("auc"), "pixel_iou": pixel.get("iou"), "pixel_f1": pixel.get("f1"),
            "authentic": m.get("authentic"), "thresholds": m.get("thresholds"),
            "calibrated": {"image": image.get("calibrated"), "pixel": pixel.get("calibrated")},
            "learning": m.get("learning"), "seconds": {k: round(v, 1) for k, v in seconds.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("out/bench-overfit"))
    ap.add_argument("--stage1-steps", type=int, default=150)
    ap.add_argument("--stage2-steps", type=int, default=250)
    args = ap.parse_args()
    result = run_case(args.out, args.stage1_steps, args.stage2_steps)
    print(json.dumps(result, indent=2))
    ok = (result["accuracy"] or 0) == 1.0 and (result["pixel_iou"] or 0) >= 0.5
    print(("goal reached" if ok else "goal NOT reached") + ": image accuracy 1.0 and pixel IoU >= 0.5 through forgery eval")


if __name__ == "__main__":
    main()
