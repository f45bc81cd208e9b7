"""Hugging Face `datasets`' plain ``load_dataset("webdataset", data_files=...)`` reads our shards, with
no ``features=``: every sample of every split, whatever its method, template or language.

That loader infers one schema from the first five samples of one shard and casts every other sample
to it, so the shard JSON must have the same keys and value types in every sample (`SAMPLE_SCHEMA`).
The old writer (the operation log as a nested object holding each method's own parameters, nulls
outside the pair template) fails here: on our full shards with a `DatasetGenerationError`, on these
small ones (datasets 5.2) by silently giving every log the union of keys seen, nulls for the others,
and dropping parameters the first samples lacked (a resample's factor).
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import cv2
import pytest
from PIL import Image

from forgery_synth.dataset.check import check_sample, check_shards
from forgery_synth.dataset.shard_options import ShardOptions
from forgery_synth.dataset.shards import build_shards
from forgery_synth.dataset.splits import SPLITS
from forgery_synth.dataset.tar_shards import (
    CONVERSATION_KEYS,
    SAMPLE_SCHEMA,
    iter_tar_samples,
    sample_log,
    schema_problems,
    shard_paths,
)
from forgery_synth.documents.generate import DocumentOptions, generate_documents
from forgery_synth.methods import METHODS
from forgery_synth.methods.inpaint_config import InpaintConfig
from forgery_synth.synthesis.engine import synthesize
from forgery_synth.synthesis.options import SynthOptions


@pytest.fixture(scope="module")
def every_kind(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Shards of every synth method (inpaint with the tiny pipeline), authentic samples and `--real`
    photos, all four templates, both languages, three splits, 4 samples a shard; returns
    (shard_dir, root)."""
    from skimage import data

    root = tmp_path_factory.mktemp("every_kind")
    photos = root / "photos"
    photos.mkdir()
    for name in ("astronaut", "chelsea", "coffee", "rocket", "camera"):
        img = getattr(data, name)()
        img = img if img.ndim == 3 else cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
        Image.fromarray(cv2.resize(img, (96, 72), interpolation=cv2.INTER_AREA)).save(photos / f"{name}.png")
    portraits = root / "portraits"  # the portrait methods need faces of some size: two real portraits
    portraits.mkdir()
    Image.fromarray(data.astronaut()).save(portraits / "astronaut.png")
    import matplotlib.cbook

    Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg")).convert("RGB").save(portraits / "grace_hopper.png")
    pages = root / "documents"  # the text methods' sources: rendered pages with their layouts
    list(generate_documents(pages, DocumentOptions(count=2, kinds=("invoice",), langs=("en", "zh"))))
    samples = []
    for method in (*METHODS, "authentic"):
        inpaint = InpaintConfig(model="tiny", steps=2, device="cpu") if method == "inpaint" else None
        subject = METHODS[method].subject if method in METHODS else "any"
        source = {"portrait": portraits, "document": pages}.get(subject, photos)
        sources = [photos, portraits, pages] if method == "authentic" else [source]  # real ones of every kind too
        synthesize(sources, root / "samples" / method, SynthOptions(method=method, count=1, inpaint=inpaint))
        samples.append(root / "samples" / method)
    shards = root / "shards"
    build_shards(ShardOptions(out=shards, samples=samples, real=[photos, portraits, pages], splits=(0.4, 0.3, 0.3), shard_size=4, real_ratio=0.15,
                              templates={t: 1.0 for t in ("json", "explain", "conclusion", "pair")},
                              min_pixels=56 * 56, max_pixels=84 * 84))
    return shards, root


def _records(shards: Path) -> list[dict]:
    return [json.loads(m["json"]) for p in shard_paths(shards) for _, m in iter_tar_samples(p)]


def test_plain_load_dataset_reads_every_sample_of_every_split(every_kind, tmp_path, monkeypatch):
    from datasets import load_dataset

    shards, root = every_kind
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    records = _records(shards)
    # the build covers what makes the JSON vary: every method, template, language and split
    assert {r["method"] for r in records} == {*METHODS, "authentic"}
    assert {r["template"] for r in records} == {"json", "explain", "conclusion", "pair"}
    assert {r["lang"] for r in records} == {"zh", "en"}
    assert {r["split"] for r in records} == set(SPLITS)
    assert all(len(shard_paths(shards, s)) >= 2 for s in SPLITS)  # the schema must hold past the first shard

    files = {s: [str(p) for p in shard_paths(shards, s)] for s in SPLITS}
    ds = load_dataset("webdataset", data_files=files, cache_dir=str(tmp_path / "hf-cache"))
    manifest = json.loads((shards / "manifest.json").read_text())
    by_key = {r["key"]: r for r in records}
    for split in SPLITS:
        rows = list(ds[split])
        assert len(rows) == manifest["splits"][split]["count"] > 0
        assert {"json", "mask.png", "png"} <= set(ds[split].column_names)
        # nothing lost, added or retyped on the way (the old writer's logs came back with other
        # methods' parameters as nulls and their own dropped, or failed to load)
        lost = [r["__key__"] for r in rows if r["json"] != by_key[r["__key__"]]]
        assert not lost, f"{split}: {len(lost)} of {len(rows)} samples differ from their shard JSON"
        assert all(r["png"].size == r["mask.png"].size for r in rows)
    # the log comes back whole, each method's own parameters included
    logs = [sample_log(r["json"]) for s in SPLITS for r in ds[s]]
    assert {log["method"] for log in logs} == {*METHODS, "authentic"}
    inpaint = next(log for log in logs if log["method"] == "inpaint")
    assert "prompt" in json.dumps(inpaint["ops"])


def test_every_sample_fits_the_one_schema(every_kind):
    shards, _ = every_kind
    records = _records(shards)
    assert all(schema_problems(r) == [] for r in records)
    assert check_shards(shards) == []


def _first_sample(shards: Path) -> tuple[str, dict[str, bytes], dict]:
    path = shard_paths(shards, "train")[0]
    key, members = next(iter_tar_samples(path))
    return key, members, json.loads(members["json"])


@pytest.mark.parametrize("change, says", [
    (lambda r: r["frame"].update(pair_with=None), "json.frame.pair_with is NoneType, not str"),
    (lambda r: r["codec"].update(quality=85.0), "json.codec.quality is float, not int"),
    (lambda r: r["source"].update(exif={}), "json.source keys"),
    (lambda r: r.update(log=json.loads(r.pop("log_json"))), "old 'log' object"),
])
def test_check_shards_refuses_a_sample_off_the_schema(every_kind, change, says):
    shards, _ = every_kind
    key, members, record = _first_sample(shards)
    change(record)
    found, _ = check_sample(key, {**members, "json": json.dumps(record).encode()}, "train", {})
    assert any(says in p for p in found), found


def test_schema_is_what_the_old_writer_broke():
    """The old JSON (a nested per-method log, nulls outside pair) does not fit: the types that made
    `datasets` fail are named."""
    old = {"key": "k", "split": "train", "messages": [{"role": "user", "content": "<image>"}], "images": ["k.png"],
           "label": "fake", "method": "copy-move", "template": "json", "lang": "en", "log": {"ops": [{"angle": 3.0}]},
           "source": {"path": "p", "sha256": "s", "size": [1, 2]},
           "frame": {"size": [28, 28], "input_size": [1, 2], "pair_with": None, "pair_side": None},
           "codec": {"format": "png", "quality": None}}
    assert schema_problems(old) and "log_json" in schema_problems(old)[0]
    old["log_json"] = json.dumps(old.pop("log"))
    assert schema_problems(old) == ["json.frame.pair_with is NoneType, not str", "json.frame.pair_side is NoneType, not str",
                                    "json.codec.quality is NoneType, not int"]
    with pytest.raises(ValueError, match="older build-shards"):
        sample_log({"log": {}})
    assert list(SAMPLE_SCHEMA) == list(CONVERSATION_KEYS)


def test_check_shards_refuses_shards_of_the_old_layout(every_kind, tmp_path):
    """Shards written before `log_json` are refused by name, with what to do (rebuild)."""
    shards, _ = every_kind
    key, members, record = _first_sample(shards)
    record["log"] = json.loads(record.pop("log_json"))
    data = json.dumps(record).encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for ext, payload in sorted({**members, "json": data}.items()):
            ti = tarfile.TarInfo(f"{key}.{ext}")
            ti.size = len(payload)
            tf.addfile(ti, io.BytesIO(payload))
    (tmp_path / "train-000000.tar").write_bytes(buf.getvalue())
    manifest = json.loads((shards / "manifest.json").read_text())
    manifest["conversation_keys"] = [k if k != "log_json" else "log" for k in manifest["conversation_keys"]]
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    problems = check_shards(tmp_path)
    assert any("conversation_keys" in p and "rebuild" in p for p in problems)
    assert any(f"train/{key}" in p and "old 'log' object" in p for p in problems)
