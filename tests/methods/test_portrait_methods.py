"""The portrait methods: detection logged, catchlight direction against the light, no face -> reject."""

from __future__ import annotations

import json

import numpy as np
import pytest

from forgery_synth.methods import METHODS, MIXED_WEIGHTS, MethodOptions
from forgery_synth.synthesis.engine import synthesize
from forgery_synth.synthesis.faces import NoFaceError, detect_face
from forgery_synth.synthesis.options import SynthOptions

PORTRAIT = sorted(n for n, m in METHODS.items() if m.subject == "portrait")


def test_the_four_portrait_methods_are_registered_outside_mixed():
    assert PORTRAIT == ["catchlight", "face-swap", "hairline", "skin-retouch"]
    assert not set(PORTRAIT) & set(MIXED_WEIGHTS)


@pytest.mark.parametrize("name", PORTRAIT)
def test_detection_and_place_are_logged(name, face_photo, face_donor):
    method = METHODS[name]
    params = method.get_params(face_photo, np.random.default_rng(0), MethodOptions(), face_donor)
    assert params["face"] == detect_face(face_photo).to_params()
    assert params["place"]["kind"] in {"hairline", "eyes", "face", "skin"}
    json.dumps(params)


@pytest.mark.parametrize("name", PORTRAIT)
def test_no_face_is_refused_with_the_reason(name, photo, face_photo):
    with pytest.raises(NoFaceError, match="no face"):
        METHODS[name].get_params(photo, np.random.default_rng(0), MethodOptions(), face_photo)


def test_face_swap_refuses_a_donor_without_a_face(face_photo, photo):
    with pytest.raises(NoFaceError, match="donor"):
        METHODS["face-swap"].get_params(face_photo, np.random.default_rng(0), MethodOptions(), photo)


def test_catchlight_direction_contradicts_the_measured_light(face_photo, face_donor):
    seen = set()
    for image in (face_photo, face_donor):
        for seed in range(24):
            p = METHODS["catchlight"].get_params(image, np.random.default_rng(seed), MethodOptions(), None)
            seen.add(p["action"])
            assert p["light"] in ("left", "right")
            if p["action"] == "remove":
                assert p["direction"] == "none" and p["existing"]
            else:  # the new catchlight sits on the side away from the light
                assert p["direction"].endswith("right" if p["light"] == "left" else "left")
                assert (p["offset"][0] > 0) == (p["light"] == "left")
    assert seen == {"add", "move", "remove"}


def test_photo_without_a_face_becomes_a_reject_line(tmp_path, photo_dir):
    report = synthesize([photo_dir / "coffee.png"], tmp_path / "out", SynthOptions(method="hairline"))
    assert report.written == 0 and len(report.rejects) == 1 and "no face" in report.rejects[0]["error"]


def test_face_swap_between_the_portraits_and_content_logged(tmp_path, portrait_dir, photo_dir):
    out = tmp_path / "out"
    report = synthesize([portrait_dir], out, SynthOptions(method="face-swap"))
    assert report.written == 2, report.rejects
    for log_path in (out / "logs").glob("*.json"):
        log = json.loads(log_path.read_text())
        assert log["source"]["content"] == "portrait" and log["donor"]["sha256"] != log["source"]["sha256"]
    real = synthesize([photo_dir], tmp_path / "real", SynthOptions(method="authentic"))
    contents = {json.loads(p.read_text())["source"]["content"] for p in (tmp_path / "real" / "logs").glob("*.json")}
    assert real.written == 4 and contents <= {"scene", "portrait"}


def test_mixed_with_portrait_weights_skips_photos_without_a_face(tmp_path, photo_dir):
    out = tmp_path / "out"
    synthesize([photo_dir / "coffee.png", photo_dir / "rocket.jpg"], out,
               SynthOptions(method="mixed", count=3, weights={"hairline": 5.0, "blur": 1.0}))
    methods = {json.loads(p.read_text())["method"] for p in (out / "logs").glob("*.json")}
    assert methods == {"blur"}
