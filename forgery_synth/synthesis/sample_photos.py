"""Real photos that ship inside an installed package (scikit-image), so demos need no download."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

SAMPLE_PHOTOS = (
    "astronaut.png",        # portrait, 512x512
    "coffee.png",           # still life, 600x400
    "chelsea.png",          # cat, 451x300
    "rocket.jpg",           # launch pad at night, 427x640 JPEG
    "motorcycle_left.png",  # street scene, 741x500
    "hubble_deep_field.jpg",  # astronomy, JPEG
    "retina.jpg",           # medical photo, JPEG
    "camera.png",           # grayscale portrait
    "coins.png",            # grayscale objects
    "page.png",             # grayscale document
)


def sample_photo_paths() -> list[Path]:
    """Paths of the bundled photos inside the installed scikit-image."""
    import skimage

    root = Path(skimage.__file__).parent / "data"
    return [root / name for name in SAMPLE_PHOTOS if (root / name).exists()]


def copy_sample_photos(dest: str | os.PathLike) -> list[Path]:
    """Copy the bundled photos into `dest` (created if needed); returns the copies' paths."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    copies = []
    for src in sample_photo_paths():
        target = dest / src.name
        if not target.exists():
            shutil.copyfile(src, target)
        copies.append(target)
    return copies
