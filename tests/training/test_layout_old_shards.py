"""Shards built before the mask position existed (their manifest records neither position: the notes'
layout) are read, and every answer is moved to the model's layout; shards that record a layout keep it."""

from __future__ import annotations

import json

from forgery_synth.dataset import conversations as conv
from forgery_synth.dataset.answer_tokens import CLS_TOKEN, DEFAULT_MASK_POSITION, MASK_RUN
from trainer.training.data import layout_answer
from trainer.training.dealing import DataOptions
from trainer.training.loop import _new_model_masks, _shards_layout


def test_an_old_answer_is_moved_to_the_models_layout():
    old = conv.json_answer("fake", [[1, 2, 30, 4, 5, 40]])  # the builders' (notes') layout
    assert f"]]{MASK_RUN}" in old and "fake<cls>" in old
    moved = layout_answer(old, DataOptions(cls_position="before-verdict", mask_position="before-answer"))
    assert moved == CLS_TOKEN + MASK_RUN + old.replace(CLS_TOKEN, "").replace(MASK_RUN, "")
    assert conv.check_answer("json", moved, "before-verdict", "before-answer") == []
    assert layout_answer(old, DataOptions()) == old  # no layout given: the shards' place


def test_a_conclusion_answer_keeps_no_mask_tokens():
    answer = conv.conclusion_answer("real", "en")
    moved = layout_answer(answer, DataOptions(cls_position="before-verdict", mask_position="before-answer"))
    assert MASK_RUN not in moved and moved.startswith(CLS_TOKEN)


def test_old_manifest_means_the_notes_layout_and_a_new_model_takes_the_default(tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    new.mkdir()
    (old / "manifest.json").write_text(json.dumps({"options": {"min_pixels": 1, "max_pixels": 2}}))
    (new / "manifest.json").write_text(json.dumps({"options": {"cls_position": "before-verdict",
                                                               "mask_position": "after-region"}}))
    assert _shards_layout(str(old)) == ("after-verdict", "after-region")
    assert _new_model_masks(str(old), "after-region") == DEFAULT_MASK_POSITION == "before-answer"
    assert _shards_layout(str(new)) == ("before-verdict", "after-region")
    assert _new_model_masks(str(new), "after-region") == "after-region"  # recorded: the shards' choice stands
