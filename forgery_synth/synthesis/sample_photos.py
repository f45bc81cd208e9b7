"""Real photos that ship inside installed packages (scikit-image, scikit-learn, matplotlib): no download.

`SAMPLE_PHOTOS` is the demo's set; `AUDIT_PHOTOS` the wider corpus the shard audit is measured on
(22 photos, 10 of them greyscale, so colour and grey sources both occur).
"""

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


AUDIT_PHOTOS = (
    # scikit-image, colour
    "astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg", "motorcycle_left.png", "motorcycle_right.png",
    "hubble_deep_field.jpg", "retina.jpg", "ihc.png",
    # scikit-image, greyscale
    "camera.png", "coins.png", "page.png", "brick.png", "grass.png", "gravel.png", "moon.png", "text.png",
    "clock_motion.png", "cell.png",
    # scikit-learn, colour
    "sklearn:china.jpg", "sklearn:flower.jpg",
    # matplotlib, colour
    "matplotlib:grace_hopper.jpg",
)


def _package_photo(name: str) -> Path:
    package, _, file = name.rpartition(":")
    if package == "sklearn":
        import sklearn.datasets

        return Path(sklearn.datasets.__file__).parent / "images" / file
    if package == "matplotlib":
        import matplotlib

        return Path(matplotlib.get_data_path()) / "sample_data" / file
    import skimage

    return Path(skimage.__file__).parent / "data" / file


def audit_photo_paths() -> list[Path]:
    """Paths of the audit corpus inside the installed packages (the ones present)."""
    return [p for p in map(_package_photo, AUDIT_PHOTOS) if p.exists()]


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
