"""Both labels see the same world: the shortcuts the audit of the old shards found are gone.

Pair and every template for both labels, grey sources give grey forgeries, no answer sentence
belongs to one label, one loader for 16-bit and RGBA photos, near-duplicate photos share a split.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from forgery_synth.dataset import conversations as conv
from forgery_synth.dataset.audit import context_sentences
from forgery_synth.dataset.qwen_frame import resize_to_frame
from forgery_synth.dataset.shard_options import ShardOptions
from forgery_synth.dataset.shards import build_shards
from forgery_synth.dataset.splits import near_duplicate_groups
from forgery_synth.dataset.tar_shards import iter_tar_samples, shard_paths
from forgery_synth.synthesis.engine import synthesize
from forgery_synth.synthesis.loading import is_grey, load_image
from forgery_synth.synthesis.options import SynthOptions


def _records(shards: Path) -> list[tuple[dict, dict[str, bytes]]]:
    return [(json.loads(m["json"]), m) for p in shard_paths(shards) for _, m in iter_tar_samples(p)]


@pytest.fixture(scope="module")
def processed_shards(tmp_path_factory, photo) -> Path:
    """mixed (one or two edits each) + authentic samples through the same --post jpeg chain, every template, both languages."""
    root = tmp_path_factory.mktemp("world")
    photos = root / "photos"
    photos.mkdir()
    rng = np.random.default_rng(3)
    for i in range(4):  # four distinct photos (different crops and tints of one bundled photo)
        crop = photo[i * 6 : 120 + i * 6, i * 10 : 180 + i * 10].astype(np.int16) + rng.integers(-30, 30, 3)
        Image.fromarray(np.clip(crop, 0, 255).astype(np.uint8)).save(photos / f"p{i}.png")
    dirs = []
    for method in ("mixed", "authentic"):
        synthesize([photos], root / method, SynthOptions(method=method, count=6, seed=1, post="jpeg:70-95", ops=(1, 2)))
        dirs.append(root / method)
    build_shards(ShardOptions(out=root / "shards", samples=dirs, splits=(1.0, 0.0, 0.0), near_duplicates=-1,
                              templates={"explain": 1, "pair": 1, "json": 0.5, "conclusion": 0.5}))
    return root / "shards"


def test_pair_and_every_template_for_both_labels(processed_shards):
    by_label = {"real": Counter(), "fake": Counter()}
    for record, _ in _records(processed_shards):
        by_label[record["label"]][record["template"]] += 1
    for label, counts in by_label.items():
        assert set(counts) == set(conv.TEMPLATES), (label, counts)
    real_pairs = [r for r, _ in _records(processed_shards) if r["label"] == "real" and r["template"] == "pair"]
    for record in real_pairs:
        answer = record["messages"][1]["content"]
        assert "Neither image is forged" in answer or "两幅图像都不是伪造的" in answer
        assert answer.startswith("<cls>") and answer.endswith(conv.VERDICT[record["lang"]]["real"])
        assert conv.check_answer("pair", answer, "before-verdict", "before-answer") == []


def test_no_answer_sentence_belongs_to_one_label(processed_shards):
    """Every sentence outside the label's own slots (verdict, region, evidence, difficulty) is said for both."""
    said = {"real": set(), "fake": set()}
    sides = {"left": "SIDE", "right": "SIDE", "左侧": "SIDE", "右侧": "SIDE"}  # which half: drawn per sample
    for record, _ in _records(processed_shards):
        for sentence in context_sentences(record["messages"][1]["content"]):
            for word, placeholder in sides.items():
                sentence = sentence.replace(word, placeholder)
            said[record["label"]].add(sentence)
    assert said["real"] and said["fake"]  # the processing sentences are there...
    assert said["real"] == said["fake"]   # ...and the same for both labels
    assert any("JPEG" in s for s in said["real"])


def test_a_grey_photo_gives_grey_forgeries(tmp_path, photo, donor_photo):
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(photo).convert("L").save(photos / "grey.png")
    Image.fromarray(donor_photo).save(photos / "colour.png")  # the splice donor has colour
    for method in ("splice", "noise", "mixed"):
        synthesize([photos], tmp_path / method, SynthOptions(method=method, count=4, seed=2))
        for line in (tmp_path / method / "index.jsonl").read_text().splitlines():
            entry = json.loads(line)
            log = json.loads((tmp_path / method / entry["log"]).read_text())
            image = np.asarray(Image.open(tmp_path / method / entry["image"]).convert("RGB"))
            assert is_grey(image) == log["source"]["grey"], (method, log["source"]["path"])


def test_build_shards_reads_16_bit_and_rgba_photos_as_synthesis_does(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    ramp = (np.linspace(0, 65535, 96 * 128).reshape(96, 128)).astype(np.uint16)
    Image.fromarray(ramp).save(photos / "deep.png")  # mode I;16
    rgba = np.zeros((96, 128, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, np.linspace(0, 255, 128).astype(np.uint8)[None, :]
    Image.fromarray(rgba, "RGBA").save(photos / "alpha.png")
    out = tmp_path / "shards"
    build_shards(ShardOptions(out=out, real=[photos], splits=(1.0, 0.0, 0.0), min_pixels=96 * 128, max_pixels=96 * 128,
                              templates={"json": 1}))
    got = {Path(r["source"]["path"]).name: np.asarray(Image.open(__import__("io").BytesIO(m["png"])).convert("RGB"))
           for r, m in _records(out)}
    for name in ("deep.png", "alpha.png"):
        want = load_image(photos / name).rgb
        frame, _ = resize_to_frame(want, np.zeros(want.shape[:2], np.uint8), 96 * 128, 96 * 128)
        assert np.array_equal(got[name], frame), name
    assert abs(got["deep.png"].mean() - 127.5) < 2  # a 16-bit ramp is not saturated
    assert got["alpha.png"][:, 0].min() > 240         # the transparent edge is composited on white


def test_near_duplicates_share_a_split(tmp_path):
    from skimage import data

    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(data.stereo_motorcycle()[0]).save(photos / "motorcycle_left.png")
    Image.fromarray(data.stereo_motorcycle()[1]).save(photos / "motorcycle_right.png")
    for name in ("astronaut", "coffee", "chelsea", "rocket", "camera", "coins", "moon", "page", "text", "brick"):
        img = getattr(data, name)()
        Image.fromarray(img).save(photos / f"{name}.png")
    splits_of = {}
    for distance in (-1, 10):
        out = tmp_path / f"shards{distance}"
        report = build_shards(ShardOptions(out=out, real=[photos], splits=(0.4, 0.3, 0.3), near_duplicates=distance,
                                           templates={"json": 1}))
        splits_of[distance] = {Path(r["source"]["path"]).name: r["split"] for r, _ in _records(out)}
        groups = report.manifest["near_duplicates"]["groups"]
        assert report.manifest["near_duplicates"]["max_distance"] == distance
        assert len(groups) == (0 if distance < 0 else 1)
    together = splits_of[10]
    assert together["motorcycle_left.png"] == together["motorcycle_right.png"]
    assert len(set(together.values())) == 3  # the others still fill every split


def test_near_duplicate_groups_link_transitively_and_only_close_hashes():
    hashes = {"a": 0b0000, "b": 0b0011, "c": 0b1111, "d": (1 << 63) | 0xFFFF}
    groups = near_duplicate_groups(hashes, 2)
    assert groups["a"] == groups["b"] == groups["c"] == "a" and groups["d"] == "d"
    assert near_duplicate_groups(hashes, -1) == {k: k for k in hashes}


def test_the_measured_difficulty_follows_what_the_detectors_see():
    t = conv.DIFFICULTY_THRESHOLDS
    assert conv.difficulty(0.9, 0.1) == 0
    assert conv.difficulty(0.9, t["hard_area"] / 2) == 2
    assert conv.difficulty(t["hard_separation"] / 2, 0.1) == 2
    assert conv.difficulty((t["hard_separation"] + t["easy_separation"]) / 2, 0.1) == 1


def test_answers_speak_each_language_and_only_what_the_log_shows():
    mask = np.zeros((60, 80), np.uint8)
    mask[10:30, 20:50] = 255
    log = {"ops": [{"op": "copy-move", "angle": 0.0, "scale": 1.1, "flip": True, "blend": "none"},
                   {"op": "jpeg", "scope": "global", "quality": 85}]}
    en = conv.explain_answer("fake", log, mask, 1, "en")
    zh = conv.explain_answer("fake", log, mask, 1, "zh")
    assert "True" not in en and "mirrored" in en and "hard edge" in en and "feathered" not in en
    assert "quality" not in zh and "flip" not in zh and "质量85" in zh and "镜像翻转" in zh
    feathered = conv.explain_answer("fake", {"ops": [dict(log["ops"][0], blend="feather")]}, mask, 1, "en")
    assert "feathered" in feathered and "hard edge" not in feathered
    assert "rotat" not in conv.METHOD_TEXT["resample"]["en"][0]


def test_pair_positions_refer_to_the_samples_own_half():
    half = np.zeros((60, 80), np.uint8)
    half[2:12, 60:78] = 255  # upper right of the right image
    answer = conv.pair_answer("fake", "right", {"ops": [{"op": "blur", "sigma": 2.0}]}, half, "en")
    assert "upper right of the right image" in answer and "bounding box [60, 2, 77, 11]" in answer


def test_audit_of_the_processed_shards_finds_no_shortcut(processed_shards, tmp_path):
    from forgery_synth.dataset.audit import audit

    report = audit(processed_shards, tmp_path / "audit", detectors=False)
    assert report.summary["sentences_one_label"] == []
    rates = report.summary["template_rates"]
    assert rates["real"]["pair"] > 0 and rates["fake"]["pair"] > 0
    shutil.rmtree(tmp_path / "audit")


def test_evidence_comes_from_the_pixels_and_is_said_several_ways():
    from forgery_synth.dataset.evidence import (
        BASIS_VARIANTS,
        measured_evidence,
        noise_ratio,
    )

    rng = np.random.default_rng(0)
    image = np.clip(rng.normal(128, 3, (96, 96, 3)), 0, 255).astype(np.uint8)
    mask = np.zeros((96, 96), np.uint8)
    mask[30:60, 30:60] = 255
    assert 0.8 < noise_ratio(image, mask) < 1.25 and measured_evidence(image, mask, "en") == []  # nothing to cite
    noisy = image.copy()
    noisy[30:60, 30:60] = np.clip(noisy[30:60, 30:60] + rng.normal(0, 20, (30, 30, 3)), 0, 255).astype(np.uint8)
    said = measured_evidence(noisy, mask, "en")
    assert said and "measured noise inside the region" in said[0]
    assert "噪声" in measured_evidence(noisy, mask, "zh")[0]
    log = {"ops": [{"op": "jpeg", "quality": 50, "grid": [3, 5]}]}
    answers = {conv.explain_answer("fake", log, mask, 1, "en", variant=v) for v in range(3)}
    assert len(answers) == 3 and all("shifted by (3, 5) pixels" in a for a in answers)
    for method, langs in BASIS_VARIANTS.items():
        assert langs["en"][0] == conv.METHOD_TEXT[method]["en"][1] and len(set(langs["zh"])) == 3
