"""trainer.model.sam_decoder: tiny SAM, loading checkpoints by their shapes, preprocessing, cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trainer.model.sam_decoder import (
    SAM_SPECS,
    _build_sam,
    build_sam,
    detect_sam_variant,
    prepare_sam_image,
    spec_from_state_dict,
)


@pytest.mark.parametrize("variant", ["vit_b", "vit_l", "vit_h"])
def test_detects_real_variants_from_shapes(variant):
    with torch.device("meta"):
        sam = _build_sam(spec=SAM_SPECS[variant])
    assert detect_sam_variant(sam.state_dict()) == variant


@pytest.mark.parametrize("fmt", ["pth", "safetensors"])
def test_load_checkpoint_by_shapes(tmp_path, fmt):
    sam, spec = build_sam("tiny", seed=3)
    path = tmp_path / f"sam.{fmt}"
    if fmt == "pth":
        torch.save(sam.state_dict(), path)
    else:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in sam.state_dict().items()}, str(path))
    loaded, loaded_spec = build_sam(str(path))
    assert loaded_spec == spec == spec_from_state_dict(sam.state_dict())
    x = torch.randn(1, 3, spec.image_size, spec.image_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(sam.image_encoder(x), loaded.image_encoder(x))


def test_prepare_sam_image_resizes_longest_side_and_pads():
    image = np.full((50, 100, 3), 255, np.uint8)
    x, (h, w) = prepare_sam_image(image, 128)
    assert x.shape == (3, 128, 128) and (h, w) == (64, 128)
    assert torch.all(x[:, 64:, :] == 0)  # padding
    assert torch.allclose(x[0, :64], torch.tensor((255 - 123.675) / 58.395), atol=1e-4)


def test_tiny_sam_is_deterministic_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(1)
    torch.manual_seed(123)
    a, _ = build_sam("tiny", seed=0)
    assert torch.equal(torch.rand(1), expected)
    b, _ = build_sam("tiny", seed=0)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
