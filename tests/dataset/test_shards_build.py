"""build-shards: read-back, schema, splits, balance, codec policy, caps, resume, rejects."""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
import webdataset as wds
from PIL import Image

from forgery_synth.dataset.check import check_shards
from forgery_synth.dataset.conversations import TEMPLATES
from forgery_synth.dataset.shard_options import OptionError, ShardOptions
from forgery_synth.dataset.shards import build_shards
from forgery_synth.dataset.splits import assign_splits, balance
from forgery_synth.dataset.tar_shards import (
    CONVERSATION_KEYS,
    iter_tar_samples,
    sample_log,
    shard_paths,
)


@pytest.fixture(scope="module")
def built(tmp_path_factory, build_small):
    root = tmp_path_factory.mktemp("built")
    shard_dir, samples, photos = build_small(root, n_sources=14, shard_size=5)
    return shard_dir, samples, photos


def _raw(shard_dir: Path) -> dict[str, dict[str, bytes]]:
    return {k: m for p in shard_paths(shard_dir) for k, m in iter_tar_samples(p)}


def test_webdataset_reads_back_exactly_what_was_written(built):
    shard_dir = built[0]
    raw = _raw(shard_dir)
    urls = [str(p) for p in shard_paths(shard_dir)]
    got = list(wds.WebDataset(urls, shardshuffle=False).decode("pil"))
    assert len(got) == len(raw) > 10
    for s in got:
        members = raw[s["__key__"]]
        ext = "png" if "png" in members else "jpg"
        image = Image.open(io.BytesIO(members[ext]))
        assert np.array_equal(np.asarray(s[ext]), np.asarray(image.convert("RGB")))
        # decode("pil") hands every image back as RGB: the mask's three channels equal the L mask
        mask_rgb = np.asarray(s["mask.png"])
        mask = np.asarray(Image.open(io.BytesIO(members["mask.png"])))
        assert all(np.array_equal(mask_rgb[..., c], mask) for c in range(3))
        assert s["json"] == json.loads(members["json"])
        assert s["mask.png"].size == s[ext].size
        assert set(k for k in s if not k.startswith("__")) == set(members)


def test_every_sample_has_the_same_members_and_json_keys(built):
    shard_dir = built[0]
    raw = _raw(shard_dir)
    assert {frozenset(m) for m in raw.values()} == {frozenset({"png", "mask.png", "json"})}
    for key, members in raw.items():
        assert "." not in key
        record = json.loads(members["json"])
        assert tuple(record) == CONVERSATION_KEYS
        assert record["source"]["path"] and len(record["source"]["sha256"]) == 64
        assert sample_log(record)["id"] == key and record["images"] == [f"{key}.png"]
        mask = np.asarray(Image.open(io.BytesIO(members["mask.png"])))
        assert (record["label"] == "fake") == bool(mask.any())
    for p in shard_paths(shard_dir):  # no pickle or other members, names only key.ext
        import tarfile

        with tarfile.open(p) as tf:
            assert all(n.split(".", 1)[1] in ("png", "mask.png", "json") for n in tf.getnames())
    assert check_shards(shard_dir) == []


def test_splits_are_disjoint_by_source(built):
    shard_dir = built[0]
    where: dict[str, set[str]] = defaultdict(set)
    for p in shard_paths(shard_dir):
        for _, members in iter_tar_samples(p):
            record = json.loads(members["json"])
            assert p.name.startswith(record["split"] + "-")
            where[record["source"]["sha256"]].add(record["split"])
    assert all(len(s) == 1 for s in where.values())
    assert len({next(iter(s)) for s in where.values()}) >= 2


def test_split_quotas_are_exact_and_never_leave_a_split_empty():
    import hashlib

    shas = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(10)]
    counts = Counter(assign_splits(shas, (0.6, 0.2, 0.2)).values())
    assert counts == {"train": 6, "val": 2, "test": 2}
    counts = Counter(assign_splits(shas[:3], (0.9, 0.05, 0.05)).values())
    assert counts == {"train": 1, "val": 1, "test": 1}
    assert set(assign_splits(shas, (1.0, 0.0, 0.0)).values()) == {"train"}
    assert assign_splits(list(reversed(shas)), (0.6, 0.2, 0.2)) == assign_splits(shas, (0.6, 0.2, 0.2))


def test_label_balance_and_manifest_counts(built):
    shard_dir = built[0]
    manifest = json.loads((shard_dir / "manifest.json").read_text())
    labels = Counter(json.loads(m["json"])["label"] for m in _raw(shard_dir).values())
    assert labels["real"] == labels["fake"]  # the fixture has more fakes than reals in every split
    assert manifest["labels"] == dict(labels)
    for split, entry in manifest["splits"].items():
        if entry["count"]:
            assert entry["balance"]["real_ratio"] == 0.5
            assert entry["labels"].get("real") == entry["labels"].get("fake")
            assert all(sh["count"] <= 5 for sh in entry["shards"])
    assert manifest["options"]["real_ratio"] == 0.5


def test_shards_interleave_labels_and_the_manifest_counts_each_shard(built):
    """Labels alternate in the write order (so in every shard), and each shard's manifest entry holds
    its label and (template, label) counts, as read back from the tar."""
    shard_dir = built[0]
    manifest = json.loads((shard_dir / "manifest.json").read_text())
    assert manifest["interleaved"] is True
    for split, entry in manifest["splits"].items():
        labels = [json.loads(m["json"])["label"] for sh in entry["shards"]
                  for _, m in iter_tar_samples(shard_dir / sh["name"])]
        assert all(a != b for a, b in zip(labels, labels[1:])), split  # balanced splits: strictly alternating
        for sh in entry["shards"]:
            metas = [json.loads(m["json"]) for _, m in iter_tar_samples(shard_dir / sh["name"])]
            pairs = Counter((m["template"], m["label"]) for m in metas)
            assert sh["labels"] == {"real": sum(v for (_, la), v in pairs.items() if la == "real"),
                                    "fake": sum(v for (_, la), v in pairs.items() if la == "fake")}
            assert {(t, la): n for t, c in sh["template_labels"].items() for la, n in c.items() if n} == dict(pairs)


def test_balance_function():
    reals = [f"r{i}" for i in range(30)]
    fakes = [f"f{i}" for i in range(10)]
    r, f = balance(reals, fakes, 0.5, seed=0)
    assert len(r) == 10 and len(f) == 10 and set(r) <= set(reals)
    r, f = balance(reals, fakes, 0.25, seed=0)
    assert (len(r), len(f)) == (3, 10)
    r, f = balance(reals[:2], fakes, 0.25, seed=0)
    assert (len(r), len(f)) == (2, 6)
    assert balance(reals, [], 0.5, 0) == (reals, [])
    assert balance(reals, fakes, 0.5, 1)[0] != balance(reals, fakes, 0.5, 2)[0]


def test_jpeg_codec_policy_is_the_same_for_real_and_fake(tmp_path, build_small):
    shard_dir, _, _ = build_small(tmp_path, codec="jpeg", jpeg_quality=(80, 90))
    raw = _raw(shard_dir)
    qualities = defaultdict(list)
    for members in raw.values():
        assert set(members) == {"jpg", "mask.png", "json"}
        record = json.loads(members["json"])
        im = Image.open(io.BytesIO(members["jpg"]))
        assert im.format == "JPEG" and not im.info.get("exif")
        assert record["codec"]["format"] == "jpeg" and 80 <= record["codec"]["quality"] <= 90
        qualities[record["label"]].append(record["codec"]["quality"])
    assert set(qualities) == {"real", "fake"}
    assert check_shards(shard_dir) == []


def test_png_codec_has_no_metadata_difference(built):
    infos = {json.loads(m["json"])["label"]: Image.open(io.BytesIO(m["png"])).info for m in _raw(built[0]).values()}
    assert infos["real"].keys() == infos["fake"].keys()


def test_determinism_independent_of_input_order_and_byte_identical(tmp_path, make_sample_tree):
    a, _ = make_sample_tree(tmp_path / "a", n_sources=5, seed=1)
    b, _ = make_sample_tree(tmp_path / "b", n_sources=5, seed=2)
    o1, o2 = tmp_path / "o1", tmp_path / "o2"
    build_shards(ShardOptions(out=o1, samples=[a, b], real_ratio=0.0))
    build_shards(ShardOptions(out=o2, samples=[b, a], real_ratio=0.0))
    names = sorted(p.name for p in shard_paths(o1))
    assert names == sorted(p.name for p in shard_paths(o2))
    for n in names:
        assert (o1 / n).read_bytes() == (o2 / n).read_bytes()
    o3 = tmp_path / "o3"
    build_shards(ShardOptions(out=o3, samples=[a, b], real_ratio=0.0, seed=7))
    assert any((o1 / n).read_bytes() != (o3 / n).read_bytes() for n in names if (o3 / n).exists())


def test_shard_bytes_cap(tmp_path, build_small):
    shard_dir, _, _ = build_small(tmp_path, shard_bytes=1 << 16)
    sizes = [p.stat().st_size for p in shard_paths(shard_dir)]
    manifest = json.loads((shard_dir / "manifest.json").read_text())
    assert len(sizes) > 3
    for split in manifest["splits"].values():
        for sh in split["shards"]:
            assert sh["bytes"] <= 1 << 16 or sh["count"] == 1
            assert sh["bytes"] == (shard_dir / sh["name"]).stat().st_size
            assert sh["sha256"] == hashlib.sha256((shard_dir / sh["name"]).read_bytes()).hexdigest()
    assert check_shards(shard_dir) == []


KILL_SCRIPT = """
import os, signal, sys
from pathlib import Path
from forgery_synth.dataset.shard_options import ShardOptions
from forgery_synth.dataset.shards import build_shards
samples, photos, out, kill_at = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
def progress(done, total):
    if done == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
build_shards(ShardOptions(out=Path(out), samples=[Path(samples)], real=[Path(photos)], splits=(0.6, 0.2, 0.2),
                          shard_size=3), progress)
"""


@pytest.mark.parametrize("kill_at", [4, 11])
def test_resume_after_a_kill_gives_the_same_shards(tmp_path, kill_at, make_sample_tree):
    samples, photos = make_sample_tree(tmp_path, n_sources=12)
    ref = tmp_path / "ref"
    build_shards(ShardOptions(out=ref, samples=[samples], real=[photos], splits=(0.6, 0.2, 0.2), shard_size=3))
    out = tmp_path / "out"
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, "-c", KILL_SCRIPT, str(samples), str(photos), str(out), str(kill_at)],
                          cwd=root, env={**os.environ, "PYTHONPATH": str(root)}, capture_output=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    assert not (out / "manifest.json").exists()
    assert check_shards(out)  # the interrupted directory is reported as unfinished
    with pytest.raises(OptionError):
        build_shards(ShardOptions(out=out, samples=[samples], real=[photos], splits=(0.6, 0.2, 0.2), shard_size=3))
    build_shards(ShardOptions(out=out, samples=[samples], real=[photos], splits=(0.6, 0.2, 0.2), shard_size=3,
                              resume=True))
    names = sorted(p.name for p in shard_paths(ref))
    assert names == sorted(p.name for p in out.glob("*.tar"))
    assert not list(out.glob("*.tmp")) and not (out / "progress.json").exists()
    for n in names:
        assert (ref / n).read_bytes() == (out / n).read_bytes()
    keys = [k for p in shard_paths(out) for k, _ in iter_tar_samples(p)]
    assert len(keys) == len(set(keys)) == json.loads((ref / "manifest.json").read_text())["count"]
    assert check_shards(out) == []
    with pytest.raises(OptionError):  # a resume whose options changed is refused
        build_shards(ShardOptions(out=out, samples=[samples], real=[photos], splits=(0.6, 0.2, 0.2), shard_size=3,
                                  resume=True, seed=5))


def test_bad_samples_are_rejected_and_the_run_goes_on(tmp_path, make_sample_tree):
    samples, photos = make_sample_tree(tmp_path, n_sources=6)
    lines = [json.loads(l) for l in (samples / "index.jsonl").read_text().splitlines()]
    fakes = [e for e in lines if e["label"] == "fake"]
    (samples / fakes[0]["image"]).unlink()  # missing image
    (samples / fakes[1]["mask"]).write_bytes(b"not a png")  # unreadable mask
    Image.new("L", (17, 19)).save(samples / fakes[2]["mask"])  # size mismatch
    (samples / fakes[3]["log"]).unlink()  # missing log
    out = tmp_path / "out"
    report = build_shards(ShardOptions(out=out, samples=[samples], real_ratio=0.0, splits=(1.0, 0.0, 0.0)))
    rejects = [json.loads(l) for l in (out / "rejects.jsonl").read_text().splitlines()]
    assert len(rejects) == report.rejects == 4
    text = " ".join(r["error"] for r in rejects)
    assert "No such file" in text and "mask is 17x19" in text
    assert report.counts["train"] == len(fakes) - 4
    assert check_shards(out) == []


def test_bad_options_raise_option_error(tmp_path, make_sample_tree):
    samples, photos = make_sample_tree(tmp_path, n_sources=2)
    bad = [dict(splits=(0.5, 0.2, 0.2)), dict(real_ratio=1.5), dict(codec="webp"), dict(templates={"nope": 1.0}),
           dict(langs={"fr": 1.0}), dict(jpeg_quality=(90, 80)), dict(max_pixels=100), dict(shard_size=0),
           dict(samples=[photos]), dict(samples=[], real=[])]
    for b in bad:
        opts = dict(out=tmp_path / "o", samples=[samples]) | b
        with pytest.raises(OptionError):
            build_shards(ShardOptions(**opts))


def test_swift_export(tmp_path, build_small):
    shard_dir, _, _ = build_small(tmp_path, swift=tmp_path / "swift")
    manifest = json.loads((shard_dir / "manifest.json").read_text())
    for split, entry in manifest["splits"].items():
        lines = [json.loads(l) for l in (tmp_path / "swift" / f"{split}.jsonl").read_text().splitlines()]
        assert len(lines) == entry["count"]
        for line in lines:
            assert set(line) == {"messages", "images"}
            assert line["messages"][0]["content"].count("<image>") == len(line["images"]) == 1
            assert all(Path(p).is_file() and Path(p).is_absolute() for p in line["images"])


def test_templates_follow_weights_and_pairs_hold_both_photos(tmp_path, build_small):
    shard_dir, _, _ = build_small(tmp_path, templates={"pair": 1.0}, real_ratio=0.0)
    for members in _raw(shard_dir).values():
        record = json.loads(members["json"])
        assert record["template"] == "pair" and record["frame"]["pair_side"] in ("left", "right")
        w, h = record["frame"]["size"]
        mask = np.asarray(Image.open(io.BytesIO(members["mask.png"])))
        half = mask[:, : w // 2] if record["frame"]["pair_side"] == "left" else mask[:, w // 2:]
        assert mask.sum() > 0 and abs(int(half.astype(np.int64).sum()) - int(mask.astype(np.int64).sum())) < 0.05 * mask.sum()
    assert check_shards(shard_dir) == []
    assert set(TEMPLATES) >= {"pair"}


def test_extreme_aspect_ratio_is_rejected_not_fatal(tmp_path):
    photos = tmp_path / "thin"
    photos.mkdir()
    Image.new("RGB", (13000, 64), (10, 20, 30)).save(photos / "thin.png")  # 203:1, above Qwen's 200
    Image.new("RGB", (120, 90), (10, 20, 30)).save(photos / "ok.png")
    report = build_shards(ShardOptions(out=tmp_path / "o", real=[photos], real_ratio=0.5, splits=(1.0, 0.0, 0.0)))
    assert report.rejects == 1 and report.counts["train"] == 1
    assert "aspect ratio" in (tmp_path / "o" / "rejects.jsonl").read_text()


def test_worker_processes_give_the_same_shards(tmp_path, make_sample_tree):
    samples, photos = make_sample_tree(tmp_path, n_sources=5)
    outs = []
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        build_shards(ShardOptions(out=out, samples=[samples], real=[photos], shard_size=4, workers=workers))
        outs.append({p.name: p.read_bytes() for p in shard_paths(out)})
    assert outs[0] == outs[1] and outs[0]
