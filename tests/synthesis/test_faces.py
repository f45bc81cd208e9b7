"""The offline face detector: faces and pupils on two real portraits, none on photos without a face."""

from __future__ import annotations

import numpy as np

from forgery_synth.synthesis.content import layout_sidecar, source_content
from forgery_synth.synthesis.faces import detect_face, hairline, light_side


def test_finds_the_astronauts_face_and_pupils(face_photo):
    face = detect_face(face_photo)
    assert face is not None
    x, y, w, h = face.box
    assert abs(x - 175) < 20 and abs(y - 70) < 20 and 75 < w < 125  # scikit-image's reference box: row 70, col 175, 93x93
    (lx, ly, _), (rx, ry, _) = face.eyes
    assert x < lx < x + w / 2 < rx < x + w and abs(ly - ry) < 0.1 * w  # both pupils inside, level
    assert 0.3 * w < rx - lx < 0.6 * w


def test_finds_grace_hoppers_face_behind_glasses(face_donor):
    face = detect_face(face_donor)
    assert face is not None
    (lx, ly, _), (rx, ry, _) = face.eyes
    assert lx < rx and abs(ly - ry) < 0.1 * face.box[2]
    assert len(hairline(face_donor, face)) >= 3  # the hat's edge on the forehead
    assert light_side(face_donor, face) in ("left", "right")


def test_no_face_on_photos_without_one(photo, donor_photo):
    assert detect_face(photo) is None  # coffee
    assert detect_face(donor_photo) is None  # a cat's face is not a person's
    grey = np.repeat(np.asarray(photo).mean(-1, keepdims=True).astype(np.uint8), 3, -1)
    assert detect_face(grey) is None


def test_detection_is_a_pure_function_of_the_pixels(face_photo):
    assert detect_face(face_photo.copy()) == detect_face(face_photo)


def test_source_content(tmp_path, face_photo, photo):
    doc = tmp_path / "id.png"
    assert source_content(doc, photo) == "scene"
    assert source_content(tmp_path / "p.png", face_photo) == "portrait"
    layout_sidecar(doc).write_text("{}")
    assert layout_sidecar(doc).name == "id.layout.json"
    assert source_content(doc, face_photo) == "document"  # the sidecar says so, even with a face on it
