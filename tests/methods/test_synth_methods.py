"""Every forgery method: honest masks, pure apply, exact replay of its parameters."""

from __future__ import annotations

import json

import numpy as np
import pytest

from forgery_synth.methods import METHODS, MethodOptions
from forgery_synth.methods.inpaint_config import InpaintConfig
from forgery_synth.methods.traces import JPEG_QUALITY
from forgery_synth.synthesis.blend import composite
from forgery_synth.synthesis.regions import rasterize


def _forge(name, photo, donor_photo, seed=0, **options):
    method = METHODS[name]
    donor = donor_photo if method.needs_donor else None
    if method.needs_model:  # inpaint: the tiny in-process pipeline (tests/methods/test_inpaint.py has the rest)
        options.setdefault("inpaint", InpaintConfig("tiny", device="cpu", steps=1))
    params = method.get_params(photo, np.random.default_rng(seed), MethodOptions(**options), donor)
    return method, params, method.apply(photo, params, donor)


@pytest.mark.parametrize("name", sorted(METHODS))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_label_honesty(name, seed, method_sources):
    """Every changed pixel lies inside the mask, and the mask is not empty (on a photo, or on a
    rendered document with its layout for the text methods).

    (That most mask pixels changed is enforced by the engine, which redraws weak traces:
    see test_synth_engine.py.)"""
    photo, donor_photo, layout = method_sources(name)
    _, params, forgery = _forge(name, photo, donor_photo, seed, layout=layout)
    assert forgery.image.shape == photo.shape and forgery.image.dtype == np.uint8
    assert forgery.mask.shape == photo.shape[:2] and set(np.unique(forgery.mask)) <= {0, 255}
    inside = forgery.mask > 0
    changed = np.any(forgery.image != photo, axis=-1)
    assert not np.any(changed & ~inside), "a pixel outside the mask changed"
    assert inside.any() and changed.any()
    if name in ("copy-move", "splice", "erase", "noise") or METHODS[name].subject in ("document", "portrait"):
        assert changed[inside].mean() > 0.5, f"only {changed[inside].mean():.2f} of the mask changed"


@pytest.mark.parametrize("name", sorted(METHODS))
def test_apply_is_pure_and_params_replay(name, method_sources):
    photo, donor_photo, layout = method_sources(name)
    method, params, forgery = _forge(name, photo, donor_photo, seed=3, layout=layout)
    logged = json.loads(json.dumps(params))  # what the log stores
    again = method.apply(photo.copy(), logged, donor_photo.copy() if method.needs_donor else None)
    assert np.array_equal(again.image, forgery.image)
    assert np.array_equal(again.mask, forgery.mask)
    assert logged["op"] == name


@pytest.mark.parametrize("blend", ["none", "feather", "poisson"])
@pytest.mark.parametrize("name", ["copy-move", "splice"])
def test_paste_blends(name, blend, photo, donor_photo):
    _, params, forgery = _forge(name, photo, donor_photo, seed=4, blend=blend)
    assert params["blend"] == blend
    changed = np.any(forgery.image != photo, axis=-1)
    assert not np.any(changed & (forgery.mask == 0))


def test_copy_move_target_avoids_source(photo, donor_photo):
    for seed in range(8):
        _, params, forgery = _forge("copy-move", photo, donor_photo, seed)
        source = rasterize(params["region"], photo.shape[:2])
        assert not np.any(source & (forgery.mask > 0))
        assert np.array_equal(forgery.source_mask > 0, source)


def test_copy_move_without_transform_copies_pixels(photo, donor_photo):
    """angle 0, scale 1, no flip, blend none: the target holds the source's exact pixels."""
    method, params, _ = _forge("copy-move", photo, donor_photo, seed=5, region="rect", blend="none")
    params = {**params, "angle": 0.0, "scale": 1.0, "flip": False}
    forgery = method.apply(photo, params, None)
    sx, sy, sw, sh = params["src_box"]
    dx, dy = params["dst_box"][:2]
    assert np.array_equal(forgery.image[dy : dy + sh, dx : dx + sw], photo[sy : sy + sh, sx : sx + sw])


def test_poisson_keeps_content_in_place():
    """cv2.seamlessClone centres the mask's box: our centre must make the placement the identity."""
    rng = np.random.default_rng(0)
    import cv2

    base = np.full((120, 160, 3), 90, np.uint8)
    content = cv2.GaussianBlur(rng.integers(0, 256, (120, 160, 3)).astype(np.uint8), (0, 0), 2)
    for box in [(30, 40, 21, 17), (31, 41, 22, 15), (50, 20, 33, 44)]:
        x, y, w, h = box
        footprint = np.zeros((120, 160), bool)
        footprint[y : y + h, x : x + w] = True
        out = composite(base, content, footprint, "poisson", 2)
        # Poisson blending keeps the content's gradients in the interior.
        grad_out = np.diff(out.astype(int), axis=1)[y + 3 : y + h - 3, x + 3 : x + w - 4]
        grad_src = np.diff(content.astype(int), axis=1)[y + 3 : y + h - 3, x + 3 : x + w - 4]
        shifted = np.diff(content.astype(int), axis=1)[y + 4 : y + h - 2, x + 4 : x + w - 3]
        assert np.abs(grad_out - grad_src).mean() < 0.5 * np.abs(grad_out - shifted).mean()


def test_feather_ramps_inside_the_region(photo):
    footprint = np.zeros(photo.shape[:2], bool)
    footprint[30:90, 40:120] = True
    content = np.zeros_like(photo)
    out = composite(photo, content, footprint, "feather", 6)
    assert np.array_equal(out[~footprint], photo[~footprint])
    assert np.all(out[60, 80] == 0)  # deep inside: all content
    edge = out[30, 80].astype(int)  # on the edge: mostly the base
    assert np.abs(edge - photo[30, 80].astype(int)).max() < np.abs(photo[30, 80].astype(int)).max()


def test_jpeg_trace_grid(photo, donor_photo):
    for seed in range(6):
        _, params, _ = _forge("jpeg", photo, donor_photo, seed)
        assert JPEG_QUALITY[0] <= params["quality"] <= JPEG_QUALITY[1]
        assert all(0 <= g < 8 for g in params["grid"])


def test_splice_needs_donor(photo):
    with pytest.raises(ValueError, match="donor"):
        METHODS["splice"].get_params(photo, np.random.default_rng(0), MethodOptions(), None)


def test_region_option_is_obeyed(photo, donor_photo):
    for kind in ("rect", "ellipse", "polygon", "stroke", "object"):
        _, params, _ = _forge("blur", photo, donor_photo, seed=1, region=kind)
        assert params["region"]["kind"] == kind
