"""Camera fingerprints on synthetic cameras with a known pattern K (conftest `camera_kit`): the
estimate finds K, a photo matches its own camera only, a splice from another camera reads low,
the files and their metadata, and the bank that maps a fingerprint onto a sample's image."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image, ImageOps
from safetensors import safe_open

from forgery_synth.fingerprints.bank import FingerprintBank, log_camera
from forgery_synth.fingerprints.build import FingerprintOptionError, build_fingerprints
from forgery_synth.fingerprints.prnu import (
    correlation,
    correlation_map,
    estimate_fingerprint,
    fingerprint_correlation,
    orient,
)

A, B = "Acme Alpha 1", "Bolt B2"


@pytest.fixture(scope="module")
def prints(tmp_path_factory, camera_kit):
    """Fingerprints of cameras A and B, each from 8 photos, written by build_fingerprints."""
    root = tmp_path_factory.mktemp("fp")
    camera_kit.write(root / "photos", A, range(8))
    camera_kit.write(root / "photos", B, range(10, 18))
    report = build_fingerprints([root / "photos"], root / "out", min_photos=6)
    bank = FingerprintBank(root / "out")
    return root / "out", report, bank


def test_estimated_fingerprint_correlates_with_the_true_pattern(prints, camera_kit):
    _, report, bank = prints
    assert set(report.cameras) == {A, B} and not report.refused and not report.skipped
    ka, kb = bank.fingerprint(A), bank.fingerprint(B)
    assert correlation(ka, camera_kit.pattern(A)) > 0.6
    assert correlation(kb, camera_kit.pattern(B)) > 0.6
    assert abs(correlation(ka, camera_kit.pattern(B))) < 0.05


def test_a_new_photo_matches_its_own_camera_and_not_another(prints, camera_kit):
    _, _, bank = prints
    photo = camera_kit.photo(A, 40)  # a scene neither fingerprint saw
    assert fingerprint_correlation(photo, bank.fingerprint(A)) > 0.3
    assert abs(fingerprint_correlation(photo, bank.fingerprint(B))) < 0.05


def test_a_splice_from_another_camera_reads_low_inside_and_high_outside(prints, camera_kit):
    _, _, bank = prints
    host, other = camera_kit.photo(A, 41), camera_kit.photo(B, 42)
    spliced = host.copy()
    spliced[40:120, 48:144] = other[40:120, 48:144]
    heat = correlation_map(spliced, bank.fingerprint(A), window=32)
    assert heat.shape == host.shape[:2] and heat.dtype == np.float32
    inside = heat[56:104, 64:128].mean()
    outside = np.concatenate([heat[:24].ravel(), heat[136:].ravel()]).mean()
    assert outside > 0.3 and abs(inside) < 0.1


def test_files_hold_float16_k_and_the_metadata(prints):
    out, report, _ = prints
    index = json.loads((out / "cameras.json").read_text())
    assert index["format"] == "forgery-fingerprints/1" and set(index["cameras"]) == {A, B}
    entry = index["cameras"][A]
    assert entry["file"] == "acme_alpha-1.safetensors" and entry["size"] == [192, 160] and entry["n_photos"] == 8
    with safe_open(str(out / entry["file"]), framework="numpy") as f:
        meta = f.metadata()
        k = f.get_tensor("K")
    assert k.dtype == np.float16 and k.shape == (160, 192)
    assert abs(float(k.astype(np.float32).std()) - 1.0) < 0.01
    assert meta["make"] == "Acme" and meta["model"] == "Alpha 1" and meta["n_photos"] == "8"
    assert json.loads(meta["size"]) == [192, 160] and len(json.loads(meta["sources"])) == 8


def test_estimate_is_the_ml_sum_in_memory(camera_kit):
    photos = [camera_kit.photo(A, i) for i in range(6)]
    k = estimate_fingerprint(photos)
    assert k.shape == (160, 192) and k.dtype == np.float32
    assert correlation(k, camera_kit.pattern(A)) > 0.5


def test_orient_turns_k_as_pillow_turns_the_photo():
    a = (np.arange(12, dtype=np.uint8) * 10).reshape(3, 4)
    for o in range(1, 9):
        im = Image.fromarray(a)
        exif = im.getexif()
        exif[0x0112] = o
        im.info["exif"] = exif.tobytes()
        assert np.array_equal(np.asarray(ImageOps.exif_transpose(im)), orient(a, o)), o


def test_bank_maps_k_onto_a_sample_image_and_counts_misses(prints):
    _, _, bank = prints
    log = {"source": {"camera": A, "size": [192, 160], "exif": {"Orientation": 1}}}
    assert bank.for_log(log, (160, 192)).shape == (160, 192)
    assert bank.for_log(log, (80, 96)).shape == (80, 96)  # the shard's Qwen frame: resized
    turned = {"source": {"camera": A, "size": [160, 192], "exif": {"Orientation": 6}}}
    assert np.array_equal(bank.for_log(turned, (192, 160)), np.rot90(bank.fingerprint(A), -1))
    assert bank.for_log({"source": {"camera": "", "size": [192, 160]}}, (160, 192)) is None
    assert bank.for_log({"source": {"camera": "Other X", "size": [192, 160]}}, (160, 192)) is None
    assert bank.for_log({"source": {"camera": A, "size": [100, 100]}}, (100, 100)) is None
    assert {"unknown camera", "no fingerprint for Other X"} <= set(bank.misses)
    assert log_camera({"source": {"exif": {"Make": "Acme", "Model": "Alpha 1"}}}) == A  # older logs


def test_bank_refuses_a_file_name_that_is_a_path(tmp_path):
    (tmp_path / "cameras.json").write_text(json.dumps(
        {"format": "forgery-fingerprints/1", "cameras": {A: {"file": "../../etc/x.safetensors"}}}))
    with pytest.raises(ValueError, match="plain"):
        FingerprintBank(tmp_path)


def test_unknown_cameras_other_sizes_and_too_few_photos_are_reported(tmp_path, camera_kit):
    camera_kit.write(tmp_path / "in", A, range(5))
    camera_kit.write(tmp_path / "in", A, [20], size_hw=(128, 128))  # another size: skipped
    camera_kit.write(tmp_path / "in", B, range(2))  # too few: refused
    camera_kit.write(tmp_path / "in", "Anon X", [30], exif=False)  # no EXIF: skipped
    report = build_fingerprints([tmp_path / "in"], tmp_path / "out", min_photos=4)
    assert set(report.cameras) == {A} and report.cameras[A]["n_photos"] == 5
    assert "fewer than --min-photos 4" in report.refused[B]
    errors = {e["path"].rsplit("/", 1)[-1]: e["error"] for e in report.skipped}
    assert "camera unknown" in errors["Anon_X_192x160_30.png"]
    assert "most common size 192x160" in errors["Acme_Alpha_1_128x128_20.png"]
    with pytest.raises(FingerprintOptionError, match="min-photos"):
        build_fingerprints([tmp_path / "in"], tmp_path / "out", min_photos=1)
