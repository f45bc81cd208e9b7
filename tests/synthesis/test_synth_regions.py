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
