"""What the heads read must be what inference gives them: with the image fixed and only the answer
text varied, the cls score and the mask do not move (default layout), and an authentic image scored
with a forged sample's answer draws nothing it did not draw before. Under the notes' layout
(``after-region``) the mask states read the polygon of the answer: the test shows that too, so it
can tell the two layouts apart."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from forgery_synth.dataset.answer_tokens import MASK_RUN, forensic_prefix

ANSWERS = (
    '{"result": "fake", "mask": [[4, 4, 40, 4, 40, 40, 4, 40]]}',
    '{"result": "real", "mask": []}',
    "",
    "Forged region: none; forensic basis: the noise is the same everywhere; conclusion: real",
    '{"result": "fake", "mask": [[0, 0, 55, 0, 55, 55]]} ITHERITHER',
)


def _trained_on_polygons(model) -> None:
    """Make the mask head follow what its states see: big random head weights, so any difference
    in the states at the mask tokens shows in the mask (a trained head reads them like this)."""
    with torch.no_grad():
        torch.manual_seed(0)
        for p in model.mask_head.parameters():
            p.normal_(0, 0.5)
        for p in model.cls_head.parameters():
            p.normal_(0, 0.5)


def _outputs(model, processor, image, prompt, answers):
    results = model.score_batch(processor, [image] * len(answers), prompt, list(answers))
    return [r.cls_prob for r in results], [r.mask_prob for r in results]


def test_heads_do_not_read_the_answer_text(tiny_model, tiny_processor, make_sample, prompt):
    model = tiny_model()
    _trained_on_polygons(model)
    image, _ = make_sample(5, (56, 56), fake=False)
    probs, masks = _outputs(model, tiny_processor(), image, prompt, ANSWERS)
    assert max(probs) - min(probs) < 1e-5, probs
    for m in masks[1:]:
        assert np.abs(m - masks[0]).max() < 1e-5


def test_authentic_image_with_a_forged_answer_draws_nothing_new(tiny_model, tiny_processor, make_sample, prompt):
    model = tiny_model()
    _trained_on_polygons(model)
    image, _ = make_sample(6, (56, 56), fake=False)
    (p_real, p_fake), (m_real, m_fake) = _outputs(model, tiny_processor(), image, prompt, (ANSWERS[1], ANSWERS[0]))
    assert np.array_equal(m_fake > 0.5, m_real > 0.5)
    assert p_fake == pytest.approx(p_real, abs=1e-6)


def test_the_notes_layout_reads_the_answer(tiny_model, tiny_processor, make_sample, prompt):
    """The control: after-verdict / after-region, the same model and image give other heads' outputs
    for other answer texts (the states at the tokens have read them), the failure issue 23 traced."""
    model = tiny_model(cls_position="after-verdict", mask_position="after-region")
    _trained_on_polygons(model)
    image, _ = make_sample(5, (56, 56), fake=False)
    probs, masks = _outputs(model, tiny_processor(), image, prompt, ANSWERS[:2])
    assert abs(probs[0] - probs[1]) > 1e-4
    assert np.abs(masks[0] - masks[1]).max() > 1e-3


def test_generation_starts_after_the_forensic_prefix(tiny_model, tiny_processor, make_sample, prompt, monkeypatch):
    """The generated text follows the tokens every training answer started with: the prompt that
    generate() continues ends with <cls><mask_1..32> under the default layout, with nothing under the
    notes' layout."""
    from PIL import Image

    processor = tiny_processor()
    image, _ = make_sample(7, (56, 56))
    seen = {}
    for layout, prefix in ((("before-verdict", "before-answer"), "<cls>" + MASK_RUN),
                           (("after-verdict", "after-region"), "")):
        model = tiny_model(cls_position=layout[0], mask_position=layout[1])
        assert forensic_prefix(model.config.cls_position, model.config.mask_position) == prefix
        real_generate = model.qwen.generate

        def spy(*args, _real=real_generate, **kw):
            seen["ids"] = kw["input_ids"][0].tolist()
            return _real(*args, **kw)

        monkeypatch.setattr(model.qwen, "generate", spy)
        model.generate_answers(processor, [Image.fromarray(image)], prompt, max_new_tokens=2)
        tail = processor.tokenizer.decode(seen["ids"][-40:], skip_special_tokens=False)
        assert tail.endswith("assistant\n" + prefix), tail[-80:]
