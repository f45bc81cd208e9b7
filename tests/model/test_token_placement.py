"""Inference puts `<cls>` and `<mask_i>` exactly where the shard builder put them in training, for
every cls and mask position, and one verdict reader reads every answer the builder writes."""

from __future__ import annotations

import numpy as np
import pytest

from forgery_synth.dataset import conversations as conv
from forgery_synth.dataset.answer_tokens import (
    CLS_POSITIONS,
    CLS_TOKEN,
    MASK_POSITIONS,
    MASK_RUN,
    forensic_prefix,
    place_cls,
    place_tokens,
    place_forensic_tokens,
    strip_forensic_tokens,
    text_verdict,
)
from trainer.evaluation.answers import parse_answer


def _answers() -> list[tuple[str, str, str]]:
    """(template, label, answer) for every template, language and label the builder writes."""
    mask = np.zeros((60, 80), np.uint8)
    mask[10:30, 20:50] = 255
    log = {"method": "copy-move", "mask_area": 0.12,
           "ops": [{"op": "copy-move", "angle": 12.5, "scale": 0.9, "flip": True, "blend": "poisson"},
                   {"op": "jpeg", "scope": "global", "quality": 85}]}
    out = []
    for lang in conv.LANGS:
        for label in ("fake", "real"):
            out.append(("json", label, conv.json_answer(label, [[1, 2, 30, 4, 5, 40]] if label == "fake" else [])))
            out.append(("explain", label, conv.explain_answer(label, log, mask if label == "fake" else mask * 0, 1, lang)))
            out.append(("conclusion", label, conv.conclusion_answer(label, lang)))
        for side in ("left", "right"):
            for label in ("fake", "real"):
                out.append(("pair", label, conv.pair_answer(label, side, log, mask if label == "fake" else mask * 0, lang)))
    return out


@pytest.mark.parametrize("masks", MASK_POSITIONS)
@pytest.mark.parametrize("position", CLS_POSITIONS)
@pytest.mark.parametrize("template, label, answer", _answers())
def test_training_answers_round_trip(template, label, answer, position, masks):
    trained = place_tokens(answer, position, masks)
    placed = place_forensic_tokens(strip_forensic_tokens(answer), position, masks)
    if template == "conclusion":  # no mask tokens in training; inference adds them
        assert placed.replace(MASK_RUN, "") == trained
    else:
        assert placed == trained
    assert conv.check_answer(template, trained, position, masks) == []
    assert text_verdict(trained) == label and parse_answer(trained).verdict == label
    assert placed.startswith(forensic_prefix(position, masks))  # what inference gives before generating
    if position == "before-verdict":
        assert trained.startswith(CLS_TOKEN)
    elif masks == "after-region":
        assert trained == answer  # the builders write the notes' layout
    if masks == "before-answer" and template != "conclusion":
        assert MASK_RUN in trained[: len(CLS_TOKEN) + len(MASK_RUN)]  # nothing of the answer before them


def test_check_answer_names_a_misplaced_cls():
    after = conv.json_answer("fake", [[1, 2, 30, 4, 5, 40]])
    assert conv.check_answer("json", after, "before-verdict") == [
        "json answer's <cls> is not first in the answer (cls position before-verdict)"]
    assert conv.check_answer("json", place_cls(after, "before-verdict"), "after-verdict")


def test_check_answer_names_misplaced_mask_tokens():
    notes = conv.json_answer("fake", [[1, 2, 30, 4, 5, 40]])
    assert conv.check_answer("json", notes, "after-verdict", "before-answer") == [
        "json answer's mask tokens are not before the answer (mask position before-answer)"]
    leading = place_tokens(notes, "after-verdict", "before-answer")
    assert leading.startswith(MASK_RUN) and conv.check_answer("json", leading, "after-verdict", "before-answer") == []
    assert conv.check_answer("json", leading, "after-verdict", "after-region")


@pytest.mark.parametrize("text, verdict", [
    ("Forged region: none; forensic basis: consistent; difficulty: -; conclusion: real", "real"),
    ("伪造区域：无；取证依据：一致；难度：—；真实性结论：真实", "real"),
    ("The left image is forged and the right one is the authentic photo. Conclusion: fake", "fake"),
    ("Neither image is forged: both show the same authentic photo. Conclusion: real", "real"),
    ('{"result": "real", "mask": []} but it looks forged', "real"),
    ("this image is tampered", "fake"),
    ("no idea", None),
])
def test_one_verdict_reader_for_eval_predict_and_heads(text, verdict):
    """The first verdict word of an explain answer ("Forged region") is not its verdict; eval's parser
    and the heads' consistency check read the same word."""
    assert text_verdict(text) == verdict
    assert parse_answer(text).verdict == verdict


def test_every_answer_of_the_shard_builder_reads_as_its_label(tmp_path, build_small):
    """Shards of every template and language, read back: the one reader gives each sample's label."""
    import json
    import tarfile

    seen = set()
    tars = []
    for template in conv.TEMPLATES:
        shards, _, _ = build_small(tmp_path / template, templates={template: 1.0}, splits=(1.0, 0.0, 0.0))
        tars += sorted(shards.glob("*.tar"))
    for tar in tars:
        with tarfile.open(tar) as tf:
            for member in tf.getmembers():
                if not member.name.endswith(".json"):
                    continue
                record = json.loads(tf.extractfile(member).read())
                answer = record["messages"][1]["content"]
                assert answer.startswith(CLS_TOKEN)  # the default position
                assert text_verdict(answer) == record["label"] == parse_answer(answer).verdict, answer
                seen.add((record["template"], record["lang"], record["label"]))
    assert {(t, lang, label) for t in conv.TEMPLATES for lang in conv.LANGS for label in ("real", "fake")} <= seen
