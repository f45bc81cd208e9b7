"""`build-shards --split-by camera`: whole cameras go to one split (real and fake samples alike),
photos of no known camera are split by source, the manifest records it; the log's source.camera."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import app
from forgery_synth.dataset.shard_options import OptionError, ShardOptions
from forgery_synth.dataset.shards import build_shards
from forgery_synth.dataset.splits import assign_by_camera
from forgery_synth.dataset.tar_shards import iter_tar_samples, sample_log, shard_paths
from forgery_synth.synthesis.engine import synthesize
from forgery_synth.synthesis.options import SynthOptions

CAMERAS = ("Acme A1", "Bolt B2", "Cyan C3", "Dune D4", "Echo E5")


def _records(shards: Path) -> list[dict]:
    return [json.loads(m["json"]) for p in shard_paths(shards) for _, m in iter_tar_samples(p)]


@pytest.fixture(scope="module")
def camera_samples(tmp_path_factory, camera_kit) -> Path:
    """Real and fake samples of five synthetic cameras (two photos each) and two photos without EXIF."""
    root = tmp_path_factory.mktemp("cams")
    for n, camera in enumerate(CAMERAS):
        camera_kit.write(root / "photos", camera, [2 * n, 2 * n + 1], size_hw=(96, 112))
    camera_kit.write(root / "photos", "Anon X", [20, 21], size_hw=(96, 112), exif=False)
    for method in ("noise", "authentic"):
        report = synthesize([root / "photos"], root / method, SynthOptions(method=method, seed=1))
        assert report.written == 12, report.rejects
    return root


def test_the_log_names_the_camera_for_real_and_fake(camera_samples):
    cams = defaultdict(set)
    for path in [*(camera_samples / "noise" / "logs").glob("*.json"),
                 *(camera_samples / "authentic" / "logs").glob("*.json")]:
        log = json.loads(path.read_text())
        cams[log["source"]["camera"]].add(log["label"])
    assert set(cams) == set(CAMERAS) | {""}
    assert all(labels == {"real", "fake"} for labels in cams.values())


def test_cameras_are_disjoint_across_splits(camera_samples):
    out = camera_samples / "shards"
    report = build_shards(ShardOptions(out=out, samples=[camera_samples / "noise", camera_samples / "authentic"], splits=(0.6, 0.2, 0.2),
                                       split_by="camera", near_duplicates=-1, templates={"json": 1}))
    split_of_camera = defaultdict(set)
    for rec in _records(out):
        split_of_camera[sample_log(rec)["source"]["camera"]].add(rec["split"])
    known = {c: s for c, s in split_of_camera.items() if c}
    assert set(known) == set(CAMERAS) and all(len(s) == 1 for s in known.values())
    assert len({next(iter(s)) for s in known.values()}) == 3  # 5 cameras at 0.6/0.2/0.2: 3/1/1
    record = report.manifest["split_by"]
    assert record["by"] == "camera" and report.manifest["options"]["split_by"] == "camera"
    assert sorted(c for cams in record["cameras"].values() for c in cams) == sorted(CAMERAS)
    assert sum(record["unknown_camera_sources"].values()) == 2  # the two EXIF-less photos, by source


def test_split_by_source_is_the_default_and_records_it(camera_samples):
    report = build_shards(ShardOptions(out=camera_samples / "by_source", samples=[camera_samples / "noise", camera_samples / "authentic"],
                                       near_duplicates=-1, templates={"json": 1}))
    assert report.manifest["split_by"] == {"by": "source"}


def test_a_near_duplicate_without_exif_follows_its_camera():
    group_of = {"a1": "a1", "a2": "a1", "b": "b", "u": "u"}
    split_of, decided = assign_by_camera(group_of, {"a1": "Acme A1", "a2": "", "b": "Bolt B2", "u": ""},
                                         (0.5, 0.5, 0.0))
    assert split_of["a1"] == split_of["a2"] and decided["a2"] == "Acme A1" and decided["u"] == ""


def test_bad_split_by_is_refused(tmp_path, camera_samples):
    with pytest.raises(OptionError, match="--split-by"):
        ShardOptions(out=tmp_path, samples=[camera_samples / "noise", camera_samples / "authentic"], split_by="lens").validate()
    result = CliRunner().invoke(app, ["build-shards", str(camera_samples / "noise"), "--out", str(tmp_path / "o"),
                                      "--split-by", "lens"])
    assert result.exit_code == 2 and "--split-by" in result.output
