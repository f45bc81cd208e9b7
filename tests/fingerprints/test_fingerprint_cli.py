"""`forgery fingerprint`: exit codes 0 / 1 / 2, skipped and refused photos named on stderr."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from cli import app


def _run(*args):
    return CliRunner().invoke(app, ["fingerprint", *map(str, args)])


def test_writes_fingerprints_and_names_what_it_skipped(tmp_path, camera_kit):
    camera_kit.write(tmp_path / "in", "Acme Alpha", range(4))
    camera_kit.write(tmp_path / "in", "Bolt B2", range(2))
    camera_kit.write(tmp_path / "in", "Anon X", [9], exif=False)
    result = _run(tmp_path / "in", "--out", tmp_path / "out", "--min-photos", 3)
    assert result.exit_code == 0, result.output
    assert "refused camera Bolt B2: 2 photo(s) of 192x160, fewer than --min-photos 3" in result.output
    assert "Anon_X_192x160_9.png: no EXIF Make and Model" in result.output
    assert (tmp_path / "out" / "acme_alpha.safetensors").is_file()
    index = json.loads((tmp_path / "out" / "cameras.json").read_text())
    assert list(index["cameras"]) == ["Acme Alpha"] and "Bolt B2" in index["refused"]


def test_exit_1_when_no_camera_has_enough_photos(tmp_path, camera_kit):
    camera_kit.write(tmp_path / "in", "Acme Alpha", range(2))
    result = _run(tmp_path / "in", "--out", tmp_path / "out")
    assert result.exit_code == 1, result.output
    assert "fewer than --min-photos 10" in result.output
    assert json.loads((tmp_path / "out" / "cameras.json").read_text())["cameras"] == {}


def test_exit_2_on_bad_options(tmp_path, camera_kit):
    camera_kit.write(tmp_path / "in", "Acme Alpha", range(2))
    assert _run(tmp_path / "missing", "--out", tmp_path / "out").exit_code == 2
    assert _run(tmp_path / "in", "--out", tmp_path / "out", "--min-photos", 1).exit_code == 2
    (tmp_path / "afile").write_text("x")
    result = _run(tmp_path / "in", "--out", tmp_path / "afile")
    assert result.exit_code == 2 and "is a file" in result.output
    (tmp_path / "empty").mkdir()
    assert _run(tmp_path / "empty", "--out", tmp_path / "out").exit_code == 2
