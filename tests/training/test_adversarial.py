"""FGSM/PGD perturb the image once: both temporal copies of a Qwen2-VL patch carry the same change,
the perturbed pixel_values decode to an RGB image within ε of the clean one and in [0, 1], and in
training the perturbed pixels are what the loss is computed on."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import trainer.training.loop as loop
from trainer.training.adversarial import (
    AdversarialConfig,
    decode_pixel_values,
    patch_view,
    perturb_pixels,
)
from trainer.training.loop import run_training

EPS = 4 / 255


@pytest.fixture(scope="module")
def clean(tiny_processor, photo) -> dict:
    """The processor's pixel_values of two real images: a 84 x 112 crop of the photo (already in the
    processor's frame, so not resized) with a white and a black square (saturated pixels), and the
    whole photo (resized to the frame)."""
    crop = photo[:84, :112].copy()
    crop[:28, :28] = 255
    crop[28:56, :28] = 0
    ip = tiny_processor().image_processor
    out = ip(images=[crop, photo], return_tensors="pt")
    stats = dict(image_mean=tuple(ip.image_mean), image_std=tuple(ip.image_std))
    return {"pixel_values": out["pixel_values"], "grid": out["image_grid_thw"], "crop": crop, "stats": stats,
            "merge_size": ip.merge_size}


def _attack(clean: dict, method: str) -> torch.Tensor:
    """FGSM/PGD against a fixed linear loss whose weights differ between the two temporal copies."""
    pv = clean["pixel_values"]
    w = torch.randn(pv.shape, generator=torch.Generator().manual_seed(0))
    cfg = AdversarialConfig(share=1.0, method=method, eps=EPS, alpha=1 / 255, steps=4)
    gen = torch.Generator().manual_seed(1)
    return perturb_pixels(pv, lambda x: (x * w).sum(), cfg, generator=gen, **clean["stats"])


def _decode(clean: dict, pixel_values: torch.Tensor) -> list[np.ndarray]:
    return decode_pixel_values(pixel_values, clean["grid"], merge_size=clean["merge_size"], **clean["stats"])


@pytest.mark.parametrize("method", ["fgsm", "pgd"])
def test_both_temporal_copies_of_every_patch_get_the_same_change(clean, method):
    before = patch_view(clean["pixel_values"])
    assert torch.equal(before[:, :, 0], before[:, :, 1])  # a still image: the processor repeats it
    adv = patch_view(_attack(clean, method))
    assert not torch.equal(adv, before)
    assert torch.equal(adv[:, :, 0], adv[:, :, 1])


def test_rows_that_are_not_one_still_image_are_refused(clean):
    video = patch_view(clean["pixel_values"].clone())
    video[:, :, 1] += 0.1  # the two temporal copies differ
    cfg = AdversarialConfig(share=1.0, method="fgsm")
    with pytest.raises(ValueError, match="temporal copies"):
        perturb_pixels(video.reshape(clean["pixel_values"].shape), lambda x: x.sum(), cfg, **clean["stats"])
    with pytest.raises(ValueError, match="3 channels x 2"):
        perturb_pixels(clean["pixel_values"][:, :1000], lambda x: x.sum(), cfg, **clean["stats"])


def test_decode_inverts_the_processor_layout(clean):
    crop, whole = _decode(clean, clean["pixel_values"])
    assert crop.shape == clean["crop"].shape  # not resized: decoding must give the crop back
    assert np.abs(crop * 255 - clean["crop"]).max() < 1e-3
    assert whole.shape == (84, 112, 3) and whole.min() >= -1e-6 and whole.max() <= 1 + 1e-6


@pytest.mark.parametrize("method", ["fgsm", "pgd"])
def test_perturbed_image_is_within_eps_in_rgb_and_in_range(clean, method):
    adv = _attack(clean, method)
    for a, c in zip(_decode(clean, adv), _decode(clean, clean["pixel_values"])):
        change = a - c
        assert np.abs(change).max() <= EPS + 1e-6
        assert a.min() >= -1e-6 and a.max() <= 1 + 1e-6
        inside = (c > EPS + 1e-6) & (c < 1 - EPS - 1e-6)  # pixels the [0, 1] clamp cannot bind
        if method == "fgsm":  # one step of ε along the gradient's sign: every such pixel moves by ε
            np.testing.assert_allclose(np.abs(change[inside]), EPS, atol=1e-5)
        else:
            assert np.abs(change[inside]).max() > EPS / 2


@pytest.fixture(scope="module")
def data(tmp_path_factory, build_tiny_shards):
    return build_tiny_shards(tmp_path_factory.mktemp("adversarial") / "data")


@pytest.mark.slow
def test_training_loss_is_computed_on_the_perturbed_pixels(data, tmp_path, monkeypatch, quick_config, run_metrics):
    """Every micro-batch adversarial: the training forward (the one with the InfoNCE queue) gets the
    attack's output, which differs from the clean pixels and has a higher loss."""
    attacks, forwards = [], []
    real_perturb, real_loss = loop.perturb_pixels, loop.compute_loss

    def perturb(pixel_values, loss_fn, cfg, **kw):
        out = real_perturb(pixel_values, loss_fn, cfg, **kw)
        attacks.append((pixel_values.clone(), out))
        return out

    def compute_loss(model, batch, weights, queue):
        if queue is not None:  # the training forward; the attack's forwards have no queue
            clean_pixels = attacks[-1][0]
            with torch.no_grad():
                clean_loss = real_loss(model, {**batch, "pixel_values": clean_pixels}, weights, None).total
                adv_loss = real_loss(model, batch, weights, None).total
            forwards.append((batch["pixel_values"].clone(), float(clean_loss), float(adv_loss)))
        return real_loss(model, batch, weights, queue)

    monkeypatch.setattr(loop, "perturb_pixels", perturb)
    monkeypatch.setattr(loop, "compute_loss", compute_loss)
    run = tmp_path / "run"
    run_training(quick_config(data, run, max_steps=1, grad_accum=2, adv_share=1.0, adv_method="fgsm",
                              adv_eps=EPS), log=lambda s: None)
    assert [m["adversarial"] for m in run_metrics(run)] == [2]
    assert len(attacks) == len(forwards) == 2
    for (clean_pixels, adv_pixels), (trained_on, clean_loss, adv_loss) in zip(attacks, forwards):
        assert torch.equal(trained_on, adv_pixels) and not torch.equal(trained_on, clean_pixels)
        assert adv_loss > clean_loss
