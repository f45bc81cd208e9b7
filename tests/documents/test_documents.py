"""Synthetic documents: deterministic pages, field boxes that hold their ink, CJK glyphs that are
glyphs, `forgery documents` exit codes, text lines found where the fields are."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from PIL import Image, ImageDraw
from typer.testing import CliRunner

from cli import app
from forgery_synth.documents.fonts import load_font
from forgery_synth.documents.layouts import KINDS, LANGS, LOCALES, build_page
from forgery_synth.documents.render import apply_chain, draw_chain, draw_page, render_page
from forgery_synth.documents.sidecar import read_layout
from forgery_synth.documents.text_lines import detect_text_lines

runner = CliRunner()


def test_render_is_deterministic_by_seed():
    a, la = render_page("invoice", "zh", 7)
    b, lb = render_page("invoice", "zh", 7)
    c, lc = render_page("invoice", "zh", 8)
    assert np.array_equal(a, b) and la == lb
    assert not np.array_equal(a, c) and la["fields"] != lc["fields"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("lang", LANGS)
def test_field_boxes_hold_every_pixel_of_their_ink(kind, lang):
    """The page drawn with and without one field's text, through the same chain: every pixel that
    differs lies inside that field's box in the final frame."""
    from faker import Faker

    def page():
        rng = np.random.default_rng(3)
        fake = Faker(LOCALES[lang])
        fake.seed_instance(5)
        return build_page(kind, lang, rng, fake), rng

    full, rng = page()
    chain = draw_chain(rng, full.size)
    image, fields = apply_chain(*draw_page(full, None), chain)
    texts = [t for t in full.texts if t.field]
    assert len(fields) >= len(texts) >= 4
    for k, text in enumerate(texts):
        bare, _ = page()
        bare.texts = [dataclasses.replace(t, text="") if i == full.texts.index(text) else t for i, t in enumerate(bare.texts)]
        without, _ = apply_chain(*draw_page(bare, None), chain)
        changed = np.any(image != without, axis=-1)
        x0, y0, x1, y1 = fields[k]["box"]
        inside = np.zeros_like(changed)
        inside[y0:y1, x0:x1] = True
        assert changed.any(), f"{text.field}: drew nothing"
        assert not (changed & ~inside).any(), f"{text.field}: ink outside its box {fields[k]['box']}"
        assert fields[k]["text"] == text.text and fields[k]["en"] and fields[k]["zh"]


def _glyph(ch: str) -> np.ndarray:
    im = Image.new("L", (48, 48), 0)
    ImageDraw.Draw(im).text((4, 4), ch, font=load_font("sans", 36), fill=255)
    return np.asarray(im)


def test_cjk_glyphs_are_not_tofu():
    """Two different Chinese characters draw differently, and neither as the font's missing-glyph box."""
    a, b, missing = _glyph("姓"), _glyph("证"), _glyph("\U000f0000")
    assert a.any() and b.any()
    assert (np.abs(a.astype(int) - b).mean()) > 10
    assert not np.array_equal(a, missing) and not np.array_equal(b, missing)


def test_text_lines_are_found_on_the_fields(document):
    """OpenCV's text lines cover the fields of rendered pages (fields of two characters or more)."""
    for kind, lang in (("id-card", "zh"), ("invoice", "en"), ("certificate", "zh")):
        image, layout = document(kind, lang, 4)
        lines = detect_text_lines(image)
        fields = [f for f in layout["fields"] if f["name"] != "seal" and len(f["text"]) >= 2]
        found = 0
        for f in fields:
            cx, cy = (f["box"][0] + f["box"][2]) / 2, (f["box"][1] + f["box"][3]) / 2
            found += any(x0 <= cx <= x1 and y0 <= cy <= y1 for x0, y0, x1, y1 in lines)
        assert found >= 0.8 * len(fields), f"{kind}/{lang}: {found} of {len(fields)} fields on a detected line"


def test_documents_cli_writes_pages_and_layouts(tmp_path):
    out = tmp_path / "docs"
    result = runner.invoke(app, ["documents", "--out", str(out), "--count", "3", "--kind", "id-card,certificate",
                                 "--lang", "en", "--seed", "4"])
    assert result.exit_code == 0, result.output
    layouts = sorted(out.glob("*.layout.json"))
    assert len(layouts) == 3 and len(list(out.glob("*.png"))) == 3
    for path in layouts:
        layout = json.loads(path.read_text(encoding="utf-8"))
        assert {"kind", "lang", "fields", "seed", "chain", "size", "sha256", "image"} <= set(layout)
        assert layout["lang"] == "en" and layout["kind"] in ("id-card", "certificate")
        assert [s["op"] for s in layout["chain"]] == ["perspective", "blur", "noise"]
        image_path = out / layout["image"]
        from forgery_synth.synthesis.loading import load_image

        loaded = load_image(image_path)
        assert read_layout(image_path, loaded.sha256, loaded.size) == layout
        assert read_layout(image_path, "0" * 64, loaded.size) is None  # another image: no layout
    again = runner.invoke(app, ["documents", "--out", str(out), "--count", "3", "--kind", "id-card,certificate",
                                "--lang", "en", "--seed", "4"])
    assert again.exit_code == 0 and "3 already present" in again.output


def test_documents_cli_portraits(tmp_path, donor_photo):
    portraits = tmp_path / "faces"
    portraits.mkdir()
    Image.fromarray(donor_photo).save(portraits / "cat.png")
    out = tmp_path / "docs"
    result = runner.invoke(app, ["documents", "--out", str(out), "--count", "1", "--kind", "id-card",
                                 "--portraits", str(portraits)])
    assert result.exit_code == 0, result.output
    layout = json.loads(next(out.glob("*.layout.json")).read_text(encoding="utf-8"))
    assert layout["portrait"].endswith("cat.png")


@pytest.mark.parametrize("args", [["--kind", "passport"], ["--lang", "fr"], ["--count", "0"],
                                  ["--portraits", "/nonexistent/faces"]])
def test_documents_cli_refuses_bad_options(tmp_path, args):
    result = runner.invoke(app, ["documents", "--out", str(tmp_path / "o"), *args])
    assert result.exit_code == 2, result.output
    assert not list((tmp_path / "o").glob("*.png")) if (tmp_path / "o").exists() else True


def test_empty_portraits_folder_is_refused(tmp_path):
    (tmp_path / "faces").mkdir()
    result = runner.invoke(app, ["documents", "--out", str(tmp_path / "o"), "--kind", "id-card", "--portraits",
                                 str(tmp_path / "faces")])
    assert result.exit_code == 2 and "no image files" in result.output
