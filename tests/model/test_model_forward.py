"""ForensicsModel: positions, forward/backward, trainable set, hidden layers, shift convention."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from forgery_synth.dataset.answer_tokens import (
    MASK_RUN,
    place_forensic_tokens,
    strip_forensic_tokens,
    text_verdict,
)
from trainer.model.build_model import build_tiny_qwen
from trainer.model.positions import find_forensic_positions
from trainer.model.rows import DeltaEmbedding, DeltaLMHead
from trainer.training.losses import total_loss

IMAGE_PAD = 151655


@pytest.mark.parametrize(
    "sizes",
    [[(56, 56)], [(56, 56), (112, 84)], [(84, 112), (56, 56), (112, 112)]],
    ids=["b1", "b2-mixed", "b3-mixed"],
)
def test_positions_in_expanded_ids(sizes, batch_for, json_answer, make_sample, tiny_model):
    model = tiny_model()
    images = [make_sample(i, s)[0] for i, s in enumerate(sizes)]
    batch = batch_for(images, [json_answer("fake", [[1, 2, 3, 4]]) for _ in images])
    ids = batch["input_ids"]
    pos = find_forensic_positions(ids, model.token_ids)
    grid = batch["image_grid_thw"]
    for b in range(len(sizes)):
        n_pad = int((ids[b] == IMAGE_PAD).sum())
        assert n_pad == int(grid[b].prod()) // 4  # the pads were expanded to the image's grid
        assert bool(pos.has_cls[b]) and bool(pos.has_masks[b])
        assert int(ids[b, pos.cls[b]]) == model.token_ids.cls
        assert ids[b, pos.masks[b]].tolist() == list(model.token_ids.masks)
        # <cls> follows the verdict by the image's own token count, not a fixed offset
        first_pad = int(torch.nonzero(ids[b] == IMAGE_PAD)[0])
        assert int(pos.cls[b]) - first_pad > n_pad
    if len(sizes) > 1:
        # different image sizes -> different token positions for the same answer
        assert int(pos.cls[0]) != int(pos.cls[1])


def test_positions_absent_tokens(batch_for, make_sample, tiny_model):
    model = tiny_model()
    batch = batch_for([make_sample(0)[0]], ["The image is real."])
    pos = find_forensic_positions(batch["input_ids"], model.token_ids)
    assert not bool(pos.has_cls[0]) and not bool(pos.has_masks[0])


def test_new_rows_fit_without_resize_and_are_initialised(tiny_model):
    model = tiny_model()
    emb = model.embed_tokens
    assert isinstance(emb, DeltaEmbedding) and isinstance(model.lm_head, DeltaLMHead)
    assert emb.num_embeddings == 151936  # spare rows used, no resize
    ids = list(model.token_ids.all)
    rows = emb.base.weight[ids]
    mean = emb.base.weight[: min(ids)].mean(0)
    assert torch.allclose(rows.mean(0), mean, atol=0.01)
    assert (rows - mean).abs().max() > 0  # noise makes the 33 rows distinct
    assert len({tuple(r.tolist()) for r in rows}) == 33
    assert model.tied and model.lm_head.delta is emb.delta


def test_resize_when_ids_do_not_fit(batch_for, json_answer, make_sample, tiny_processor):
    backbone = build_tiny_qwen(vocab_size=151665)  # no spare rows
    from trainer.model.build_model import build_forensics_model

    model, _ = build_forensics_model("tiny", "tiny", processor=tiny_processor(), backbone=backbone)
    assert model.embed_tokens.num_embeddings == 151665 + 33
    batch = batch_for([make_sample(0)[0]], [json_answer("fake")])
    out = model(**batch, mask_size=(32, 32))
    assert out.logits.shape[-1] == 151665 + 33


@pytest.mark.parametrize("base", ["tiny", "tiny-untied"])
def test_forward_backward_and_exact_trainable_set(base, batch_for, json_answer, make_sample, masks_tensor, tiny_model):
    model = tiny_model(base_model=base)
    model.train()
    images, masks = zip(*[make_sample(0), make_sample(1, (84, 112)), make_sample(2, fake=False)])
    answers = [json_answer("fake", [[1, 2, 3, 4]]), json_answer("fake", [[5, 6, 7, 8]]), json_answer("real")]
    batch = batch_for(list(images), answers)
    target = masks_tensor([np.pad(m, ((0, 0), (0, 0)))[:56, :56] for m in masks])
    out = model(**batch, mask_size=(56, 56))
    b = len(answers)
    assert out.cls_logit.shape == (b,) and out.cls_logit.dtype == torch.float32
    assert out.cls_embedding.shape == (b, 64)
    assert out.mask_prompts.shape == (b, 32, 256)
    assert out.mask_logits.shape == (b, 1, 56, 56)
    assert out.logits.shape[:2] == batch["input_ids"].shape
    loss = total_loss(out, cls_target=torch.tensor([1.0, 1.0, 0.0]), mask_target=target)
    loss.total.backward()

    expected = {
        "backbone.model.language_model.embed_tokens.delta",
        *(n for n, _ in model.named_parameters() if n.startswith(("cls_head.", "mask_head.", "mask_evidence."))),
    }
    if base == "tiny-untied":
        expected.add("backbone.lm_head.delta")
    dec = "mask_decoder.decoder."
    for n, _ in model.named_parameters():
        if n.startswith(dec) and not n.startswith(
            (dec + "iou_prediction_head", *(f"{dec}output_hypernetworks_mlps.{i}." for i in (1, 2, 3)))
        ):
            expected.add(n)
    got = {n for n, p in model.named_parameters() if p.grad is not None}
    assert got == expected
    assert set(model.trainable_parameter_names()) == expected
    for n, p in model.named_parameters():
        if n in expected:
            assert p.grad.abs().sum() > 0, n
    # the delta gradient lands only on rows of tokens present in the batch
    assert model.embed_tokens.delta.grad.abs().sum(1).gt(0).all()


def test_frozen_backbone_rows_unchanged_by_a_step(batch_for, json_answer, make_sample, tiny_model):
    model = tiny_model()
    model.train()
    before = model.embed_tokens.base.weight.clone()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    batch = batch_for([make_sample(0)[0]], [json_answer("fake")])
    out = model(**batch, mask_size=(32, 32))
    total_loss(out, cls_target=torch.tensor([1.0]), mask_target=torch.zeros(1, 1, 32, 32)).total.backward()
    opt.step()
    assert torch.equal(before, model.embed_tokens.base.weight)
    assert model.embed_tokens.delta.abs().sum() > 0


@pytest.mark.parametrize("layer", ["last", 1, [0, 1, 2], -2])
def test_hidden_layer_choice(layer, batch_for, json_answer, make_sample, tiny_model):
    model = tiny_model(hidden_layer=layer)
    batch = batch_for([make_sample(0)[0]], [json_answer("fake")])
    out = model(**batch, mask_size=(32, 32))
    assert out.cls_embedding.shape == (1, 64) and torch.isfinite(out.cls_embedding).all()
    if layer != "last":
        ref = tiny_model(hidden_layer="last")(**batch, mask_size=(32, 32))
        assert not torch.allclose(out.cls_embedding, ref.cls_embedding)
    if layer == [0, 1, 2]:
        qwen_out = model.qwen.model(**{k: batch[k] for k in ("input_ids", "attention_mask", "pixel_values", "image_grid_thw", "mm_token_type_ids")}, output_hidden_states=True)
        norm = model.qwen.model.language_model.norm
        hs = qwen_out.hidden_states
        expect = torch.stack([norm(hs[0]), norm(hs[1]), qwen_out.last_hidden_state]).mean(0)
        assert torch.allclose(out.cls_embedding[0], expect[0, out.positions.cls[0]], atol=1e-6)


def test_conv_mask_decoder_and_grads(batch_for, json_answer, make_sample, tiny_model):
    model = tiny_model(mask_decoder="conv")
    model.train()
    images = [make_sample(0)[0], make_sample(1, (84, 112))[0]]
    batch = batch_for(images, [json_answer("fake"), json_answer("real")])
    batch.pop("sam_images"), batch.pop("sam_input_sizes")
    out = model(**batch, mask_size=(40, 40))
    assert out.mask_logits.shape == (2, 1, 40, 40)
    total_loss(out, cls_target=torch.tensor([1.0, 0.0]), mask_target=torch.zeros(2, 1, 40, 40)).total.backward()
    for n, p in model.mask_decoder.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, n


def test_heads_stay_in_graph_without_mask_inputs(batch_for, json_answer, make_sample, tiny_model):
    model = tiny_model()
    model.train()
    batch = batch_for([make_sample(0)[0]], [json_answer("fake")])
    batch.pop("sam_images"), batch.pop("sam_input_sizes")
    out = model(**batch)
    assert out.mask_logits is None
    total_loss(out, cls_target=torch.tensor([1.0])).total.backward()
    for n, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None, n


def test_sam_embedding_cache(batch_for, json_answer, make_sample, tiny_model):
    model = tiny_model()
    batch = batch_for([make_sample(0)[0], make_sample(1)[0]], [json_answer("fake"), json_answer("real")])
    a = model(**batch, mask_size=(32, 32)).mask_logits
    assert len(model.mask_decoder.cache) == 2 and model.mask_decoder.cache.misses == 2
    b = model(**batch, mask_size=(32, 32)).mask_logits
    assert model.mask_decoder.cache.hits == 2
    assert torch.equal(a, b)


def test_place_forensic_tokens(json_answer):
    plain = '{"result": "fake", "mask": [[1, 2], [3, 4]]}'
    placed = place_forensic_tokens(plain, "after-verdict", "after-region")
    assert placed == json_answer("fake", [[1, 2], [3, 4]])
    assert place_forensic_tokens(placed, "after-verdict", "after-region") == placed  # training answers round-trip
    assert (place_forensic_tokens(placed, "before-verdict", "after-region")
            == "<cls>" + placed.replace("<cls>", ""))
    assert place_forensic_tokens(placed) == "<cls>" + MASK_RUN + plain  # the defaults: both first
    assert strip_forensic_tokens(placed) == plain
    assert place_forensic_tokens("这张图片是伪造的。", "after-verdict", "after-region").startswith("这张图片是伪造<cls>")
    assert text_verdict(plain) == "fake" and text_verdict('{"result": "real"}') == "real"
    assert text_verdict("no idea") is None


def test_same_convention_in_training_and_inference(batch_for, make_sample, prompt, tiny_model, tiny_processor):
    """The heads read the backbone's states AT the forensic tokens (not at position-1), and score() on a
    plain generated answer reads exactly the states a training forward reads."""
    model = tiny_model()
    image, _ = make_sample(3, (56, 84))
    plain = '{"result": "fake", "mask": [[2, 2, 30, 2, 30, 30]]}'
    batch = batch_for([image], [place_forensic_tokens(plain)])
    train_out = model(**batch, mask_size=image.shape[:2])
    ids = batch["input_ids"][0]
    c, m = int(train_out.positions.cls[0]), train_out.positions.masks[0]
    assert int(ids[c]) == model.token_ids.cls and ids[m].tolist() == list(model.token_ids.masks)
    keys = ("input_ids", "attention_mask", "pixel_values", "image_grid_thw", "mm_token_type_ids")
    with torch.no_grad():
        states = model.qwen.model(**{k: batch[k] for k in keys}).last_hidden_state[0]
        cls_emb = train_out.cls_embedding[0].detach()
        assert torch.allclose(cls_emb, states[c], atol=1e-6)  # the state AT <cls> ...
        assert not torch.allclose(cls_emb, states[c - 1], atol=1e-3)  # ... not the one that predicts it
        assert torch.allclose(train_out.cls_logit[0], model.cls_head(states[c]).squeeze(-1), atol=1e-6)
        assert torch.allclose(train_out.mask_prompts[0], model.mask_head(states[m]), atol=1e-6)
        assert not torch.allclose(train_out.mask_prompts[0], model.mask_head(states[m - 1]), atol=1e-3)
        # so <cls>'s own row shapes its feature (by causality a position-1 state could not see it)
        k = int(torch.nonzero(model.embed_tokens.new_ids == model.token_ids.cls))
        model.embed_tokens.delta[k] += 1.0
        moved = model(**batch, mask_size=image.shape[:2])
        model.embed_tokens.delta.zero_()
    assert not torch.allclose(moved.cls_embedding[0], cls_emb, atol=1e-3)
    assert torch.equal(moved.positions.cls, train_out.positions.cls)
    result = model.score(tiny_processor(), image, prompt, plain)
    assert result.answer == place_forensic_tokens(plain)
    assert result.cls_prob == pytest.approx(float(torch.sigmoid(train_out.cls_logit[0].detach())), abs=1e-6)
    assert result.mask_prob.shape == image.shape[:2]
    assert np.allclose(result.mask_prob, torch.sigmoid(train_out.mask_logits[0, 0]).detach().numpy(), atol=1e-6)
    assert result.text_verdict == "fake" and result.consistent == (result.cls_prob > 0.5)


def test_lora_trainable_set(batch_for, json_answer, make_sample, tiny_model):
    model = tiny_model()
    model.enable_lora(r=4, alpha=8)
    names = set(model.trainable_parameter_names())
    lora = {n for n in names if "lora_" in n}
    assert lora and all("language_model.layers" in n for n in lora)
    assert "backbone.base_model.model.model.language_model.embed_tokens.delta" in names
    model.train()
    batch = batch_for([make_sample(0)[0]], [json_answer("fake")])
    out = model(**batch, mask_size=(32, 32))
    total_loss(out, cls_target=torch.tensor([1.0]), mask_target=torch.zeros(1, 1, 32, 32)).total.backward()
    got = {n for n, p in model.named_parameters() if p.grad is not None}
    assert got == names


def test_box_prompt_changes_only_boxed_rows(batch_for, json_answer, make_sample, tiny_model):
    model = tiny_model()
    batch = batch_for([make_sample(0)[0], make_sample(1)[0]], [json_answer("fake"), json_answer("fake")])
    plain = model(**batch, mask_size=(32, 32)).mask_logits
    boxes = torch.tensor([[10.0, 10.0, 90.0, 90.0], [float("nan")] * 4])
    boxed = model(**batch, boxes=boxes, mask_size=(32, 32)).mask_logits
    assert not torch.allclose(plain[0], boxed[0])
    assert torch.equal(plain[1], boxed[1])


@pytest.mark.parametrize("base", ["tiny", "tiny-untied"])
def test_generate_answer_runs_with_delta_rows(base, make_sample, prompt, tiny_model, tiny_processor, monkeypatch):
    """Greedy generation goes through lm_head's delta rows: a <cls> delta along the state that predicts the
    first answer token makes <cls> that token; with the delta zeroed it is not generated."""
    model, processor = tiny_model(base_model=base), tiny_processor()
    tok, cls, image = processor.tokenizer, model.token_ids.cls, make_sample(0)[0]
    calls: list[tuple[dict, torch.Tensor]] = []
    generate = model.qwen.generate

    def spy(**kw):
        out = generate(**kw)
        calls.append((kw, out))
        return out

    monkeypatch.setattr(model.qwen, "generate", spy)

    def answer() -> tuple[str, torch.Tensor]:
        text = model.generate_answer(processor, image, prompt, max_new_tokens=4)
        kw, out = calls[-1]
        new = out[0, kw["input_ids"].shape[1]:]
        assert text == tok.decode(new, skip_special_tokens=True)  # the spied call is the one answered
        return text, new

    plain_text, plain_ids = answer()
    assert cls not in plain_ids.tolist()
    # the final state at the prompt's last position (it predicts the first answer token), and its logits
    kw = calls[-1][0]
    keys = ("input_ids", "attention_mask", "pixel_values", "image_grid_thw", "mm_token_type_ids")
    k = int(torch.nonzero(model.lm_head.new_ids == cls))
    with torch.no_grad():
        h = model.qwen.model(**{n: kw[n] for n in keys if n in kw}).last_hidden_state[0, -1].float()
        logits = model.lm_head(h[None])[0]
        gap = float(logits.max() - logits[cls])
        model.lm_head.delta[k] = h * (gap + 10.0) / float(h @ h)  # h . delta = gap + 10: <cls> wins by 10
    text, ids = answer()
    assert int(ids[0]) == cls and tok.decode(ids, skip_special_tokens=False).startswith("<cls>")
    assert model.tied == (base == "tiny") and (model.lm_head.delta is model.embed_tokens.delta) == model.tied
    with torch.no_grad():
        model.lm_head.delta.zero_()
    again_text, again_ids = answer()
    assert torch.equal(again_ids, plain_ids) and again_text == plain_text
