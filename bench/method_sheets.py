"""What a person sees: one contact sheet per forgery method, into docs/methods/.

Six photos of the audit corpus (four colour, two greyscale), one sample each, default options
(object regions for copy-move, splice and erase; blends drawn per sample); the mask in red over
each image. The portrait methods run on two portraits instead (scikit-image's astronaut, matplotlib's
grace_hopper.jpg), two samples each. The sheets in the README's realism section are made by:

    .venv/bin/python bench/method_sheets.py            # ~1 min on 2 cores; writes docs/methods/*.png
    .venv/bin/python bench/method_sheets.py --methods hairline,catchlight,face-swap,skin-retouch
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from PIL import Image  # noqa: E402

from forgery_synth.dataset.contact_sheet import make_contact_sheet  # noqa: E402
from forgery_synth.methods import METHODS  # noqa: E402
from forgery_synth.methods.inpaint_config import InpaintConfig  # noqa: E402
from forgery_synth.synthesis.engine import synthesize  # noqa: E402
from forgery_synth.synthesis.options import SynthOptions  # noqa: E402
from forgery_synth.synthesis.sample_photos import audit_photo_paths  # noqa: E402

PHOTOS = ("astronaut.png", "coffee.png", "chelsea.png", "motorcycle_left.png", "camera.png", "coins.png")
SIDE = 384


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("docs/methods"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--methods", default="", help="comma-separated methods (default: all)")
    args = ap.parse_args()
    chosen = [m for m in args.methods.split(",") if m] or list(METHODS)
    unknown = sorted(set(chosen) - set(METHODS))
    if unknown:
        ap.error(f"unknown methods: {', '.join(unknown)}")
    tmp = Path(tempfile.mkdtemp())
    photos = tmp / "photos"
    photos.mkdir()
    for p in audit_photo_paths():
        if p.name in PHOTOS:
            with Image.open(p) as im:
                im = im.convert("RGB") if im.mode not in ("L", "RGB") else im
                scale = SIDE / max(im.size)
                im.resize((round(im.width * scale), round(im.height * scale)), Image.Resampling.LANCZOS).save(photos / p.name)
    portraits = tmp / "portraits"
    portraits.mkdir()
    import matplotlib.cbook

    astronaut = next(p for p in audit_photo_paths() if p.name == "astronaut.png")
    for src in (astronaut, Path(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))):
        with Image.open(src) as im:
            scale = 512 / max(im.size)
            im.convert("RGB").resize((round(im.width * scale), round(im.height * scale)),
                                     Image.Resampling.LANCZOS).save(portraits / (Path(src).stem + ".png"))
    args.out.mkdir(parents=True, exist_ok=True)
    for name in chosen:
        portrait = METHODS[name].subject == "portrait"
        options = SynthOptions(method=name, count=2 if portrait else 1, seed=args.seed)
        if METHODS[name].needs_model:
            options.inpaint = InpaintConfig(model="tiny", device="cpu", steps=4)
        synthesize([portraits if portrait else photos], tmp / name, options)
        sheet = args.out / f"{name}.png"
        shown = make_contact_sheet([tmp / name], sheet, 4 if portrait else len(PHOTOS))
        with Image.open(sheet) as im:  # docs stay light: a palette PNG
            im.convert("RGB").quantize(256).save(sheet, optimize=True)
        print(f"{name:<10} {shown} samples -> {sheet} ({sheet.stat().st_size // 1024} KiB)")
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
