"""`forgery audit`: it finds a planted shortcut, stays quiet where there is none, and writes its report."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cli import app
from forgery_synth.dataset.audit import audit, context_sentences, grouped_auc
from forgery_synth.dataset.detectors import (
    ela_map,
    noise_residual_map,
    pixel_auc,
    separation,
)

runner = CliRunner()


def _samples_dir(root: Path, *, wide_fakes: bool, n_groups: int = 12) -> Path:
    """A samples directory: per source photo one authentic and one forged sample (a square mirrored in place).

    With `wide_fakes` every forgery is 40 px wider than its photo: a size shortcut."""
    rng = np.random.default_rng(0)
    for d in ("images", "masks", "logs"):
        (root / d).mkdir(parents=True, exist_ok=True)
    lines = []
    for g in range(n_groups):
        h, w = int(rng.integers(90, 140)), int(rng.integers(90, 140))
        base = np.clip(rng.normal(120, 30, (h, w, 3)), 0, 255).astype(np.uint8)
        sha = hashlib.sha256(base.tobytes()).hexdigest()
        for label in ("real", "fake"):
            img, mask = base.copy(), np.zeros((h, w), np.uint8)
            if label == "fake":
                # the square mirrored: the very same pixel values, rearranged (no trivial statistic moves)
                img[20:50, 20:50] = base[20:50, 20:50][::-1, ::-1]
                mask[20:50, 20:50] = 255
                if wide_fakes:
                    img = np.concatenate([img, img[:, :40]], axis=1)
                    mask = np.concatenate([mask, np.zeros((h, 40), np.uint8)], axis=1)
            sid = f"{label}{g:02d}"
            Image.fromarray(img).save(root / "images" / f"{sid}.png")
            Image.fromarray(mask).save(root / "masks" / f"{sid}.png")
            log = {"id": sid, "label": label, "method": "splice" if label == "fake" else "authentic",
                   "source": {"sha256": sha, "path": f"p{g}.png"}, "ops": []}
            (root / "logs" / f"{sid}.json").write_text(json.dumps(log))
            lines.append(json.dumps({"id": sid, "image": f"images/{sid}.png", "mask": f"masks/{sid}.png",
                                     "log": f"logs/{sid}.json", "label": label, "method": log["method"]}))
    (root / "index.jsonl").write_text("\n".join(lines) + "\n")
    return root


def test_grouped_auc_sees_a_signal_and_chance():
    rng = np.random.default_rng(0)
    y = np.array([0, 1] * 60)
    groups = [str(i // 2) for i in range(120)]
    assert grouped_auc(y[:, None] + rng.normal(0, 0.1, (120, 1)), y, groups) > 0.95
    assert abs(grouped_auc(rng.normal(0, 1, (120, 3)), y, groups) - 0.5) < 0.15
    assert grouped_auc(np.zeros((120, 0)), y, groups) is None


def test_audit_finds_a_size_shortcut_and_the_cli_exits_1(tmp_path):
    source = _samples_dir(tmp_path / "leaky", wide_fakes=True)
    report = audit(source, tmp_path / "a")
    assert report.summary["feature_auc"]["size"] > 0.9
    assert any("'size'" in f for f in report.failures)
    result = runner.invoke(app, ["audit", str(source), "--out", str(tmp_path / "b"), "--no-detectors"])
    assert result.exit_code == 1, result.output
    assert "SHORTCUT" in result.output


def test_audit_passes_when_only_the_forgery_differs(tmp_path):
    source = _samples_dir(tmp_path / "clean", wide_fakes=False)
    report = audit(source, tmp_path / "a")
    assert report.failures == [], report.summary["feature_auc"]
    for name in ("audit.json", "audit.html", "audit.png"):
        assert (tmp_path / "a" / name).stat().st_size > 0
    saved = json.loads((tmp_path / "a" / "audit.json").read_text())
    assert saved["n"] == {"real": 12, "fake": 12} and saved["groups"] == 12
    assert "splice" in saved["detectors"]


def test_audit_refuses_bad_options(tmp_path):
    assert runner.invoke(app, ["audit", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]).exit_code == 2
    source = _samples_dir(tmp_path / "s", wide_fakes=False, n_groups=2)
    assert runner.invoke(app, ["audit", str(source), "--out", str(tmp_path / "o"), "--folds", "1"]).exit_code == 2
    with pytest.raises(ValueError):
        audit(source, tmp_path / "o", threshold=0.3)


def test_context_sentences_skip_the_label_slots():
    answer = ("Forged region: a region, in the centre of the image, bounding box [1, 2, 3, 4]<mask_1>; "
              "forensic basis: noise; processing: the whole image went through global JPEG compression "
              "(quality 71), a trace that marks no region; difficulty: easy; conclusion: fake<cls>")
    assert context_sentences(answer) == [
        "processing: the whole image went through global JPEG compression (quality #), a trace that marks no region"]


def test_detectors_light_up_a_noised_square():
    rng = np.random.default_rng(1)
    image = np.clip(rng.normal(128, 4, (96, 96, 3)), 0, 255).astype(np.uint8)
    image[30:60, 30:60] = np.clip(image[30:60, 30:60] + rng.normal(0, 30, (30, 30, 3)), 0, 255).astype(np.uint8)
    mask = np.zeros((96, 96), np.uint8)
    mask[30:60, 30:60] = 255
    assert pixel_auc(noise_residual_map(image), mask) > 0.9
    assert pixel_auc(ela_map(image), mask) > 0.8
    assert separation(image, mask) > 0.8
    assert separation(image, np.zeros_like(mask)) == 0.0


def test_a_corrupt_sample_is_named_and_the_audit_goes_on(tmp_path):
    source = _samples_dir(tmp_path / "s", wide_fakes=False)
    (source / "images" / "fake03.png").write_bytes(b"\x89PNG broken")
    (source / "logs" / "real05.json").unlink()
    result = runner.invoke(app, ["audit", str(source), "--out", str(tmp_path / "a"), "--no-detectors"])
    assert result.exit_code in (0, 1), result.output
    saved = json.loads((tmp_path / "a" / "audit.json").read_text())
    where = " ".join(b["where"] for b in saved["unreadable"])
    assert len(saved["unreadable"]) == 2 and "fake03" in where and "index.jsonl" in where
    assert saved["n"] == {"real": 11, "fake": 11}
    assert "unreadable, left out" in result.output and "2 unreadable" in (tmp_path / "a" / "audit.html").read_text()
