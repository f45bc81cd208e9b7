"""Expert views (noise, srm, ela) and the expert head: what the views see, how the head joins the logits,
its checkpoint, and the same view in a training forward and in score()."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from forgery_synth.dataset.answer_tokens import place_forensic_tokens
from trainer.model.checkpoint import load_checkpoint, save_checkpoint
from trainer.model.expert_views import EXPERTS, expert_batch, expert_channels, expert_view
from trainer.training.losses import total_loss
from trainer.training.stages import check_stage, trainable_report

VIEWS = [k for k in EXPERTS if k not in ("none", "prnu")]
"""The views of the image alone (prnu also needs the camera's fingerprint: its own tests below)."""
PLAIN = '{"result": "fake", "mask": [[2, 2, 30, 2, 30, 30]]}'
BOX = (slice(32, 96), slice(48, 112))
"""A 64 x 64 region on the 8 x 8 JPEG grid."""


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def _inside_outside(energy: np.ndarray) -> tuple[float, float]:
    inside = np.zeros(energy.shape, bool)
    inside[BOX] = True
    return float(energy[inside].mean()), float(energy[~inside].mean())


def _perturb(head: torch.nn.Module, seed: int = 0) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in head.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=gen))


@pytest.mark.parametrize("kind", ["none", *VIEWS])
def test_view_shape_dtype_range_and_determinism(kind, photo):
    view = expert_view(photo, kind)
    assert view.shape == (*photo.shape[:2], expert_channels(kind)) and view.dtype == np.float32
    assert expert_channels(kind) == {"none": 0, "noise": 1, "srm": 3, "ela": 1, "classical": 2, "forensic": 21,
                                    "prnu": 1}[kind]
    if view.size:
        assert view.min() >= -1.0 and view.max() <= 1.0 and view.std() > 0
    assert expert_view(photo.copy(), kind).tobytes() == view.tobytes()
    batch = expert_batch([photo, photo[:60, :90]], kind, (40, 56))
    assert batch.shape == (2, expert_channels(kind), 40, 56) and batch.dtype == torch.float32
    own = expert_batch([photo], kind, photo.shape[:2])  # at the image's own frame: the view itself
    assert np.array_equal(own[0].numpy(), view.transpose(2, 0, 1))


def test_prnu_view_is_the_fingerprint_correlation_and_zero_without_one(camera_kit):
    """prnu: 1 channel, float32, high where the pixels are the fingerprint's camera's, about 0 in a
    region pasted from another camera, all zeros when the camera has no fingerprint."""
    from forgery_synth.fingerprints.prnu import estimate_fingerprint

    k = estimate_fingerprint([camera_kit.photo("Acme A1", i) for i in range(8)])
    host, other = camera_kit.photo("Acme A1", 50), camera_kit.photo("Bolt B2", 51)
    spliced = host.copy()
    spliced[40:120, 48:144] = other[40:120, 48:144]
    view = expert_view(spliced, "prnu", k)
    assert view.shape == (160, 192, 1) and view.dtype == np.float32 and -1 <= view.min() <= view.max() <= 1
    assert view[:24].mean() > 0.5 and abs(view[76:84, 92:100].mean()) < 0.3  # windows wholly inside the paste
    assert not expert_view(spliced, "prnu").any()  # unknown camera: zeros
    batch = expert_batch([spliced, host], "prnu", (40, 48), [k, None])
    assert batch.shape == (2, 1, 40, 48) and batch.dtype == torch.float32 and not batch[1].any()
    with pytest.raises(ValueError, match="fingerprints for"):
        expert_batch([spliced], "prnu", (40, 48), [k, k])


def test_views_refuse_bad_input(photo):
    with pytest.raises(ValueError, match="noise, srm, ela"):
        expert_view(photo, "sobel")
    with pytest.raises(ValueError, match="uint8"):
        expert_view(photo.astype(np.float32), "noise")


@pytest.mark.parametrize("kind", [k for k in VIEWS if k not in ("classical", "forensic")])
def test_views_have_a_fixed_scale(kind, photo):
    """Each value depends on its neighbourhood only, never on the image's own statistics: brightening
    the bottom half (very different statistics) leaves the view of the top half as it was."""
    other = photo.copy()
    other[96:] = np.clip(other[96:].astype(np.int32) * 3 + 40, 0, 255).astype(np.uint8)
    assert not np.array_equal(expert_view(other, kind)[96:], expert_view(photo, kind)[96:])
    assert np.array_equal(expert_view(other, kind)[:72], expert_view(photo, kind)[:72])


def test_classical_view_is_the_baseline_detectors_maps(photo):
    """The 'classical' view carries the two maps the classical baseline thresholds (the noise map is
    relative to the image's own median noise level by definition: it measures inconsistency)."""
    from forgery_synth.dataset.detectors import ela_map, noise_residual_map

    view = expert_view(photo, "classical")
    assert np.allclose(view[..., 0], np.clip(noise_residual_map(photo), 0, 4) / 4)
    assert np.allclose(view[..., 1], np.clip(ela_map(photo), 0, 16) / 16)


@pytest.mark.parametrize("kind", ["noise", "srm"])
def test_residual_views_see_added_noise(kind, donor_photo):
    """Gaussian noise (std 8 grey levels) added to a region raises the view's energy there."""
    rng = np.random.default_rng([3, 1])
    noisy = donor_photo.copy()
    noisy[BOX] = np.clip(noisy[BOX] + rng.normal(0, 8, noisy[BOX].shape), 0, 255).astype(np.uint8)
    inside, outside = _inside_outside((expert_view(noisy, kind) ** 2).mean(-1))
    clean_inside, _ = _inside_outside((expert_view(donor_photo, kind) ** 2).mean(-1))
    assert inside > 1.5 * outside
    assert inside > 1.1 * clean_inside


def test_forensic_view_sees_a_noisier_and_a_blurred_region(donor_photo):
    """The forensic bank's relative variance channels (3-14: four residuals x windows 7, 15, 31) rise
    where noise was added, and its sharpness channels (15, 16: Laplacian variance) fall where the
    region was blurred; the first two channels are the classical view itself."""
    rng = np.random.default_rng([3, 2])
    noisy = donor_photo.copy()
    noisy[BOX] = np.clip(noisy[BOX] + rng.normal(0, 8, noisy[BOX].shape), 0, 255).astype(np.uint8)
    view = expert_view(noisy, "forensic")
    inside, outside = _inside_outside(view[..., 3:15].mean(-1))
    assert inside > outside + 0.2
    blurred = donor_photo.copy()
    blurred[BOX] = cv2.GaussianBlur(donor_photo, (0, 0), 2.0)[BOX]
    inside, outside = _inside_outside(expert_view(blurred, "forensic")[..., 15:17].mean(-1))
    assert inside < outside - 0.2
    assert np.array_equal(view[..., :2], expert_view(noisy, "classical"))


def test_forensic_view_gets_the_wider_head():
    from trainer.model.expert_head import build_expert_head

    wide, small = build_expert_head("forensic", seed=0), build_expert_head("classical", seed=0)
    assert wide.channels == 21 and wide.to_mask.in_channels == 32 and len(wide.features) == 10
    assert small.to_mask.in_channels == 16 and len(small.features) == 6  # the head older checkpoints hold


def test_ela_view_sees_another_compression_history(donor_photo):
    """A region recompressed at JPEG quality 30 re-saves at 90 with little error (its coefficients already
    sit on a coarse lattice): lower ELA inside. An uncompressed region in a quality-60 image: higher inside."""
    recompressed = donor_photo.copy()
    recompressed[BOX] = _jpeg(donor_photo, 30)[BOX]
    inside, outside = _inside_outside(expert_view(recompressed, "ela")[..., 0])
    assert inside < 0.6 * outside
    pasted = _jpeg(donor_photo, 60)
    pasted[BOX] = donor_photo[BOX]
    inside, outside = _inside_outside(expert_view(pasted, "ela")[..., 0])
    assert inside > 3.0 * outside


@pytest.mark.parametrize("decoder", ["sam", "conv"])
def test_expert_reaches_both_logits_from_a_zero_start(decoder, batch_for, json_answer, make_sample, tiny_model):
    """A fresh expert model gives exactly the plain model's logits; once its weights move, the view
    changes the mask logits and the cls logit, and a different view gives different ones."""
    plain, model = tiny_model(mask_decoder=decoder), tiny_model(mask_decoder=decoder, expert="noise")
    images = [make_sample(0)[0], make_sample(1, (56, 84), fake=False)[0]]
    batch = batch_for(images, [json_answer("fake"), json_answer("real")])
    size = (48, 48)
    views = expert_batch(images, "noise", size)
    with torch.no_grad():
        base = plain(**batch, mask_size=size)
        fresh = model(**batch, expert_images=views, mask_size=size)
        assert torch.equal(fresh.cls_logit, base.cls_logit) and torch.equal(fresh.mask_logits, base.mask_logits)
        _perturb(model.expert_head)
        moved = model(**batch, expert_images=views, mask_size=size)
        other = model(**batch, expert_images=views.flip(-1), mask_size=size)
    assert not torch.allclose(moved.cls_logit, base.cls_logit)
    assert not torch.allclose(moved.mask_logits, base.mask_logits)
    assert not torch.allclose(moved.mask_logits, other.mask_logits)


def test_expert_inputs_are_checked(batch_for, json_answer, make_sample, tiny_model):
    model, plain = tiny_model(expert="srm"), tiny_model()
    image = make_sample(0)[0]
    batch = batch_for([image], [json_answer("fake")])
    with pytest.raises(ValueError, match="expert_images"):
        model(**batch, mask_size=(56, 56))
    with pytest.raises(ValueError, match="mask frame"):
        model(**batch, expert_images=expert_batch([image], "srm", (28, 28)), mask_size=(56, 56))
    with pytest.raises(ValueError, match="B x 3"):
        model(**batch, expert_images=expert_batch([image], "noise", (56, 56)), mask_size=(56, 56))
    with pytest.raises(ValueError, match="no expert head"):
        plain(**batch, expert_images=expert_batch([image], "srm", (56, 56)), mask_size=(56, 56))
    with pytest.raises(ValueError, match="expert must be one of"):
        tiny_model(expert="sobel")


def test_expert_head_trains_in_every_stage(batch_for, json_answer, make_sample, tiny_model):
    model = tiny_model(expert="ela")
    model.train()
    check_stage(model, 1)
    assert trainable_report(model, 1)["groups"]["expert_head"] > 0
    images = [make_sample(0)[0], make_sample(1, fake=False)[0]]
    batch = batch_for(images, [json_answer("fake"), json_answer("real")])
    out = model(**batch, expert_images=expert_batch(images, "ela", (56, 56)), mask_size=(56, 56))
    masks = torch.from_numpy(np.stack([make_sample(0)[1], make_sample(1, fake=False)[1]])).float()[:, None]
    total_loss(out, cls_target=torch.tensor([1.0, 0.0]), mask_target=masks).total.backward()
    for layer in (model.expert_head.to_mask, model.expert_head.to_cls):  # the zero layers get a gradient
        assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0
    model.enable_lora(r=2, alpha=4)
    check_stage(model, 2)
    assert all(p.requires_grad for p in model.expert_head.parameters())


@pytest.mark.parametrize("decoder", ["sam", "conv"])
def test_checkpoint_round_trip_keeps_the_expert(decoder, tmp_path, batch_for, json_answer, make_sample, tiny_model,
                                                tiny_processor):
    model = tiny_model(mask_decoder=decoder, expert="srm")
    _perturb(model.expert_head, seed=1)
    image = make_sample(2)[0]
    batch = batch_for([image], [json_answer("fake")])
    views = expert_batch([image], "srm", (56, 56))
    path = save_checkpoint(model, tiny_processor(), tmp_path / "ckpt")
    assert json.loads((path / "forensics_config.json").read_text())["expert"] == "srm"
    loaded, _ = load_checkpoint(path)
    assert loaded.config.expert == "srm"
    with torch.no_grad():
        before = model(**batch, expert_images=views, mask_size=(56, 56))
        after = loaded(**batch, expert_images=views, mask_size=(56, 56))
    assert torch.equal(before.cls_logit, after.cls_logit) and torch.equal(before.mask_logits, after.mask_logits)


@pytest.mark.parametrize("kind", VIEWS)
def test_score_reads_the_view_a_training_forward_reads(kind, batch_for, make_sample, prompt, tiny_model,
                                                       tiny_processor):
    """score() computes the expert view itself, at its mask frame, exactly as the training batch does."""
    model = tiny_model(expert=kind)
    _perturb(model.expert_head, seed=2)
    image, _ = make_sample(3, (56, 84))
    batch = batch_for([image], [place_forensic_tokens(PLAIN)])
    frame = image.shape[:2]
    with torch.no_grad():
        train_out = model(**batch, expert_images=expert_batch([image], kind, frame), mask_size=frame)
    result = model.score(tiny_processor(), image, prompt, PLAIN)
    assert result.cls_prob == pytest.approx(float(torch.sigmoid(train_out.cls_logit[0])), abs=1e-6)
    assert np.allclose(result.mask_prob, torch.sigmoid(train_out.mask_logits[0, 0]).numpy(), atol=1e-6)
    at_frame = model.score(tiny_processor(), image, prompt, PLAIN, mask_size=(40, 40))
    assert at_frame.mask_prob.shape == (40, 40)
