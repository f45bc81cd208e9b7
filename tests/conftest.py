"""Shared fixtures: small real photos (from scikit-image's bundled data) written to a temp folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from forgery_synth.synthesis.sample_photos import sample_photo_paths

SMALL_SIDE = 200


def _small(name: str) -> np.ndarray:
    """A bundled photo as HxWx3 uint8 with its long side scaled to SMALL_SIDE."""
    path = next(p for p in sample_photo_paths() if p.name == name)
    im = Image.open(path).convert("RGB")
    scale = SMALL_SIDE / max(im.size)
    return np.asarray(im.resize((round(im.width * scale), round(im.height * scale)), Image.BICUBIC))


@pytest.fixture(scope="session")
def photo() -> np.ndarray:
    """A small real photo: HxWx3 uint8 (coffee.png, 200x133)."""
    return _small("coffee.png")


@pytest.fixture(scope="session")
def donor_photo() -> np.ndarray:
    """A second small real photo: HxWx3 uint8 (chelsea.png)."""
    return _small("chelsea.png")


@pytest.fixture()
def photo_dir(tmp_path: Path) -> Path:
    """A folder of four small real photos (PNG and JPEG) for end-to-end runs."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("coffee.png", "chelsea.png", "astronaut.png", "rocket.jpg"):
        im = Image.fromarray(_small(name))
        if name.endswith(".jpg"):
            im.save(folder / name, quality=92)
        else:
            im.save(folder / name)
    return folder
