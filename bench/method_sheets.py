"""What a person sees: one contact sheet per forgery method, into docs/methods/.

Six photos of the audit corpus (four colour, two greyscale), one sample each, default options
(object regions for copy-move, splice and erase; blends drawn per sample); the mask in red over
each image. The text methods (subject "document") run on six rendered documents instead (ID
card, invoice, certificate, in Chinese and English, from `forgery documents`, layouts beside them),
and `documents.png` shows those originals. The portrait methods run on two portraits (scikit-image's
astronaut, matplotlib's grace_hopper.jpg), two samples each. The sheets in the README's realism
section are made by:

    .venv/bin/python bench/method_sheets.py            # ~1 min on 2 cores; writes docs/methods/*.png
    .venv/bin/python bench/method_sheets.py --only hairline,catchlight,face-swap,skin-retouch
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
from forgery_synth.documents.generate import DocumentOptions, generate_documents  # noqa: E402
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
    ap.add_argument("--only", default="", help="comma-separated sheet names (a method or 'documents'); default: all")
    args = ap.parse_args()
    chosen = [m for m in args.only.split(",") if m] or ["documents", *METHODS]
    unknown = sorted(set(chosen) - set(METHODS) - {"documents"})
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
    pages = tmp / "pages"
    list(generate_documents(pages, DocumentOptions(count=6, seed=args.seed)))
    for name in chosen:
        document = name == "documents" or METHODS[name].subject == "document"
        portrait = name != "documents" and METHODS[name].subject == "portrait"
        options = SynthOptions(method="authentic" if name == "documents" else name, count=2 if portrait else 1,
                               seed=args.seed)
        if name != "documents" and METHODS[name].needs_model:
            options.inpaint = InpaintConfig(model="tiny", device="cpu", steps=4)
        synthesize([pages if document else portraits if portrait else photos], tmp / name, options)
        sheet = args.out / f"{name}.png"
        shown = make_contact_sheet([tmp / name], sheet, 4 if portrait else len(PHOTOS))
        with Image.open(sheet) as im:  # docs stay light: a palette PNG
            im.convert("RGB").quantize(256).save(sheet, optimize=True)
        print(f"{name:<10} {shown} samples -> {sheet} ({sheet.stat().st_size // 1024} KiB)")
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
