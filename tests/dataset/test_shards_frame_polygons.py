"""Qwen2.5-VL frame rule and mask <-> polygon round trips."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from forgery_synth.dataset.qwen_frame import (
    DEFAULT_MAX_PIXELS,
    DEFAULT_MIN_PIXELS,
    resize_to_frame,
    smart_resize,
)
from forgery_synth.synthesis.polygons import (
    PolygonOptions,
    mask_iou,
    mask_to_polygons,
    polygons_to_mask,
)


def test_smart_resize_equals_transformers_for_many_sizes():
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import (
        smart_resize as hf_smart_resize,
    )

    rng = np.random.default_rng(0)
    sizes = [(int(h), int(w)) for h, w in rng.integers(20, 5000, (400, 2))]
    sizes += [(28, 28), (56, 56), (1, 150), (14, 14), (4032, 3024), (3024, 4032), (42, 42), (70, 98)]
    limits = [(DEFAULT_MIN_PIXELS, DEFAULT_MAX_PIXELS), (56 * 56, 28 * 28 * 256), (256 * 28 * 28, 16384 * 28 * 28)]
    for h, w in sizes:
        for lo, hi in limits:
            try:
                want = hf_smart_resize(h, w, factor=28, min_pixels=lo, max_pixels=hi)
            except ValueError:
                with pytest.raises(ValueError):
                    smart_resize(h, w, min_pixels=lo, max_pixels=hi)
                continue
            assert smart_resize(h, w, min_pixels=lo, max_pixels=hi) == tuple(want), (h, w, lo, hi)


def test_resize_to_frame_keeps_mask_binary_and_sizes_equal(blob_mask):
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (150, 97, 3), dtype=np.uint8)
    mask = blob_mask(150, 97, rng)
    img, msk = resize_to_frame(image, mask)
    assert img.shape[:2] == msk.shape == smart_resize(150, 97)
    assert img.shape[0] % 28 == 0 and img.shape[1] % 28 == 0
    assert set(np.unique(msk).tolist()) <= {0, 255}
    with pytest.raises(ValueError):
        resize_to_frame(image, mask[:-1])


@pytest.mark.parametrize("seed", range(20))
def test_polygons_cover_blob_masks(seed, blob_mask):
    rng = np.random.default_rng(seed)
    h, w = int(rng.integers(96, 300)), int(rng.integers(96, 300))
    mask = blob_mask(h, w, rng, n_blobs=1 + seed % 3)
    polys = mask_to_polygons(mask)
    assert polys and all(len(p) % 2 == 0 and len(p) >= 6 for p in polys)
    assert all(isinstance(v, int) for p in polys for v in p)
    assert mask_iou(mask, polygons_to_mask(polys, h, w)) > 0.9


def test_several_regions_give_several_polygons_largest_first():
    mask = np.zeros((120, 200), np.uint8)
    cv2.circle(mask, (40, 60), 30, 255, -1)
    cv2.rectangle(mask, (120, 20), (140, 40), 255, -1)
    polys = mask_to_polygons(mask)
    assert len(polys) == 2
    areas = [cv2.contourArea(np.array(p, np.int32).reshape(-1, 2)) for p in polys]
    assert areas[0] > areas[1]
    assert mask_iou(mask, polygons_to_mask(polys, 120, 200)) > 0.9


def test_holes_stay_holes():
    mask = np.zeros((160, 160), np.uint8)
    cv2.circle(mask, (80, 80), 60, 255, -1)
    cv2.circle(mask, (80, 80), 25, 0, -1)
    polys = mask_to_polygons(mask)
    assert len(polys) == 1
    back = polygons_to_mask(polys, 160, 160)
    assert back[80, 80] == 0 and back[80, 30] == 255
    assert mask_iou(mask, back) > 0.9


def test_caps_on_regions_and_points():
    mask = np.zeros((200, 200), np.uint8)
    for i in range(5):
        for j in range(5):
            cv2.circle(mask, (20 + 40 * i, 20 + 40 * j), 8 + (i + j) % 4, 255, -1)
    polys = mask_to_polygons(mask, PolygonOptions(max_regions=3, max_points=6))
    assert len(polys) == 3
    assert all(len(p) // 2 <= 6 for p in polys)


def test_empty_and_tiny_masks():
    assert mask_to_polygons(np.zeros((50, 50), np.uint8)) == []
    tiny = np.zeros((50, 50), np.uint8)
    tiny[10, 10] = 255
    polys = mask_to_polygons(tiny)  # the largest region is kept even below min_region_area
    assert len(polys) == 1 and polygons_to_mask(polys, 50, 50)[10, 10] == 255


def test_shard_modules_import_without_torch_or_trainer():
    import subprocess
    import sys

    code = ("import sys; import forgery_synth.dataset.shards, forgery_synth.dataset.check, forgery_synth.dataset.contact_sheet, "
            "forgery_synth.dataset.swift_export, forgery_synth.dataset.conversations, forgery_synth.synthesis.polygons, forgery_synth.dataset.qwen_frame; "
            "bad = [m for m in ('torch', 'transformers', 'trainer') if m in sys.modules]; assert not bad, bad")
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
