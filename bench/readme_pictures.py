"""The README's pictures, made from a demo run: the shard contact sheet, an evaluation example and a
screenshot of the report in a real headless browser.

    .venv/bin/forgery demo --out out/demo
    .venv/bin/python bench/readme_pictures.py --demo out/demo          # writes docs/sheet.png, overlay.png, report.png

The screenshot needs Chromium (Debian: `apt-get install chromium`); without it the other two are
still written and the script says so. The page is rendered as a person opens it: from disk, no
server, at 1280 px wide.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def screenshot(html: Path, out: Path, width: int = 1280, height: int = 2000) -> bool:
    """Render `html` in headless Chromium into the PNG `out`; False when no browser is installed."""
    browser = next((b for b in BROWSERS if shutil.which(b)), None)
    if browser is None:
        return False
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        f"--user-data-dir={profile}", f"--window-size={width},{height}",
                        f"--screenshot={out.resolve()}", html.resolve().as_uri()],
                       check=True, capture_output=True, timeout=120)
    return out.is_file()


def _light(path: Path) -> None:
    with Image.open(path) as im:
        im.convert("RGB").quantize(256).save(path, optimize=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--demo", type=Path, default=Path("out/demo"))
    ap.add_argument("--docs", type=Path, default=Path("docs"))
    args = ap.parse_args()
    args.docs.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(args.demo / "sheet.png", args.docs / "sheet.png")
    _light(args.docs / "sheet.png")
    examples = args.demo / "eval" / "examples"
    tag = "best_00" if (examples / "best_00_image.png").is_file() else "worst_00"
    parts = [np.asarray(Image.open(examples / f"{tag}_{k}.png").convert("RGB")) for k in ("image", "gt", "overlay")]
    h = max(p.shape[0] for p in parts)
    row = np.concatenate([np.pad(p, ((0, h - p.shape[0]), (0, 6), (0, 0)), constant_values=255) for p in parts], 1)
    Image.fromarray(row).save(args.docs / "overlay.png")
    print(f"wrote {args.docs / 'sheet.png'} and {args.docs / 'overlay.png'} ({tag})")
    if screenshot(args.demo / "eval" / "report.html", args.docs / "report.png"):
        _light(args.docs / "report.png")
        print(f"wrote {args.docs / 'report.png'} (headless Chromium)")
    else:
        print("no Chromium found: docs/report.png not written", file=sys.stderr)


if __name__ == "__main__":
    main()
