"""Batched inference (predict/eval --batch-size) gives what one image at a time gives."""

from __future__ import annotations

import numpy as np
from PIL import Image

from trainer.model.build_model import build_forensics_model

PROMPT = "Please analyse whether this image is authentic; answer in JSON."


def test_batched_generate_and_score_match_single_images():
    model, processor = build_forensics_model("tiny", "tiny", seed=0)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (h, w, 3), dtype=np.uint8) for h, w in [(56, 84), (112, 70), (64, 64)]]
    single = [model.generate_answer(processor, Image.fromarray(im), PROMPT, max_new_tokens=8) for im in images]
    batched = model.generate_answers(processor, [Image.fromarray(im) for im in images], PROMPT, max_new_tokens=8)
    assert batched == single
    answers = ['{"result": "fake", "mask": [[1, 2, 30, 4, 20, 40]]}', '{"result": "real", "mask": []}', "Conclusion: fake"]
    one_by_one = [model.score(processor, im, PROMPT, a) for im, a in zip(images, answers)]
    together = model.score_batch(processor, images, PROMPT, answers)
    for a, b, im in zip(one_by_one, together, images):
        assert abs(a.cls_prob - b.cls_prob) < 1e-5
        assert a.answer == b.answer and a.text_verdict == b.text_verdict
        assert b.mask_prob.shape == im.shape[:2]
        # the batch decodes at the largest image's size and resizes: close, not bit-equal
        assert np.abs(a.mask_prob - b.mask_prob).max() < 0.02
