"""--train-vision and --train-sam-encoder on the model: the right parameters train (and only those), a
step moves them, stage 1 -> stage 2 keeps every trained vision LoRA tensor, checkpoints round-trip exactly."""

from __future__ import annotations

import pytest
import torch

from trainer.model.checkpoint import load_checkpoint, read_config, save_checkpoint
from trainer.training.losses import total_loss
from trainer.training.stages import _group, check_stage, setup_stage, trainable_report


def _step(model, batch, masks, lr=1e-2):
    """One optimizer step on ``batch`` (fake, real); returns the trainable tensors before it."""
    model.train()
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    before = {n: p.detach().clone() for n, p in params.items()}
    opt = torch.optim.Adam(params.values(), lr=lr)
    out = model(**batch, mask_size=(56, 56))
    total_loss(out, cls_target=torch.tensor([1.0, 0.0]), mask_target=masks).total.backward()
    opt.step()
    opt.zero_grad()
    model.eval()
    return before


@pytest.fixture()
def pair(make_sample, batch_for, json_answer, masks_tensor):
    images, masks = zip(make_sample(0), make_sample(1, fake=False))
    return batch_for(list(images), [json_answer("fake", [[1, 2, 3, 4]]), json_answer("real")]), masks_tensor(list(masks))


def _names(model, group):
    return sorted(n for n, p in model.named_parameters() if p.requires_grad and _group(n) == group)


@pytest.mark.parametrize("vision,sam", [("none", "none"), ("lora", "none"), ("full", "none"), ("none", "lora"),
                                        ("lora", "lora")])
def test_encoder_options_train_exactly_their_parameters(tiny_model, pair, vision, sam):
    model = tiny_model(train_vision=vision, train_sam_encoder=sam)
    setup_stage(model, 1)
    vis = _names(model, "vision")
    enc = _names(model, "sam_encoder")
    n_visual = sum(1 for _ in model.qwen.model.visual.parameters())
    if vision == "none":
        assert vis == []
    elif vision == "lora":
        assert vis and all(".lora_" in n for n in vis)
        wrapped = {n.split(".lora_")[0].split("visual.")[1] for n in vis}
        assert "merger.mlp.0" in wrapped and "merger.mlp.2" in wrapped and "blocks.1.attn.qkv" in wrapped
        assert "blocks.0.mlp.down_proj" in wrapped and not any("patch_embed" in w for w in wrapped)
    else:
        assert len(vis) == n_visual
    assert (enc == []) == (sam == "none")
    assert all(".lora_" in n for n in enc)
    assert not _names(model, "lora")  # the LLM's LoRA is stage 2's
    assert not _names(model, "other")
    groups = trainable_report(model, 1)["groups"]
    assert ("vision" in groups) == (vision != "none") and ("sam_encoder" in groups) == (sam != "none")

    before = _step(model, *pair)
    moved = {n for n, p in model.named_parameters() if n in before and not torch.equal(before[n], p)}
    # gradients flow through both encoders (a LoRA's A gets none while its B is still zero: step 1)
    assert {n for n in vis + enc if "lora_A" not in n} <= moved


def test_sam_encoder_lora_embeds_live_with_grad(tiny_model, pair):
    model = tiny_model(train_sam_encoder="lora")
    dec = model.mask_decoder
    assert dec.train_image_encoder and dec.cache.max_items == 0
    emb = dec.embed_images(pair[0]["sam_images"])
    assert emb.requires_grad and len(dec.cache) == 0


def test_check_stage_refuses_a_frozen_encoder_that_trains(tiny_model):
    model = tiny_model()
    setup_stage(model, 1)
    next(model.qwen.model.visual.parameters()).requires_grad_(True)
    with pytest.raises(AssertionError, match="vision is frozen"):
        check_stage(model, 1)


@pytest.mark.slow
def test_vision_lora_survives_stage_2_and_checkpoint(tmp_path, tiny_model, tiny_processor, pair):
    model = tiny_model(train_vision="lora")
    setup_stage(model, 1, lora_r=4, lora_alpha=8)
    _step(model, *pair)
    trained = {n: p.detach().clone() for n, p in model.named_parameters() if _group(n) == "vision"}
    assert trained and all(p.abs().sum() > 0 for n, p in trained.items() if "lora_B" in n)  # B moved off zero
    stage1 = save_checkpoint(model, tiny_processor(), tmp_path / "s1")
    assert read_config(stage1)["train_vision"] == "lora" and read_config(stage1)["backbone"] == "adapter"

    loaded, _ = load_checkpoint(stage1)
    setup_stage(loaded, 2, lora_r=8, lora_alpha=16, seed=3)  # the LLM's LoRA added, another rank
    after = {n: p for n, p in loaded.named_parameters() if _group(n) == "vision"}
    assert sorted(after) == sorted(trained)
    assert all(torch.equal(trained[n], after[n]) for n in trained)
    assert _names(loaded, "lora") and all(p.requires_grad for n, p in after.items() if ".lora_" in n)
    _step(loaded, *pair)
    stage2_vision = {n: p.detach().clone() for n, p in loaded.named_parameters() if _group(n) == "vision"}
    stage2_llm = {n: p.detach().clone() for n, p in loaded.named_parameters() if _group(n) == "lora"}
    with torch.no_grad():
        before = loaded(**pair[0], mask_size=(56, 56))
    stage2 = save_checkpoint(loaded, tiny_processor(), tmp_path / "s2")

    again, _ = load_checkpoint(stage2)
    vision = {n: p for n, p in again.named_parameters() if _group(n) == "vision"}
    llm = {n: p for n, p in again.named_parameters() if _group(n) == "lora"}
    assert sorted(vision) == sorted(stage2_vision) and sorted(llm) == sorted(stage2_llm)
    assert all(torch.equal(stage2_vision[n], vision[n]) for n in vision)
    assert all(torch.equal(stage2_llm[n], llm[n]) for n in llm)
    with torch.no_grad():
        out = again(**pair[0], mask_size=(56, 56))
    assert torch.equal(before.cls_logit, out.cls_logit) and torch.equal(before.mask_logits, out.mask_logits)


@pytest.mark.slow
@pytest.mark.parametrize("vision,sam", [("full", "none"), ("none", "lora")])
def test_trained_encoders_round_trip_exactly(tmp_path, tiny_model, tiny_processor, pair, vision, sam):
    model = tiny_model(train_vision=vision, train_sam_encoder=sam)
    setup_stage(model, 1)
    _step(model, *pair)
    with torch.no_grad():
        before = model(**pair[0], mask_size=(56, 56))
    path = save_checkpoint(model, tiny_processor(), tmp_path / "ckpt")
    assert (path / "vision.safetensors").is_file() == (vision == "full")
    assert (path / "sam_encoder.safetensors").is_file() == (sam == "lora")
    loaded, _ = load_checkpoint(path)
    assert (loaded.config.train_vision, loaded.config.train_sam_encoder) == (vision, sam)
    fresh = tiny_model(train_vision=vision, train_sam_encoder=sam)
    mine = dict(loaded.named_parameters())
    for n, p in model.named_parameters():
        if p.requires_grad:
            assert torch.equal(p, mine[n]), n
    changed = [n for n, p in fresh.named_parameters() if _group(n) in ("vision", "sam_encoder")
               and not torch.equal(p, mine[n])]
    assert changed  # the trained encoder came from the checkpoint, not from the rebuild
    with torch.no_grad():
        after = loaded(**pair[0], mask_size=(56, 56))
    assert torch.equal(before.cls_logit, after.cls_logit) and torch.equal(before.mask_logits, after.mask_logits)


def test_missing_vision_file_is_refused(tmp_path, tiny_model, tiny_processor):
    model = tiny_model(train_vision="full")
    path = save_checkpoint(model, tiny_processor(), tmp_path / "ckpt")
    (path / "vision.safetensors").unlink()
    with pytest.raises(ValueError, match="vision.safetensors is missing"):
        load_checkpoint(path)
