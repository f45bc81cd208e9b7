"""The LLM-free control (language_model "none"): forward and scoring never call the language model, the
heads read the vision tower's pooled features, nothing but the heads, queries, decoder (and chosen encoders)
train, the text figures have nothing to read, and a checkpoint round-trips exactly."""

from __future__ import annotations

import pytest
import torch

from trainer.model.checkpoint import load_checkpoint, read_config, save_checkpoint
from trainer.model.llm_free import template_answer
from trainer.training.losses import total_loss
from trainer.training.stages import _group, setup_stage, trainable_report


def _forbid_language_model(model) -> None:
    """Make every call into the language model or its vocabulary head raise."""
    def boom(*_, **__):
        raise AssertionError("the language model was called")

    model.qwen.model.language_model.forward = boom
    model.qwen.lm_head.forward = boom


@pytest.fixture()
def pair(make_sample, batch_for, json_answer, masks_tensor):
    images, masks = zip(make_sample(0), make_sample(1, fake=False))
    return list(images), batch_for(list(images), [json_answer("fake", [[1, 2, 3, 4]]), json_answer("real")]), \
        masks_tensor(list(masks))


def test_forward_and_scores_never_call_the_language_model(tiny_model, tiny_processor, pair, prompt):
    images, batch, masks = pair
    model = tiny_model(language_model="none")
    setup_stage(model, 1)
    _forbid_language_model(model)
    model.train()
    out = model(**batch, mask_size=(56, 56))
    assert out.text_loss is None and out.logits is None and out.mask_logits.shape == (2, 1, 56, 56)
    total_loss(out, cls_target=torch.tensor([1.0, 0.0]), mask_target=masks).total.backward()
    assert model.mask_queries.grad is not None and model.cls_head[0].weight.grad is not None
    assert model.embed_tokens.delta.grad is None  # no token row is read

    model.eval()
    results = model.score_batch(tiny_processor(), images, prompt, ['{"result": "fake"}', '{"result": "real"}'])
    assert all(r.text_verdict is None and r.consistent is None for r in results)  # not a fake 1.0 agreement
    assert [r.answer for r in results] == [template_answer(r.cls_prob) for r in results]
    assert results[0].mask_prob.shape == images[0].shape[:2]
    from PIL import Image

    answers = model.generate_answers(tiny_processor(), [Image.fromarray(im) for im in images], prompt)
    assert answers == [template_answer(r.cls_prob) for r in results]


def test_the_answer_text_changes_nothing(tiny_model, tiny_processor, pair, prompt):
    images, _, _ = pair
    model = tiny_model(language_model="none")
    a = model.score_batch(tiny_processor(), images, prompt, ['{"result": "fake"}'] * 2)
    b = model.score_batch(tiny_processor(), images, "another prompt", ["", "real"])
    assert [r.cls_prob for r in a] == [r.cls_prob for r in b]
    assert all((x.mask_prob == y.mask_prob).all() for x, y in zip(a, b))


def test_llm_free_trains_heads_queries_decoder_only(tiny_model):
    model = tiny_model(language_model="none")
    setup_stage(model, 1)
    groups = trainable_report(model, 1)["groups"]
    assert set(groups) == {"cls_head", "mask_head", "mask_decoder"}
    assert "mask_queries" in model.trainable_parameter_names() and _group("mask_queries") == "mask_head"
    with pytest.raises(ValueError, match="no"):
        setup_stage(model, 2)
    with pytest.raises(ValueError, match="SAM mask decoder"):
        tiny_model(language_model="none", mask_decoder="conv")


@pytest.mark.slow
def test_llm_free_checkpoint_round_trip(tmp_path, tiny_model, tiny_processor, pair):
    _, batch, masks = pair
    model = tiny_model(language_model="none", train_vision="full")
    setup_stage(model, 1)
    model.train()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    total_loss(model(**batch, mask_size=(56, 56)), cls_target=torch.tensor([1.0, 0.0]), mask_target=masks).total.backward()
    opt.step()
    model.eval()
    with torch.no_grad():
        before = model(**batch, mask_size=(56, 56))
    path = save_checkpoint(model, tiny_processor(), tmp_path / "ckpt")
    assert read_config(path)["language_model"] == "none"
    loaded, _ = load_checkpoint(path)
    assert torch.equal(loaded.mask_queries, model.mask_queries)
    _forbid_language_model(loaded)
    with torch.no_grad():
        after = loaded(**batch, mask_size=(56, 56))
    assert torch.equal(before.cls_logit, after.cls_logit) and torch.equal(before.mask_logits, after.mask_logits)
