"""The shard validator, the contact sheet and the three CLI commands (exit codes 0/1/2)."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from cli import app
from forgery_synth.dataset.check import check_shards
from forgery_synth.dataset.contact_sheet import make_contact_sheet
from forgery_synth.dataset.tar_shards import shard_paths

runner = CliRunner()


@pytest.fixture(scope="module")
def good(tmp_path_factory, build_small):
    root = tmp_path_factory.mktemp("good")
    return build_small(root)[0]


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _rewrite(shard: Path, edit) -> None:
    """Rewrite a shard with ``edit(name, data) -> (name, data) | None`` applied to each member."""
    with tarfile.open(shard) as tf:
        members = [(m.name, tf.extractfile(m).read()) for m in tf]
    shard.chmod(0o644)
    with tarfile.open(shard, "w") as tf:
        for name, data in members:
            edited = edit(name, data)
            if edited is None:
                continue
            ti = tarfile.TarInfo(edited[0])
            ti.size = len(edited[1])
            tf.addfile(ti, io.BytesIO(edited[1]))


def test_clean_shards_pass(good):
    assert check_shards(good) == []


def test_validator_catches_a_corrupted_shard(good, tmp_path):
    bad = _copy(good, tmp_path / "bytes")
    shard = shard_paths(bad)[0]
    data = bytearray(shard.read_bytes())
    data[700:760] = b"\xff" * 60  # inside the first member's data
    shard.write_bytes(bytes(data))
    problems = check_shards(bad)
    assert any("sha256" in p for p in problems)


def test_validator_catches_missing_members_tokens_and_sizes(good, tmp_path):
    bad = _copy(good, tmp_path / "members")
    shard = shard_paths(bad)[0]
    state = {"dropped": False, "tokens": False, "size": False}

    def edit(name, data):
        if name.endswith(".mask.png") and not state["dropped"]:
            state["dropped"] = True
            return None
        if name.endswith(".json") and state["dropped"] and not state["tokens"]:
            record = json.loads(data)
            if record["template"] == "json":
                state["tokens"] = True
                record["messages"][1]["content"] = record["messages"][1]["content"].replace("<mask_5>", "")
                return name, json.dumps(record).encode()
        if name.endswith(".mask.png") and state["tokens"] and not state["size"]:
            state["size"] = True
            buf = io.BytesIO()
            Image.new("L", (28, 28)).save(buf, "PNG")
            return name, buf.getvalue()
        return name, data

    _rewrite(shard, edit)
    problems = "\n".join(check_shards(bad))
    assert "are not image + mask.png + json" in problems
    assert "sha256 or size differs" in problems
    if state["tokens"]:
        assert "<mask_i>" in problems
    if state["size"]:
        assert "does not match image" in problems


def test_validator_catches_manifest_mismatch_and_leftovers(good, tmp_path):
    bad = _copy(good, tmp_path / "manifest")
    manifest = json.loads((bad / "manifest.json").read_text())
    manifest["splits"]["train"]["count"] += 1
    manifest["splits"]["train"]["labels"]["fake"] += 1
    (bad / "manifest.json").write_text(json.dumps(manifest))
    (bad / "train-000099.tar.tmp").write_bytes(b"")
    problems = "\n".join(check_shards(bad))
    assert "manifest says" in problems and "unfinished build" in problems
    shard_paths(bad)[0].unlink()
    assert "missing" in "\n".join(check_shards(bad))


def test_contact_sheet_from_shards_and_samples(good, tmp_path, make_sample_tree):
    out = tmp_path / "sheet.png"
    assert make_contact_sheet([good], out, n=6) == 6
    im = Image.open(out)
    assert im.size[0] > 3 * 256 - 1
    samples, _ = make_sample_tree(tmp_path / "tree", n_sources=2)
    assert make_contact_sheet([samples], tmp_path / "s2.png", n=16) == 5
    assert make_contact_sheet([shard_paths(good)[0]], tmp_path / "s3.png", n=2) == 2


def test_cli_build_check_inspect(tmp_path, make_sample_tree):
    samples, photos = make_sample_tree(tmp_path, n_sources=8)
    out = tmp_path / "shards"
    args = ["build-shards", str(samples), "--real", str(photos), "--out", str(out), "--splits", "0.6,0.2,0.2",
            "--templates", "json:2,explain,conclusion,pair", "--lang", "zh,en:2", "--codec", "jpeg",
            "--jpeg-quality", "80-90", "--shard-size", "4", "--shard-bytes", "64M", "--swift", str(tmp_path / "swift")]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "sample(s) in" in result.output and (out / "manifest.json").is_file()
    manifest = __import__("json").loads((out / "manifest.json").read_text())
    dropped = sum(s["balance"]["available"]["fake"] - s["balance"]["kept"]["fake"] for s in manifest["splits"].values())
    assert dropped > 0 and f"dropped {dropped} fake" in result.output  # balancing is said, not hidden
    assert (tmp_path / "swift" / "train.jsonl").is_file()
    result = runner.invoke(app, ["check-shards", str(out)])
    assert result.exit_code == 0 and "OK" in result.output
    result = runner.invoke(app, ["inspect", str(out), "--out", str(tmp_path / "sheet.png"), "--n", "4"])
    assert result.exit_code == 0 and (tmp_path / "sheet.png").is_file()
    # an existing output without --resume, and bad options: exit 2 with a message
    assert runner.invoke(app, args).exit_code == 2
    for extra in (["--splits", "0.5,0.5,0.5"], ["--codec", "gif"], ["--templates", "json:x"], ["--lang", "de"],
                  ["--jpeg-quality", "high"], ["--real-ratio", "2"], ["--shard-bytes", "lots"]):
        result = runner.invoke(app, ["build-shards", str(samples), "--out", str(tmp_path / "o2"), *extra])
        assert result.exit_code == 2, (extra, result.output)
        assert "Error:" in result.output
    assert runner.invoke(app, ["build-shards", str(photos), "--out", str(tmp_path / "o3")]).exit_code == 2
    # a corrupted shard: check-shards exits 1 and lists the problem
    shard = shard_paths(out)[0]
    shard.chmod(0o644)
    shard.write_bytes(shard.read_bytes()[:-3000])
    result = runner.invoke(app, ["check-shards", str(out)])
    assert result.exit_code == 1 and "problem(s)" in result.output
    assert runner.invoke(app, ["check-shards", str(tmp_path / "nowhere")]).exit_code == 2
    assert runner.invoke(app, ["inspect", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x.png")]).exit_code == 2


def test_cli_nothing_produced_exits_1(tmp_path, make_sample_tree):
    samples, _ = make_sample_tree(tmp_path, n_sources=2)
    for line in (samples / "index.jsonl").read_text().splitlines():
        (samples / json.loads(line)["image"]).unlink()
    result = runner.invoke(app, ["build-shards", str(samples), "--out", str(tmp_path / "o"), "--real-ratio", "0"])
    assert result.exit_code == 1, result.output
    assert len((tmp_path / "o" / "rejects.jsonl").read_text().splitlines()) == 4  # the real one is dropped by --real-ratio 0
