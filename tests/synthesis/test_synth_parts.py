"""Synthesis across machines: N `--part i/N` runs are one run cut in pieces, byte for byte,
and `build-shards` over the N part directories writes the very shards of the single run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from forgery_synth.dataset.shard_options import ShardOptions
from forgery_synth.dataset.shards import build_shards
from forgery_synth.synthesis.engine import synthesize
from forgery_synth.synthesis.options import SynthOptions

PARTS = 3


def _samples(out: Path) -> dict[str, bytes]:
    """Every file of a sample directory but its index and rejects, by path relative to it."""
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and p.parent != out}


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def _run_parts(photos: list[Path], root: Path, options: SynthOptions, donors: list[Path] | None) -> tuple[Path, list[Path]]:
    single = root / "single"
    synthesize(photos, single, options, donors=donors)
    parts = [root / f"part{i}" for i in range(1, PARTS + 1)]
    for i, out in enumerate(parts, 1):
        synthesize(photos, out, options, part=(i, PARTS), donors=donors)
    return single, parts


@pytest.fixture()
def more_photos(photo_dir: Path) -> Path:
    """photo_dir plus three flipped copies: seven inputs, so every part holds two or three."""
    for n, name in enumerate(sorted(photo_dir.iterdir())[:3]):
        Image.fromarray(np.asarray(Image.open(name))[:, ::-1].copy()).save(photo_dir / f"flip{n}.png")
    return photo_dir


@pytest.mark.parametrize("method, donor_folder", [("copy-move", False), ("splice", False), ("splice", True), ("mixed", False)])
def test_union_of_parts_is_the_single_run_byte_for_byte(tmp_path, more_photos, donor_photo, method, donor_folder):
    donors = None
    if donor_folder:
        folder = tmp_path / "donors"
        folder.mkdir()
        Image.fromarray(donor_photo[::-1].copy()).save(folder / "d0.png")
        Image.fromarray(donor_photo[:, ::-1].copy()).save(folder / "d1.png")
        donors = [folder]
    options = SynthOptions(method=method, count=2, seed=5)
    single, parts = _run_parts([more_photos], tmp_path, options, donors)
    whole = _samples(single)
    assert len(whole) >= 3 * 7 * 2 * 0.5  # image, mask, edge, log per sample: something was made
    union: dict[str, bytes] = {}
    for out in parts:
        files = _samples(out)
        assert files and not set(files) & set(union), f"{out.name} repeats another part's samples"
        union.update(files)
    assert sorted(union) == sorted(whole)
    differ = [name for name in whole if union[name] != whole[name]]
    assert not differ, f"bytes differ between the parts and the single run: {differ[:5]}"
    index = [line for out in parts for line in _lines(out / "index.jsonl")]
    assert sorted(index) == _lines(single / "index.jsonl")
    rejects = [line for out in parts for line in _lines(out / "rejects.jsonl")]
    assert sorted(rejects) == sorted(_lines(single / "rejects.jsonl"))


def test_build_shards_over_the_parts_equals_over_the_single_run(tmp_path, more_photos):
    single, parts = _run_parts([more_photos], tmp_path, SynthOptions(method="mixed", count=3, seed=2), None)
    common = dict(real=[more_photos], splits=(0.6, 0.2, 0.2), shard_size=4, real_ratio=0.3)
    one = build_shards(ShardOptions(out=tmp_path / "shards-single", samples=[single], **common))
    many = build_shards(ShardOptions(out=tmp_path / "shards-parts", samples=parts[::-1], **common))
    assert one.shards and one.shards == many.shards and one.counts == many.counts
    for name in one.shards:
        assert (one.out / name).read_bytes() == (many.out / name).read_bytes(), name
    a, b = dict(one.manifest), dict(many.manifest)
    assert a.pop("inputs")["samples"] == [str(single.resolve())]
    assert b.pop("inputs")["samples"] == [str(p.resolve()) for p in parts[::-1]]
    assert a == b  # every other manifest field, per-shard sha256 and the resume state included
    assert (one.out / "rejects.jsonl").read_bytes() == (many.out / "rejects.jsonl").read_bytes()
