"""Awkward and broken inputs: converted and used, or rejected with a reason; the run goes on."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import piexif
import pytest
from PIL import Image

from forgery_synth.synthesis.engine import synthesize
from forgery_synth.synthesis.loading import ImageRejected, load_image
from forgery_synth.synthesis.options import SynthOptions


def _rgb(photo, size=(120, 90)):
    return Image.fromarray(photo).resize(size)


@pytest.fixture()
def awkward(tmp_path, photo) -> dict[str, Path]:
    """One file per awkward-but-usable input kind."""
    d = tmp_path / "awkward"
    d.mkdir()
    base = _rgb(photo)
    files = {}
    files["gray"] = d / "gray.png"
    base.convert("L").save(files["gray"])
    files["palette"] = d / "palette.png"
    base.convert("P", palette=Image.ADAPTIVE).save(files["palette"], transparency=0)
    files["rgba"] = d / "rgba.png"
    rgba = base.convert("RGBA")
    alpha = np.full((base.height, base.width), 255, np.uint8)
    alpha[:10] = 0  # a fully transparent band at the top
    rgba.putalpha(Image.fromarray(alpha))
    rgba.save(files["rgba"])
    files["cmyk"] = d / "cmyk.jpg"
    base.convert("CMYK").save(files["cmyk"])
    files["gray16"] = d / "gray16.png"
    Image.fromarray((np.asarray(base.convert("L")).astype(np.uint16) * 257)).save(files["gray16"])
    files["webp"] = d / "photo.webp"
    base.save(files["webp"], lossless=True)
    files["tiff"] = d / "photo.tif"
    base.save(files["tiff"])
    files["rotated"] = d / "rotated.jpg"
    exif = piexif.dump({"0th": {piexif.ImageIFD.Orientation: 6, piexif.ImageIFD.Make: b"Canon"}})
    base.save(files["rotated"], exif=exif, quality=95)
    return files


def test_awkward_inputs_become_rgb8(awkward):
    for kind, path in awkward.items():
        loaded = load_image(path)
        assert loaded.rgb.dtype == np.uint8 and loaded.rgb.ndim == 3 and loaded.rgb.shape[2] == 3, kind
    rotated = load_image(awkward["rotated"])
    assert rotated.size == [90, 120]  # orientation 6: rotated a quarter turn
    assert rotated.exif["Make"] == "Canon" and rotated.exif["Orientation"] == 6
    rgba = load_image(awkward["rgba"]).rgb
    assert np.all(rgba[0, 0] == 255)  # fully transparent corner composited on white
    gray16 = load_image(awkward["gray16"]).rgb
    gray8 = load_image(awkward["gray"]).rgb
    assert np.abs(gray16.astype(int) - gray8.astype(int)).max() <= 1


@pytest.fixture()
def broken(tmp_path, photo) -> dict[str, Path]:
    """One file per unusable input kind."""
    d = tmp_path / "broken"
    d.mkdir()
    files = {}
    good = io.BytesIO()
    _rgb(photo).save(good, format="JPEG", quality=90)
    files["truncated"] = d / "truncated.jpg"
    files["truncated"].write_bytes(good.getvalue()[: len(good.getvalue()) // 3])
    files["not-an-image"] = d / "notes.png"
    files["not-an-image"].write_text("this is not a picture")
    files["empty"] = d / "empty.jpg"
    files["empty"].write_bytes(b"")
    files["small"] = d / "small.png"
    _rgb(photo, (40, 100)).save(files["small"])
    files["dangling"] = d / "dangling.png"
    files["dangling"].symlink_to(d / "nowhere.png")
    return files


REASONS = {
    "truncated": "truncated or corrupt",
    "not-an-image": "not an image",
    "empty": "empty file",
    "small": "at least 64 px",
    "dangling": "cannot read file",
}


def test_broken_inputs_are_rejected_with_reasons(broken):
    for kind, path in broken.items():
        with pytest.raises(ImageRejected, match=REASONS[kind]):
            load_image(path)


def test_too_many_pixels_rejected_before_decoding(tmp_path):
    """A header announcing a huge image is refused without decoding its pixels."""
    path = tmp_path / "bomb.png"
    Image.new("1", (20000, 20000)).save(path)  # 400 MP, a few kB on disk
    with pytest.raises(ImageRejected, match="above --max-pixels"):
        load_image(path, max_pixels=64_000_000)


def test_run_over_mixed_good_and_bad_inputs(tmp_path, awkward, broken):
    out = tmp_path / "out"
    report = synthesize([awkward["gray"].parent, broken["truncated"].parent], out, SynthOptions(method="blur", count=1))
    assert report.written == len(awkward)
    rejects = [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]
    rejected_names = {Path(r["path"]).name for r in rejects}
    assert rejected_names == {p.name for p in broken.values()}
    for r in rejects:
        kind = next(k for k, p in broken.items() if p.name == Path(r["path"]).name)
        assert REASONS[kind] in r["error"]
    index = [json.loads(line) for line in (out / "index.jsonl").read_text().splitlines()]
    assert len(index) == len(awkward)
    for entry in index:
        image = Image.open(out / entry["image"])
        mask = Image.open(out / entry["mask"])
        assert image.size == mask.size and mask.mode == "L"
