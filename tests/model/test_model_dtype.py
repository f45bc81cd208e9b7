"""Real size: frozen weights in the run's dtype with float32 trainables, the hidden-layer index read
literally, and greedy decoding that ignores the model folder's generation_config.json."""

from __future__ import annotations

import pytest
import torch

from trainer.model.build_model import check_hidden_layer, resolve_dtype
from trainer.model.generation import GREEDY


def _trainable(model) -> dict[str, torch.Tensor]:
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def test_bf16_model_keeps_frozen_weights_bf16_and_trainables_fp32(tiny_model, batch_for, make_sample, json_answer):
    model = tiny_model(dtype="bfloat16")
    frozen = [p for p in model.qwen.parameters() if not p.requires_grad]
    assert frozen and all(p.dtype == torch.bfloat16 for p in frozen)
    assert {p.dtype for p in model.mask_decoder.image_encoder.parameters()} == {torch.bfloat16}
    trainable = _trainable(model)
    assert trainable and {p.dtype for p in trainable.values()} == {torch.float32}
    assert model.config.dtype == "bfloat16"

    model.enable_lora(r=4, alpha=8)  # peft on a bf16 base: the adapter is float32 (autocast_adapter_dtype)
    lora = {n: p for n, p in _trainable(model).items() if "lora_" in n}
    assert lora and {p.dtype for p in lora.values()} == {torch.float32}
    assert {p.dtype for p in _trainable(model).values()} == {torch.float32}

    image, mask = make_sample(0)
    batch = batch_for([image], [json_answer("fake")])
    model.train()
    out = model(**batch, compute_logits=False)  # CPU, no autocast: the bf16 backbone and SAM encoder run as they are
    loss = out.text_loss + out.cls_logit.sum() + out.mask_logits.mean()
    loss.backward()
    grads = [p.grad for p in _trainable(model).values() if p.grad is not None]
    assert grads and all(g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)
    assert model.embed_tokens.delta.grad is not None and model.embed_tokens.delta.grad.abs().sum() > 0


def test_auto_dtype_is_bf16_for_real_checkpoints_and_fp32_for_tiny():
    assert resolve_dtype("auto", "tiny") == "float32"
    assert resolve_dtype(None, "tiny-untied") == "float32"
    if not torch.cuda.is_available():
        assert resolve_dtype("auto", "/models/Qwen2.5-VL-3B-Instruct") == "bfloat16"
        assert resolve_dtype("auto", "Qwen/Qwen2.5-VL-3B-Instruct") == "bfloat16"
    assert resolve_dtype("float16", "tiny") == "float16"
    with pytest.raises(ValueError, match="dtype must be one of"):
        resolve_dtype("fp8", "tiny")


def test_hidden_layer_out_of_range_is_refused_with_the_range(tiny_model):
    check_hidden_layer(2, 2)
    check_hidden_layer([-3, 0, 2], 2)
    with pytest.raises(ValueError, match=r"--hidden-layer 5: the backbone has 2 layers, so an index is in 0..2"):
        check_hidden_layer(5, 2)
    with pytest.raises(ValueError, match="the backbone has 2 layers"):
        tiny_model(hidden_layer=5)  # 5 % 3 == 2 used to read as "last"


def test_only_the_real_last_index_means_last(tiny_model, batch_for, make_sample, json_answer):
    image, _ = make_sample(1)
    batch = batch_for([image], [json_answer("fake")])
    feats = {}
    for spec in ("last", 2, -1, 1, -2):
        model = tiny_model(hidden_layer=spec)
        with torch.no_grad():
            feats[spec] = model(**batch, compute_logits=False).cls_embedding
    assert torch.equal(feats[2], feats["last"]) and torch.equal(feats[-1], feats["last"])
    assert torch.equal(feats[1], feats[-2]) and not torch.allclose(feats[1], feats["last"])


def test_greedy_settings_are_pinned_despite_the_folders_generation_config(tiny_model, tiny_processor, make_sample,
                                                                           monkeypatch):
    model = tiny_model()
    gen = model.qwen.generation_config  # what a released folder's generation_config.json sets
    gen.repetition_penalty, gen.do_sample, gen.top_k, gen.top_p, gen.temperature = 1.05, True, 1, 0.001, 0.1
    seen = []
    original = model.qwen._prepare_generation_config

    def spy(*args, **kwargs):
        config, rest = original(*args, **kwargs)
        seen.append(config)
        return config, rest

    monkeypatch.setattr(model.qwen, "_prepare_generation_config", spy)
    image, _ = make_sample(2)
    model.generate_answers(tiny_processor(), [image], "Is it forged?", max_new_tokens=3)
    config = seen[-1]
    assert config.repetition_penalty == 1.0 and config.do_sample is False and config.num_beams == 1
    assert {k: getattr(config, k) for k in GREEDY} == GREEDY
