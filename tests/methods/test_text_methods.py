"""The text methods: old and new text in the log, place kinds and field names, the scan path
(text lines, old text unknown), rejection of a page without text, exact replay through the engine."""

from __future__ import annotations

import datetime
import json

import numpy as np
import pytest
from PIL import Image

from forgery_synth.methods import METHODS, MIXED_WEIGHTS, MethodOptions
from forgery_synth.methods.text_edit import NoText

TEXT_METHODS = sorted(n for n, m in METHODS.items() if m.subject == "document")
PLACE_KINDS = {"field", "digits", "seal", "text-line"}


def _params(name, image, layout, donor, seed):
    return METHODS[name].get_params(image, np.random.default_rng(seed), MethodOptions(layout=layout), donor)


def test_the_four_text_methods_are_registered_for_documents_and_out_of_mixed():
    assert TEXT_METHODS == ["text-copy-move", "text-erase", "text-replace", "text-splice"]
    assert not set(TEXT_METHODS) & set(MIXED_WEIGHTS)
    assert all(METHODS[n].subject == "any" for n in ("copy-move", "splice", "erase", "blur"))


@pytest.mark.parametrize("name", TEXT_METHODS)
def test_layout_places_log_kind_field_names_and_text(name, document_page, document_donor):
    image, layout = document_page
    texts = {f["text"] for f in layout["fields"]}
    for seed in range(4):
        params = _params(name, image, layout, document_donor[0], seed)
        place = params["place"]
        assert place["kind"] in PLACE_KINDS and params["places_from"] == "layout"
        assert isinstance(params["old_text"], str) and isinstance(params["new_text"], str)
        if place["kind"] != "seal":
            assert place["field"]["en"] and place["field"]["zh"]
            assert any("\u4e00" <= ch <= "\u9fff" for ch in place["field"]["zh"])
        if name == "text-replace":
            assert params["old_text"] in texts and params["new_text"] != params["old_text"]
            if place["kind"] == "digits":
                assert len(params["new_text"]) == len(params["old_text"])
        if name == "text-copy-move":
            assert params["old_text"] != params["new_text"] and params["new_text"] in "".join(texts)
        if name == "text-erase":
            assert params["old_text"] in texts and params["new_text"] == ""
        if name == "text-splice" and place["kind"] == "seal":
            assert params["new_text"] and params["old_text"] == ""


def test_text_replace_digits_stay_digits(document_page):
    image, layout = document_page
    digit_edits = 0
    for seed in range(12):
        params = _params("text-replace", image, layout, None, seed)
        if params["place"]["kind"] == "digits":
            digit_edits += 1
            assert params["new_chars"].isdigit() and params["old_chars"].isdigit()
    assert digit_edits


DOCUMENTS = [(kind, lang) for kind in ("id-card", "invoice", "certificate") for lang in ("zh", "en")]
DATE_FORMATS = ("%Y年%m月%d日", "%Y-%m-%d", "%d %b %Y", "%d %B %Y")


def _only(layout: dict, keys: tuple[str, ...]) -> dict:
    return {**layout, "fields": [f for f in layout["fields"] if f["name"] in keys]}


def _is_date(text: str) -> bool:
    for fmt in DATE_FORMATS:
        try:
            datetime.datetime.strptime(text, fmt)
            return True
        except ValueError:
            continue
    return False


@pytest.mark.parametrize("kind,lang", DOCUMENTS)
def test_text_replace_dates_are_dates_that_exist_in_the_fields_format(kind, lang, document):
    """No "2024年06月56日": every new date parses, in the same format as the old one (same length
    class, same separators), and differs from it."""
    image, layout = document(kind, lang, 3)
    dates = _only(layout, ("birth", "date", "expiry"))
    assert dates["fields"]
    for seed in range(25):
        params = _params("text-replace", image, dates, None, seed)
        old, new = params["old_text"], params["new_text"]
        assert _is_date(old) and _is_date(new), (old, new)
        assert new != old and [c for c in new if not c.isalnum()] == [c for c in old if not c.isalnum()]


@pytest.mark.parametrize("kind,lang", [("id-card", "zh"), ("id-card", "en"), ("certificate", "zh"), ("certificate", "en")])
def test_text_replace_names_come_from_fakers_names(kind, lang, document):
    """No "Robertlgwn": a name field's new text is a faker first name and last name of the page's locale."""
    from faker.providers.person.en_US import Provider as En
    from faker.providers.person.zh_CN import Provider as Zh

    image, layout = document(kind, lang, 4)
    names = _only(layout, ("name", "recipient"))
    assert names["fields"]
    for seed in range(25):
        params = _params("text-replace", image, names, None, seed)
        new = params["new_text"]
        assert new != params["old_text"] and params["place"]["kind"] == "field"
        if lang == "zh":
            assert any(new[len(last):] in Zh.first_names for last in Zh.last_names if new.startswith(last)), new
        else:
            first, last = new.title().split(" ")
            assert first in En.first_names and last in En.last_names, new
            assert new.isupper() == params["old_text"].isupper()


@pytest.mark.parametrize("kind,lang", DOCUMENTS)
def test_text_replace_digit_fields_keep_their_format(kind, lang, document):
    """Numbers change digits into digits; every other character of the field stays."""
    image, layout = document(kind, lang, 5)
    numbers = _only(layout, ("id_number", "invoice_number", "quantity", "amount", "total", "certificate_number"))
    for seed in range(12):
        params = _params("text-replace", image, numbers, None, seed)
        old, new = params["old_text"], params["new_text"]
        assert len(new) == len(old) and new != old and params["place"]["kind"] == "digits"
        assert all(a == b or (a.isdigit() and b.isdigit()) for a, b in zip(old, new)), (old, new)


@pytest.mark.parametrize("kind,lang", DOCUMENTS)
def test_text_copy_move_copies_digits_and_keeps_dates_real(kind, lang, document):
    image, layout = document(kind, lang, 6)
    for seed in range(20):
        try:
            params = _params("text-copy-move", image, layout, None, seed)
        except NoText:
            continue
        assert params["old_text"].isdigit() and params["new_text"].isdigit()
        if _is_date(params["field_text"]):
            assert _is_date(params["new_field_text"]), params["new_field_text"]


@pytest.mark.parametrize("name", TEXT_METHODS)
def test_scans_use_detected_text_lines(name, document_page, document_donor):
    """Without a layout (a user's scan) the places are OpenCV text lines; the old text is unknown: ""."""
    image, _ = document_page
    for seed in range(3):
        params = _params(name, image, None, document_donor[0], seed)
        assert params.get("places_from", "text-lines") == "text-lines"
        assert params["place"]["kind"] in ("text-line", "seal") and "field" not in params["place"]
        assert params["old_text"] == ""
        forgery = METHODS[name].apply(image, json.loads(json.dumps(params)), document_donor[0])
        changed = np.any(forgery.image != image, axis=-1)
        assert changed.any() and not (changed & (forgery.mask == 0)).any()


@pytest.mark.parametrize("name", TEXT_METHODS)
def test_page_without_text_is_rejected(name, document_donor):
    paper = np.full((300, 400, 3), 236, np.uint8)
    with pytest.raises(NoText, match="no text lines"):
        _params(name, paper, None, document_donor[0], 0)


def test_seal_mask_is_exactly_its_ink(document_page, document_donor):
    image, layout = document_page
    for seed in range(20):
        params = _params("text-splice", image, layout, document_donor[0], seed)
        if params["what"] == "seal":
            break
    else:
        pytest.fail("no seal in 20 draws")
    forgery = METHODS["text-splice"].apply(image, params, document_donor[0])
    assert np.array_equal(forgery.mask > 0, np.any(forgery.image != image, axis=-1))


def _write_pages(folder, document):
    folder.mkdir()
    import hashlib

    for kind, lang in (("id-card", "zh"), ("invoice", "en")):
        image, layout = document(kind, lang, 9)
        path = folder / f"{kind}-{lang}.png"
        Image.fromarray(image).save(path)
        layout = {**layout, "image": path.name, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
        (folder / f"{kind}-{lang}.layout.json").write_text(json.dumps(layout, ensure_ascii=False))


@pytest.mark.parametrize("name", TEXT_METHODS)
def test_engine_reads_the_layout_and_replays_exactly(name, tmp_path, document):
    from forgery_synth.synthesis.engine import synthesize
    from forgery_synth.synthesis.options import SynthOptions
    from forgery_synth.synthesis.render import replay

    pages = tmp_path / "pages"
    _write_pages(pages, document)
    (pages / "blank.png").parent.mkdir(exist_ok=True)
    Image.fromarray(np.full((200, 300, 3), 240, np.uint8)).save(pages / "blank.png")
    out = tmp_path / "out"
    report = synthesize([pages], out, SynthOptions(method=name, count=1, seed=1, post="jpeg:90-95"))
    assert report.written == 2
    assert [r["path"].endswith("blank.png") and "no text lines" in r["error"] for r in report.rejects] == [True]
    for log_path in sorted((out / "logs").glob("*.json")):
        log = json.loads(log_path.read_text())
        op = log["ops"][0]
        assert op["op"] == name and op["place"]["kind"] in PLACE_KINDS
        if op["place"]["kind"] != "seal":
            assert op["places_from"] == "layout" and "field" in op["place"]
        sample = replay(log, log["source"]["path"], log.get("donor", {}).get("path"))
        image_file = out / "images" / f"{log['id']}.{log['output']['format']}"
        assert sample.image_bytes == image_file.read_bytes()
        assert log["measured"]["visible_change"] >= 0.5
