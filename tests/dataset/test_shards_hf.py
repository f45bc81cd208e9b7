"""Hugging Face `datasets`' webdataset loader reads our shards, every shard, every method."""

from __future__ import annotations

import json

import piexif
from PIL import Image

from forgery_synth.dataset.hf_datasets import load_shards
from forgery_synth.dataset.shard_options import ShardOptions
from forgery_synth.dataset.shards import build_shards
from forgery_synth.dataset.tar_shards import shard_paths
from forgery_synth.synthesis.engine import synthesize
from forgery_synth.synthesis.options import SynthOptions


def test_hf_datasets_loads_every_shard(tmp_path, photo_dir, photo, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    exif = piexif.dump({"0th": {piexif.ImageIFD.Make: b"Canon", piexif.ImageIFD.DateTime: b"2023:05:01 10:00:00"}})
    Image.fromarray(photo).save(photo_dir / "camera.jpg", quality=95, exif=exif)
    samples = tmp_path / "samples"
    synthesize([photo_dir], samples, SynthOptions(method="mixed", count=3, post="jpeg:80-95", exif="tamper"))
    synthesize([photo_dir], samples, SynthOptions(method="authentic", count=2, post="jpeg:80-95"))
    shards = tmp_path / "shards"
    build_shards(ShardOptions(out=shards, samples=[samples], splits=(1.0, 0.0, 0.0), shard_size=4,
                              min_pixels=56 * 56, max_pixels=112 * 112))
    assert len(shard_paths(shards, "train")) > 2  # the schema must hold across shards, not just the first

    ds = load_shards(shards, "train", cache_dir=str(tmp_path / "hf-cache"))
    manifest = json.loads((shards / "manifest.json").read_text())
    assert ds.num_rows == manifest["splits"]["train"]["count"]
    assert {"json", "mask.png", "png"} <= set(ds.column_names)
    rows = list(ds)
    assert {r["json"]["label"] for r in rows} == {"real", "fake"}
    assert all(r["png"].size == r["mask.png"].size for r in rows)
    assert any(r["json"]["log"]["source"]["exif"]["Make"] == "Canon" for r in rows)
