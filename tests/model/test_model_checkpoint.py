"""save_checkpoint / load_checkpoint round trips give bit-identical outputs."""

from __future__ import annotations

import json

import pytest
import torch

from trainer.model.checkpoint import load_checkpoint, read_config, save_checkpoint
from trainer.training.losses import total_loss


def _train_a_little(model, make_sample, batch_for, json_answer, masks_tensor, steps=2):
    model.train()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    images, masks = zip(make_sample(0), make_sample(1, fake=False))
    batch = batch_for(list(images), [json_answer("fake", [[1, 2, 3, 4]]), json_answer("real")])
    for _ in range(steps):
        out = model(**batch, mask_size=(56, 56))
        total_loss(out, cls_target=torch.tensor([1.0, 0.0]), mask_target=masks_tensor(list(masks))).total.backward()
        opt.step()
        opt.zero_grad()
    model.eval()
    return batch


@pytest.mark.parametrize(
    "kind",
    ["tiny", "tiny-untied", "conv", "lora", "layers"],
)
def test_round_trip_bit_identical(tmp_path, kind, tiny_model, tiny_processor, make_sample, batch_for, json_answer,
                                  masks_tensor):
    kw = {
        "tiny": {},
        "tiny-untied": {"base_model": "tiny-untied"},
        "conv": {"mask_decoder": "conv"},
        "lora": {},
        "layers": {"hidden_layer": [1, 2]},
    }[kind]
    model = tiny_model(**kw)
    if kind == "lora":
        model.enable_lora(r=4, alpha=8)
    batch = _train_a_little(model, make_sample, batch_for, json_answer, masks_tensor)
    with torch.no_grad():
        before = model(**batch, mask_size=(56, 56))
    path = save_checkpoint(model, tiny_processor(), tmp_path / "ckpt")
    record = read_config(path)
    assert record["token_ids"]["<cls>"] == 151665 and record["token_ids"]["<mask_32>"] == 151697
    assert record["backbone"] == ("adapter" if kind == "lora" else "full")
    assert record["hidden_layer"] == kw.get("hidden_layer", "last")
    assert not list(path.rglob("*.bin")) and not list(path.rglob("*.pt*"))  # no pickles

    loaded, processor = load_checkpoint(path)
    assert processor.tokenizer.encode("<cls><mask_32>") == [151665, 151697]
    with torch.no_grad():
        after = loaded(**batch, mask_size=(56, 56))
    assert torch.equal(before.logits, after.logits)
    assert torch.equal(before.cls_logit, after.cls_logit)
    assert torch.equal(before.mask_logits, after.mask_logits)
    assert set(loaded.trainable_parameter_names()) == set(model.trainable_parameter_names())


def test_frozen_real_backbone_saved_by_reference(tmp_path, batch_for, json_answer, make_sample, tiny_model, tiny_processor):
    model = tiny_model()
    path = save_checkpoint(model, tiny_processor(), tmp_path / "ref", save_backbone=False)
    assert read_config(path)["backbone"] == "reference"
    assert not (path / "backbone").exists()
    loaded, _ = load_checkpoint(path)  # "tiny" is rebuilt from its seed
    batch = batch_for([make_sample(0)[0]], [json_answer("fake")])
    with torch.no_grad():
        assert torch.equal(model(**batch).cls_logit, loaded(**batch).cls_logit)
    config = json.loads((path / "forensics_config.json").read_text())
    assert config["base_model"] == "tiny" and config["sam"] == "tiny"
