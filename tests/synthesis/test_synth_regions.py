"""Region proposals: every kind inside the area range, away from the border, never empty."""

from __future__ import annotations

import numpy as np
import pytest

from forgery_synth.synthesis.regions import (
    REGION_KINDS,
    RegionError,
    border_margin,
    propose_region,
    rasterize,
    rle_decode,
    rle_encode,
)


@pytest.mark.parametrize("kind", REGION_KINDS + ("auto",))
@pytest.mark.parametrize("area", [(0.01, 0.05), (0.1, 0.25)])
def test_region_within_area_and_margin(photo, kind, area):
    h, w = photo.shape[:2]
    m = border_margin((h, w))
    for seed in range(6):
        region = propose_region(kind, photo, np.random.default_rng(seed), area)
        mask = rasterize(region, (h, w))
        fraction = mask.mean()
        assert area[0] <= fraction <= area[1], (region["kind"], fraction)
        assert mask.any()
        assert not mask[:m].any() and not mask[-m:].any() and not mask[:, :m].any() and not mask[:, -m:].any()
        if kind != "auto":
            assert region["kind"] == kind


@pytest.mark.parametrize("kind", REGION_KINDS)
def test_region_is_deterministic_and_json_plain(photo, kind):
    import json

    a = propose_region(kind, photo, np.random.default_rng(7), (0.03, 0.1))
    b = propose_region(kind, photo, np.random.default_rng(7), (0.03, 0.1))
    assert a == b
    assert json.loads(json.dumps(a)) == a  # plain JSON types only
    assert np.array_equal(rasterize(a, photo.shape[:2]), rasterize(json.loads(json.dumps(a)), photo.shape[:2]))


def test_rle_round_trip():
    rng = np.random.default_rng(0)
    for shape in [(1, 1), (5, 7), (31, 17)]:
        for first in (0, 1):
            mask = rng.random(shape) < 0.4
            mask.flat[0] = bool(first)
            assert np.array_equal(rle_decode(rle_encode(mask), shape).astype(bool), mask)


def test_impossible_area_is_a_clear_error(photo):
    with pytest.raises(RegionError, match="rect region with area"):
        propose_region("rect", photo, np.random.default_rng(0), (0.97, 0.99))


def test_unknown_kind(photo):
    with pytest.raises(ValueError, match="unknown region kind"):
        propose_region("hexagon", photo, np.random.default_rng(0))


def test_object_outlines_are_solid_and_spur_free(photo):
    """Objects are one part without holes, and survive an opening of the minimum width unchanged."""
    import cv2

    from forgery_synth.synthesis.regions import propose_region, rasterize

    for seed in range(6):
        region = propose_region("object", photo, np.random.default_rng(seed), (0.03, 0.15))
        mask = rasterize(region, photo.shape[:2]).astype(np.uint8)
        n, _ = cv2.connectedComponents(mask, connectivity=8)
        assert n == 2  # background + one object
        contours, _ = cv2.findContours(mask, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE)
        assert len(contours) == 1  # no hole
        r = max(2, round(0.012 * min(photo.shape[:2])))
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
        opened = cv2.morphologyEx(mask, cv2.MORPH_OPEN, kernel)
        assert (opened != mask).mean() < 0.002  # nothing thinner than the minimum width is left


def test_copy_move_splice_and_erase_take_objects_by_default(photo, donor_photo):
    from forgery_synth.methods import METHODS, MethodOptions

    for name in ("copy-move", "splice", "erase"):
        params = METHODS[name].get_params(photo, np.random.default_rng(4), MethodOptions(), donor_photo)
        assert params["region"]["kind"] in ("object", "polygon"), name  # polygon only when no object fits


def test_erase_never_fills_a_region_wider_than_it_can(photo):
    import cv2

    from forgery_synth.methods import METHODS, MethodOptions
    from forgery_synth.methods.erase import MAX_AREA, max_fill_radius
    from forgery_synth.synthesis.regions import rasterize

    for seed in range(5):
        params = METHODS["erase"].get_params(photo, np.random.default_rng(seed), MethodOptions(area=(0.02, 0.3)), None)
        mask = rasterize(params["region"], photo.shape[:2]).astype(np.uint8)
        assert mask.mean() <= MAX_AREA + 1e-9
        assert cv2.distanceTransform(np.pad(mask, 1), cv2.DIST_L2, 5).max() <= max_fill_radius(photo.shape[:2])
