"""Answers that name the place (en and zh), and attention prompts drawn from the source for both labels."""

from __future__ import annotations

import json

import numpy as np
import pytest

from forgery_synth.dataset import conversations as conv
from forgery_synth.dataset.places import PLACE_NAMES, place_name, place_sentences
from forgery_synth.dataset.prompts import FOCUS_PROMPTS
from forgery_synth.dataset.shard_options import ShardOptions
from forgery_synth.dataset.shards import build_shards
from forgery_synth.dataset.tar_shards import iter_tar_samples, shard_paths
from forgery_synth.methods import METHODS, MethodOptions
from forgery_synth.synthesis.engine import synthesize
from forgery_synth.synthesis.options import SynthOptions


def _log(op):
    return {"ops": [op], "source": {"content": "portrait"}}


def test_every_kind_has_english_and_natural_chinese_names():
    field = {"en": "ID number", "zh": "身份证号"}
    names = {k: (place_name({"place": {"kind": k}, "field": field}, "en"), place_name({"place": {"kind": k}, "field": field}, "zh"))
             for k in PLACE_NAMES}
    assert names["field"] == ("the ID number field", "身份证号栏")
    assert names["digits"] == ("the digits of the ID number field", "身份证号栏的数字")
    assert names["hairline"] == ("the hairline", "发际线") and names["eyes"][1] == "瞳孔"
    assert place_name({"place": {"kind": "field"}}, "zh") == "某一栏"  # no field logged: no invented name
    assert place_name({"place": {"kind": "skin", "part": "left cheek"}}, "zh") == "左脸颊的皮肤"
    assert place_name({"op": "blur"}, "en") == ""


def test_catchlight_sentence_says_it_contradicts_the_light(face_photo):
    op = METHODS["catchlight"].get_params(face_photo, np.random.default_rng(1), MethodOptions(), None)
    op.update(action="add", direction="upper right", light="left")
    mask = np.zeros(face_photo.shape[:2], np.uint8)
    en, = place_sentences(_log(op), face_photo, mask, "en")
    zh, = place_sentences(_log(op), face_photo, mask, "zh")
    assert "the pupils" in en and "upper right" in en and "contradicting the light source on the left" in en
    assert "瞳孔反光方向位于右上方" in zh and "与来自左侧的光源方向矛盾" in zh


def test_hairline_sentence_cites_the_measured_softness(face_photo):
    method = METHODS["hairline"]
    op = {**method.get_params(face_photo, np.random.default_rng(2), MethodOptions(), None), "mode": "blur"}
    forgery = method.apply(face_photo, op, None)
    en, = place_sentences(_log(op), forgery.image, forgery.mask, "en")
    zh, = place_sentences(_log(op), forgery.image, forgery.mask, "zh")
    assert en.startswith("a feathering anomaly on the hairline edge: its measured gradient is")
    assert zh.startswith("发际线边缘有羽化异常：实测梯度只有周围的")
    # two local ops: the mask is their union, so nothing measured is cited
    two = place_sentences({"ops": [op, {"op": "blur"}]}, forgery.image, forgery.mask, "en")
    assert two and "measured" not in two[0]


def test_explain_answer_names_the_place(face_photo):
    method = METHODS["skin-retouch"]
    op = method.get_params(face_photo, np.random.default_rng(0), MethodOptions(), None)
    forgery = method.apply(face_photo, op, None)
    for lang in ("en", "zh"):
        evidence = place_sentences(_log(op), forgery.image, forgery.mask, lang)
        answer = conv.explain_answer("fake", _log(op), forgery.mask, 1, lang, 0, evidence)
        assert evidence[0] in answer and conv.check_answer("explain", answer) == []


@pytest.fixture()
def portrait_build(tmp_path, portrait_dir, photo_dir):
    """Shards from portrait forgeries, authentic portraits and authentic scene photos."""
    fakes, reals = tmp_path / "fakes", tmp_path / "reals"
    synthesize([portrait_dir], fakes, SynthOptions(method="catchlight", count=6))
    synthesize([portrait_dir, photo_dir / "coffee.png"], reals, SynthOptions(method="authentic", count=6))
    build_shards(ShardOptions(out=tmp_path / "shards", samples=[fakes, reals], splits=(1.0, 0.0, 0.0), real_ratio=0.5))
    records = []
    for path in shard_paths(tmp_path / "shards"):
        records += [json.loads(members["json"]) for _, members in iter_tar_samples(path)]
    return records


def test_attention_prompts_follow_the_source_for_both_labels(portrait_build):
    focus = {p for t in FOCUS_PROMPTS["portrait"].values() for ps in t.values() for p in ps}
    by_label = {"real": 0, "fake": 0}
    for r in portrait_build:
        prompt = r["messages"][0]["content"].replace("<image>", "")
        content = json.loads(r["log_json"])["source"]["content"]
        if prompt in focus:
            assert content == "portrait"
            by_label[r["label"]] += 1
    assert by_label["real"] > 0 and by_label["fake"] > 0


def test_raw_real_portraits_get_their_content_detected(tmp_path, portrait_dir):
    """`--real` photos have no engine log: their content is detected on the photo and written to log_json."""
    fakes = tmp_path / "fakes"
    synthesize([portrait_dir], fakes, SynthOptions(method="skin-retouch", count=4))
    build_shards(ShardOptions(out=tmp_path / "shards", samples=[fakes], real=[portrait_dir], splits=(1.0, 0.0, 0.0)))
    records = [json.loads(m["json"]) for p in shard_paths(tmp_path / "shards") for _, m in iter_tar_samples(p)]
    raw = [r for r in records if r["key"].startswith("r")]
    assert raw and all(json.loads(r["log_json"])["source"]["content"] == "portrait" for r in raw)
