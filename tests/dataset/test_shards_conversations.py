"""Conversation templates: token placement, parsing, Qwen messages and the chat template."""

from __future__ import annotations

import json

import numpy as np
import pytest

from forgery_synth.dataset import conversations as conv
from forgery_synth.dataset.tar_shards import iter_tar_samples, shard_paths

LOG = {"id": "ab12", "label": "fake", "method": "copy-move", "mask_area": 0.04,
       "ops": [{"op": "copy-move", "region": {"kind": "polygon"}, "angle": 12.5, "scale": 0.9, "blend": "poisson"},
               {"op": "jpeg", "scope": "global", "quality": 85}]}


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory, build_small):
    root = tmp_path_factory.mktemp("conv")
    return build_small(root, templates={"json": 1, "explain": 1, "conclusion": 1, "pair": 1})[0]


def test_json_answer_matches_the_seed_format():
    fake = conv.json_answer("fake", [[1, 2, 3, 4, 5, 6]])
    assert fake == '{"result": "fake<cls>", "mask": [[1, 2, 3, 4, 5, 6]]' + "".join(
        f"<mask_{i}>" for i in range(1, 33)) + "}"
    real = conv.json_answer("real", [])
    assert real.startswith('{"result": "real<cls>", "mask": []<mask_1>') and real.endswith("<mask_32>}")
    assert conv.parse_json_answer(fake) == ("fake", [[1, 2, 3, 4, 5, 6]])
    assert conv.parse_json_answer(real) == ("real", [])
    assert conv.check_answer("json", fake) == [] and conv.check_answer("json", real) == []


@pytest.mark.parametrize("lang", conv.LANGS)
def test_tokens_stand_at_their_places_in_every_template(lang, blob_mask):
    mask = blob_mask(112, 140, np.random.default_rng(0))
    answers = {
        "json": conv.json_answer("fake", [[1, 1, 9, 1, 9, 9]]),
        "explain": conv.explain_answer("fake", LOG, mask, 1, lang),
        "conclusion": conv.conclusion_answer("fake", lang),
        "pair": conv.pair_answer("fake", "left", LOG, mask, lang),
    }
    for template, answer in answers.items():
        assert conv.check_answer(template, answer) == [], (template, answer)
        assert (conv.VERDICT[lang]["fake"] + "<cls>" in answer) or template == "json"
        if conv.TOKEN_COUNTS[template][1]:
            assert conv.MASK_RUN in answer
    real = conv.explain_answer("real", {"ops": []}, np.zeros_like(mask), None, lang)
    assert conv.check_answer("explain", real) == [] and conv.VERDICT[lang]["real"] + "<cls>" in real
    assert "12.5" in answers["explain"] and "85" in answers["explain"]


def test_check_answer_reports_bad_tokens():
    good = conv.json_answer("fake", [[1, 1, 9, 1, 9, 9]])
    assert conv.check_answer("json", good.replace("<mask_7>", ""))
    assert conv.check_answer("json", good.replace("<cls>", "<cls><cls>"))
    assert conv.check_answer("json", good.replace("<mask_3><mask_4>", "<mask_4><mask_3>"))
    assert conv.check_answer("conclusion", "Conclusion: fake")


def test_prompt_draws_are_seeded_and_cover_paraphrases():
    draws = [conv.draw_prompt("json", "en", np.random.default_rng(s)) for s in range(50)]
    assert draws == [conv.draw_prompt("json", "en", np.random.default_rng(s)) for s in range(50)]
    assert set(draws) == set(conv.PROMPTS["json"]["en"])
    for template in conv.TEMPLATES:
        for lang in conv.LANGS:
            assert len(conv.PROMPTS[template][lang]) >= 3


def test_to_qwen_messages_structure():
    record = {"messages": conv.make_messages("Is it real?", "real<cls>"), "images": ["k.png"]}
    msgs = conv.to_qwen_messages(record)
    assert msgs[0] == {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Is it real?"}]}
    assert msgs[1] == {"role": "assistant", "content": [{"type": "text", "text": "real<cls>"}]}
    with pytest.raises(ValueError):
        conv.to_qwen_messages({"messages": record["messages"], "images": []})


def test_chat_template_applies_to_every_conversation_in_the_shards(shard_dir):
    from trainer.model.tokens import add_forensic_tokens, build_offline_tokenizer

    tokenizer = build_offline_tokenizer()
    ids = add_forensic_tokens(tokenizer)
    seen_templates = set()
    n = 0
    for shard in shard_paths(shard_dir):
        for key, members in iter_tar_samples(shard):
            record = json.loads(members["json"])
            seen_templates.add(record["template"])
            text = tokenizer.apply_chat_template(conv.to_qwen_messages(record), tokenize=False)
            answer = record["messages"][1]["content"]
            assert text.count("<|vision_start|><|image_pad|><|vision_end|>") == len(record["images"]) == 1
            assert f"<|im_start|>assistant\n{answer}<|im_end|>" in text
            tokens = tokenizer(text, add_special_tokens=False)["input_ids"]
            want_cls, want_mask = conv.TOKEN_COUNTS[record["template"]]
            assert tokens.count(ids["<cls>"]) == want_cls
            assert sum(tokens.count(ids[t]) for t in conv.MASK_TOKENS) == want_mask
            if want_mask:  # the 32 mask ids are contiguous and in order
                start = tokens.index(ids["<mask_1>"])
                assert tokens[start:start + 32] == [ids[t] for t in conv.MASK_TOKENS]
            n += 1
    assert n > 10 and seen_templates == set(conv.TEMPLATES)
