"""The synthesis job: determinism, resume, parts, post chain, EXIF, replay, honesty end to end."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import piexif
import pytest
from PIL import Image

from forgery_synth.methods import METHODS
from forgery_synth.methods.inpaint_config import InpaintConfig
from forgery_synth.synthesis.engine import synthesize
from forgery_synth.synthesis.loading import load_image
from forgery_synth.synthesis.options import SynthOptions
from forgery_synth.synthesis.render import ReplayError, replay


def _files(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def _index(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "index.jsonl").read_text().splitlines()]


def test_sample_directory_contract(tmp_path, photo_dir):
    out = tmp_path / "out"
    report = synthesize([photo_dir], out, SynthOptions(method="mixed", count=2, seed=3))
    assert report.written == 8 and not report.rejects
    index = _index(out)
    assert [e["id"] for e in index] == sorted(e["id"] for e in index)
    for e in index:
        assert set(e) == {"id", "image", "mask", "log", "label", "method"}
        assert "." not in e["id"]
        log = json.loads((out / e["log"]).read_text())
        assert {"id", "label", "seed", "version", "source", "ops", "mask_area"} <= set(log)
        assert log["source"]["sha256"] and log["source"]["size"] and "exif" in log["source"]
        assert log["source"]["camera"] == ""  # the bundled photos carry no EXIF camera
        assert e["method"] == log["method"] == log["ops"][0]["op"] and e["label"] == "fake"
        image, mask = Image.open(out / e["image"]), Image.open(out / e["mask"])
        assert image.size == mask.size == tuple(log["source"]["size"])
        assert (out / "masks" / f"{e['id']}.edge.png").exists()
        assert abs(log["mask_area"] - (np.asarray(mask) > 0).mean()) < 1e-5
    assert (out / "rejects.jsonl").read_text() == ""
    assert not list(out.rglob("*.tmp"))


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_is_honest_and_replays_byte_for_byte(tmp_path, photo_dir, portrait_dir, name):
    out = tmp_path / "out"
    tiny = InpaintConfig("tiny", device="cpu", steps=1) if METHODS[name].needs_model else None
    portrait = METHODS[name].subject == "portrait"  # the two portraits, each the other's donor
    synthesize([portrait_dir if portrait else photo_dir], out, SynthOptions(method=name, count=2, seed=11, inpaint=tiny))
    index = _index(out)
    rejects = [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]
    assert len(index) + len(rejects) == (4 if portrait else 8) and len(index) >= (2 if portrait else 4)  # a trace no photo region shows is rejected, said why
    assert all("visibly" in r["error"] for r in rejects)
    for e in index:
        log = json.loads((out / e["log"]).read_text())
        source = load_image(log["source"]["path"]).rgb
        image = np.asarray(Image.open(out / e["image"]).convert("RGB"))
        inside = np.asarray(Image.open(out / e["mask"])) > 0
        changed = np.any(image != source, axis=-1)
        visible = (np.abs(image.astype(int) - source.astype(int)) > 2).any(axis=-1)
        assert not np.any(changed & ~inside)
        assert visible[inside].mean() >= 0.5
        assert log["measured"]["visible_change"] == pytest.approx(visible[inside].mean(), abs=1e-4)
        sample = replay(log, log["source"]["path"], log.get("donor", {}).get("path"))
        assert sample.image_bytes == (out / e["image"]).read_bytes()
        assert np.array_equal(sample.mask, np.asarray(Image.open(out / e["mask"])))


def test_same_bytes_whatever_workers_and_input_order(tmp_path, photo_dir):
    options = SynthOptions(method="mixed", count=2, seed=5, post="jpeg:80-95")
    photos = sorted(photo_dir.iterdir())
    synthesize([photo_dir], tmp_path / "one", options, workers=1)
    synthesize(list(reversed(photos)), tmp_path / "two", options, workers=2)
    assert _files(tmp_path / "one") == _files(tmp_path / "two")


def test_resume_skips_complete_samples_and_redoes_missing(tmp_path, photo_dir):
    out = tmp_path / "out"
    options = SynthOptions(method="copy-move", count=2)
    first = synthesize([photo_dir], out, options)
    before = _files(out)
    second = synthesize([photo_dir], out, options)
    assert (first.written, second.written, second.skipped) == (8, 0, 8)
    victim = _index(out)[0]["id"]
    (out / "logs" / f"{victim}.json").unlink()  # as if killed before the log was written
    (out / "images" / f"{victim}.png").write_bytes(b"half-written")
    third = synthesize([photo_dir], out, options)
    assert (third.written, third.skipped) == (1, 7)
    assert _files(out) == before


def test_parts_are_disjoint_and_cover_everything(tmp_path, photo_dir):
    options = SynthOptions(method="blur", count=1)
    ids = []
    for i in (1, 2, 3):
        synthesize([photo_dir], tmp_path / f"part{i}", options, part=(i, 3))
        ids.append({e["id"] for e in _index(tmp_path / f"part{i}")})
    synthesize([photo_dir], tmp_path / "all", options)
    everything = {e["id"] for e in _index(tmp_path / "all")}
    assert set.union(*ids) == everything
    assert sum(len(s) for s in ids) == len(everything)


def test_global_post_never_makes_fake_and_never_touches_mask(tmp_path, photo_dir):
    out = tmp_path / "real"
    synthesize([photo_dir], out, SynthOptions(method="authentic", count=1, post="noise:1-2,jpeg:70-90"))
    for e in _index(out):
        log = json.loads((out / e["log"]).read_text())
        assert e["label"] == "real" and log["mask_area"] == 0
        assert e["image"].endswith(".jpg")  # the last op is a JPEG: the file is that JPEG
        assert not np.asarray(Image.open(out / e["mask"])).any()
        assert [op["op"] for op in log["ops"]] == ["noise", "jpeg"]
        assert all(op["scope"] == "global" for op in log["ops"])
        assert log["ops"][0]["unit"].startswith("standard deviation")
    fake = tmp_path / "fake"
    synthesize([photo_dir], fake, SynthOptions(method="contrast", count=1, post="resize:0.5-0.5"))
    for e in _index(fake):
        log = json.loads((fake / e["log"]).read_text())
        sample = replay({**log, "ops": log["ops"][:1]}, log["source"]["path"])
        small = np.asarray(Image.open(fake / e["mask"]))
        assert small.shape[1] == round(sample.mask.shape[1] * 0.5)
        assert small.any() and set(np.unique(small)) <= {0, 255}


def test_exif_keep_strip_tamper(tmp_path, photo):
    src = tmp_path / "in"
    src.mkdir()
    exif = piexif.dump({
        "0th": {piexif.ImageIFD.Make: b"Canon", piexif.ImageIFD.Model: b"EOS 80D", piexif.ImageIFD.DateTime: b"2023:05:01 10:00:00"},
        "Exif": {piexif.ExifIFD.DateTimeOriginal: b"2023:05:01 10:00:00"},
    })
    Image.fromarray(photo).save(src / "camera.jpg", quality=95, exif=exif)
    found = {}
    for mode in ("keep", "strip", "tamper"):
        out = tmp_path / mode
        synthesize([src], out, SynthOptions(method="noise", exif=mode))
        e = _index(out)[0]
        log = json.loads((out / e["log"]).read_text())
        assert log["source"]["exif"]["Make"] == "Canon" and log["source"]["exif"]["Model"] == "EOS 80D"
        assert log["source"]["camera"] == "Canon EOS 80D"
        assert log["output"]["exif"]["mode"] == mode
        found[mode] = Image.open(out / e["image"]).getexif()
    assert found["keep"][271] == "Canon" and found["keep"][306] == "2023:05:01 10:00:00"
    assert len(found["strip"]) == 0
    assert found["tamper"][271] == "Canon"
    assert found["tamper"][305] in __import__("forgery_synth.synthesis.exif", fromlist=["EDITORS"]).EDITORS
    assert found["tamper"][306] != "2023:05:01 10:00:00"


def test_splice_replay_needs_the_right_donor(tmp_path, photo_dir):
    out = tmp_path / "out"
    synthesize([photo_dir], out, SynthOptions(method="splice", count=1))
    log = json.loads((out / _index(out)[0]["log"]).read_text())
    donor = log["donor"]["path"]
    assert Path(donor).parent == photo_dir and log["donor"]["sha256"] != log["source"]["sha256"]
    wrong = next(p for p in photo_dir.iterdir() if str(p) not in (donor, log["source"]["path"]))
    with pytest.raises(ReplayError, match="sha256") as err:
        replay(log, log["source"]["path"], wrong)
    assert err.value.option == "--donor" and donor in str(err.value)  # names the photo the log expects
    with pytest.raises(ReplayError, match="sha256") as err:
        replay(log, wrong, donor)
    assert err.value.option == "--source" and log["source"]["path"] in str(err.value)


def test_donor_folder_option(tmp_path, photo_dir, donor_photo):
    donors = tmp_path / "donors"
    donors.mkdir()
    Image.fromarray(donor_photo[::-1].copy()).save(donors / "flipped.png")
    out = tmp_path / "out"
    synthesize([photo_dir], out, SynthOptions(method="splice"), donors=[donors])
    for e in _index(out):
        assert json.loads((out / e["log"]).read_text())["donor"]["path"] == str(donors / "flipped.png")


def _grey_text_page(document) -> np.ndarray:
    page = document("invoice", "en", 2)[0]
    return np.repeat(np.asarray(Image.fromarray(page).convert("L"))[..., None], 3, axis=2)


def test_a_grey_text_page_donor_never_lands_in_a_colour_photo(tmp_path, photo_dir, document):
    """Donors match the source's colour mode: with a grey text page and a colour photo in the donor
    folder, every splice of a colour photo takes the colour one, and the log says the donor's mode."""
    donors = tmp_path / "donors"
    donors.mkdir()
    Image.fromarray(_grey_text_page(document)).save(donors / "grey-page.png")
    Image.fromarray(np.asarray(Image.open(photo_dir / "chelsea.png"))[::-1].copy()).save(donors / "colour.png")
    out = tmp_path / "out"
    synthesize([photo_dir], out, SynthOptions(method="splice", count=3), donors=[donors])
    logs = [json.loads((out / e["log"]).read_text()) for e in _index(out)]
    assert len(logs) == 12
    for log in logs:
        assert log["donor"]["path"] == str(donors / "colour.png"), log["source"]["path"]
        assert log["donor"]["grey"] is False and log["donor"]["made_grey"] is False


def test_colour_photo_with_only_grey_donors_is_rejected_with_the_reason(tmp_path, photo_dir, document):
    donors = tmp_path / "donors"
    donors.mkdir()
    Image.fromarray(_grey_text_page(document)).save(donors / "grey-page.png")
    report = synthesize([photo_dir / "coffee.png"], tmp_path / "out", SynthOptions(method="splice"), donors=[donors])
    assert report.written == 0 and "colour photo takes only colour donors" in report.rejects[0]["error"]


def test_a_colour_donor_in_a_grey_photo_is_made_grey_and_logged(tmp_path, photo_dir):
    greys = tmp_path / "greys"
    greys.mkdir()
    Image.open(photo_dir / "coffee.png").convert("L").save(greys / "coffee-grey.png")
    out = tmp_path / "out"
    synthesize([greys], out, SynthOptions(method="splice", count=2), donors=[photo_dir / "chelsea.png"])
    for e in _index(out):
        log = json.loads((out / e["log"]).read_text())
        assert log["source"]["grey"] and log["donor"]["made_grey"] and not log["donor"]["grey"]
        image = np.asarray(Image.open(out / e["image"]).convert("RGB"))
        assert (image[..., 0] == image[..., 1]).all() and (image[..., 1] == image[..., 2]).all()


def test_single_input_splice_is_rejected_not_crashed(tmp_path, photo_dir):
    one = tmp_path / "one"
    one.mkdir()
    shutil.copy(next(photo_dir.iterdir()), one)
    report = synthesize([one], tmp_path / "out", SynthOptions(method="splice"))
    assert report.written == 0 and "donor" in report.rejects[0]["error"]
    mixed = synthesize([one], tmp_path / "mixed", SynthOptions(method="mixed", count=4))
    assert mixed.written == 4  # splice is left out of the draw when no other donor exists


@pytest.mark.parametrize("scale", ["0.5-0.5", "0.37-0.37", "1.6-1.6"])
def test_global_resize_keeps_the_mask_honest(tmp_path, photo_dir, scale):
    """After a whole-image resize, every pixel that differs from the resized source is in the mask."""
    from forgery_synth.synthesis.post import apply_global

    out = tmp_path / "out"
    synthesize([photo_dir], out, SynthOptions(method="copy-move", count=2, seed=5, post=f"resize:{scale}"))
    for e in _index(out):
        log = json.loads((out / e["log"]).read_text())
        reference, _ = apply_global(load_image(log["source"]["path"]).rgb, [], log["ops"][1])
        image = np.asarray(Image.open(out / e["image"]).convert("RGB"))
        inside = np.asarray(Image.open(out / e["mask"])) > 0
        assert image.shape[:2] == inside.shape
        assert not np.any(np.any(image != reference, axis=-1) & ~inside)


def test_post_chain_that_shrinks_below_64_px_is_rejected(tmp_path, photo_dir):
    report = synthesize([photo_dir], tmp_path / "out", SynthOptions(method="blur", post="resize:0.1-0.1"))
    assert report.written == 0
    assert all("below 64 px" in r["error"] for r in report.rejects)


def test_several_edits_per_image_log_each_region_and_mask_their_union(tmp_path, photo_dir):
    from forgery_synth.synthesis.regions import rasterize

    out = tmp_path / "ops"
    synthesize([photo_dir], out, SynthOptions(method="mixed", count=3, seed=4, ops=(2, 3)))
    index = _index(out)
    assert index
    for e in index:
        log = json.loads((out / e["log"]).read_text())
        local = [op for op in log["ops"] if op.get("scope") != "global"]
        assert 2 <= len(local) <= 3
        mask = np.asarray(Image.open(out / e["mask"])) > 0
        for op in local:  # every edit's region lies in the union mask (copy-move/splice mark their target)
            if op["op"] not in ("copy-move", "splice"):
                assert mask[rasterize(op["region"], mask.shape)].all()
        assert e["method"] == (local[0]["op"] if len({op["op"] for op in local}) == 1 else "mixed")
        sample = replay(log, log["source"]["path"], log.get("donor", {}).get("path"))
        assert sample.image_bytes == (out / e["image"]).read_bytes()


def test_ops_option_is_checked(tmp_path, photo_dir):
    with pytest.raises(ValueError, match="--ops"):
        synthesize([photo_dir], tmp_path / "bad", SynthOptions(ops=(3, 2)))
