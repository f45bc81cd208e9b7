"""`forgery synth`, `replay` and `sample-photos` through Typer's CliRunner, exit codes included."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from cli import app

runner = CliRunner()


def test_synth_end_to_end(tmp_path, photo_dir):
    (photo_dir / "broken.jpg").write_bytes(b"\xff\xd8 nope")
    out = tmp_path / "out"
    result = runner.invoke(app, ["synth", str(photo_dir), "--out", str(out), "--method", "mixed", "--count", "2",
                                 "--post", "jpeg:85-95", "--exif", "strip", "--area", "0.03-0.1"])
    assert result.exit_code == 0, result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("8 sample(s) written from 5 input(s), 1 input(s) rejected") and last.endswith(f"samples in {out}")
    assert len((out / "index.jsonl").read_text().splitlines()) == 8
    reject = json.loads((out / "rejects.jsonl").read_text())
    assert reject["path"].endswith("broken.jpg") and reject["error"]
    again = runner.invoke(app, ["synth", str(photo_dir), "--out", str(out), "--method", "mixed", "--count", "2",
                                "--post", "jpeg:85-95", "--exif", "strip", "--area", "0.03-0.1"])
    assert again.exit_code == 0 and "0 sample(s) written, 8 already present" in again.output
    png = next(json.loads(line) for line in (out / "index.jsonl").read_text().splitlines())
    log = json.loads((out / png["log"]).read_text())
    ext = png["image"].rsplit(".", 1)[1]
    wrong = "x.png" if ext == "jpg" else "x.jpg"
    refused = runner.invoke(app, ["replay", str(out / png["log"]), "--source", log["source"]["path"],
                                  *(["--donor", log["donor"]["path"]] if "donor" in log else []),
                                  "--out", str(tmp_path / wrong)])
    assert refused.exit_code == 2 and f"x.{ext}" in refused.output and not (tmp_path / wrong).exists()


def test_nothing_produced_exits_1(tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "a.png").write_text("not an image")
    result = runner.invoke(app, ["synth", str(folder), "--out", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert "0 sample(s) written from 1 input(s), 1 input(s) rejected" in result.output


@pytest.mark.parametrize("args, message", [
    (["--method", "warp"], "--method"),
    (["--area", "0.5-0.1"], "--area"),
    (["--area", "big"], "--area"),
    (["--post", "sharpen:1-2"], "unknown step"),
    (["--post", "jpeg:101-120"], "--post"),
    (["--part", "3/2"], "--part"),
    (["--region", "hexagon"], "--region"),
    (["--blend", "multiply"], "--blend"),
    (["--exif", "fake"], "--exif"),
    (["--weights", "copy-move=oops"], "--weights"),
    (["--count", "0"], "--count"),
])
def test_bad_options_exit_2(tmp_path, photo_dir, args, message):
    out = tmp_path / "out"
    result = runner.invoke(app, ["synth", str(photo_dir), "--out", str(out), *args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not out.exists()


def test_missing_input_is_no_image_found_exit_1(tmp_path):
    """A path that does not exist is the same outcome as an empty folder: nothing found, nothing made."""
    result = runner.invoke(app, ["synth", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")])
    assert result.exit_code == 1 and "input not found" in result.output and "no images found" in result.output
    assert not (tmp_path / "out").exists()


def test_empty_folder_says_no_images_found_and_leaves_no_skeleton(tmp_path):
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    result = runner.invoke(app, ["synth", str(empty), "--out", str(out)])
    assert result.exit_code == 1, result.output
    assert f"no images found under {empty}" in result.output
    assert not out.exists()


def test_replay_command_reproduces_bytes(tmp_path, photo_dir):
    out = tmp_path / "out"
    assert runner.invoke(app, ["synth", str(photo_dir), "--out", str(out), "--method", "splice"]).exit_code == 0
    entry = json.loads((out / "index.jsonl").read_text().splitlines()[0])
    log = json.loads((out / entry["log"]).read_text())
    target = tmp_path / "replayed" / "x.png"
    result = runner.invoke(app, ["replay", str(out / entry["log"]), "--source", log["source"]["path"],
                                 "--donor", log["donor"]["path"], "--out", str(target)])
    assert result.exit_code == 0, result.output
    assert target.read_bytes() == (out / entry["image"]).read_bytes()
    assert (tmp_path / "replayed" / "x.mask.png").read_bytes() == (out / entry["mask"]).read_bytes()
    wrong = runner.invoke(app, ["replay", str(out / entry["log"]), "--source", log["donor"]["path"],
                                "--donor", log["donor"]["path"], "--out", str(target)])
    assert wrong.exit_code == 2 and "--source" in wrong.output and log["source"]["path"] in wrong.output
    no_donor = runner.invoke(app, ["replay", str(out / entry["log"]), "--source", log["source"]["path"],
                                   "--out", str(target)])
    assert no_donor.exit_code == 2 and "--donor" in no_donor.output and log["donor"]["path"] in no_donor.output


def test_sample_photos(tmp_path):
    result = runner.invoke(app, ["sample-photos", str(tmp_path / "photos")])
    assert result.exit_code == 0
    assert len(list((tmp_path / "photos").iterdir())) >= 8


def test_help_and_forgery_synth_import_no_heavy_modules():
    """`forgery synth --help` and every forgery_synth module stay free of torch and the trainer."""
    code = ("import sys, runpy, pkgutil, importlib, forgery_synth\n"
            "for m in pkgutil.walk_packages(forgery_synth.__path__, 'forgery_synth.'):\n"
            "    importlib.import_module(m.name)\n"
            "sys.argv=['forgery','synth','--help']\n"
            "try:\n    runpy.run_module('cli', run_name='__main__')\nexcept SystemExit:\n    pass\n"
            "bad=[m for m in ('torch','transformers','diffusers','trainer') if m in sys.modules]\n"
            "assert not bad, bad")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_config_file_with_command_line_overrides(tmp_path, photo_dir):
    config = tmp_path / "synth.yaml"
    config.write_text("method: splice\ncount: 2\narea: [0.03, 0.08]\npost: jpeg:80-90\nexif: strip\n")
    out = tmp_path / "out"
    result = runner.invoke(app, ["synth", str(photo_dir), "--out", str(out), "--config", str(config), "--count", "1"])
    assert result.exit_code == 0, result.output
    logs = [json.loads(p.read_text()) for p in (out / "logs").glob("*.json")]
    assert len(logs) == 4  # --count 1 on the command line beats count: 2 in the file
    for log in logs:
        assert log["method"] == "splice" and log["output"]["exif"]["mode"] == "strip"
        assert log["ops"][-1]["op"] == "jpeg" and 80 <= log["ops"][-1]["quality"] <= 90
    config.write_text("colour: red\n")
    bad = runner.invoke(app, ["synth", str(photo_dir), "--out", str(tmp_path / "o2"), "--config", str(config)])
    assert bad.exit_code == 2 and "unknown option 'colour'" in bad.output
