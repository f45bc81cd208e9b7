"""`forgery predict` and `forgery eval --checkpoint` end to end on a tiny checkpoint built here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_eval_report import check_report
from typer.testing import CliRunner

from cli import app

pytestmark = pytest.mark.slow
runner = CliRunner()


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from trainer.model.build_model import build_forensics_model
    from trainer.model.checkpoint import save_checkpoint

    model, processor = build_forensics_model("tiny", sam="tiny")
    path = tmp_path_factory.mktemp("ckpt") / "tiny"
    save_checkpoint(model, processor, path)
    return path


def test_predict_cli(tiny_checkpoint: Path, tmp_path: Path, make_pair, save_png) -> None:
    a, _ = make_pair(1, 36, 44)
    save_png(tmp_path / "in" / "a.png", a)
    save_png(tmp_path / "in" / "sub" / "b.jpg", make_pair(2, 30, 30)[0])
    (tmp_path / "in" / "broken.png").write_bytes(b"\x89PNG not really")
    out = tmp_path / "out"
    args = ["predict", str(tmp_path / "in"), str(tmp_path / "nope.png"), "--checkpoint", str(tiny_checkpoint),
            "--out", str(out), "--device", "cpu", "--max-new-tokens", "8", "--threshold", "0"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    lines = [json.loads(x) for x in r.stdout.splitlines() if x.startswith("{")]
    by = {Path(x["image"]).name: x for x in lines}
    assert set(by) == {"a.png", "b.jpg", "broken.png", "nope.png"}
    assert "error" in by["broken.png"] and "error" in by["nope.png"]
    for name in ("a.png", "b.jpg"):
        x = by[name]
        assert x["verdict"] in ("fake", "real") and 0.0 <= x["score"] <= 1.0
        assert x["verdict"] == "fake" and x["threshold"] == 0.0  # --threshold 0: every score is above it
        assert set(x["regions"]) == {"text", "mask"} and x["regions"]["mask"] and x["explanation"]
        assert Path(x["mask"]).is_file() and Path(x["overlay"]).is_file()
        assert Path(x["mask"]).name == Path(name).stem + ".mask.png"
    from PIL import Image

    assert Image.open(by["a.png"]["mask"]).size == (44, 36)


def test_predict_bad_options(tiny_checkpoint: Path, tmp_path: Path, make_pair, save_png) -> None:
    save_png(tmp_path / "a.png", make_pair(3)[0])
    assert runner.invoke(app, ["predict", str(tmp_path / "a.png"), "--checkpoint", str(tmp_path / "none")]).exit_code == 2
    assert runner.invoke(app, ["predict", str(tmp_path / "a.png"), "--checkpoint", str(tiny_checkpoint),
                               "--threshold", "1.5"]).exit_code == 2


def test_predict_no_image_found_is_one_outcome_exit_1(tiny_checkpoint: Path, tmp_path: Path) -> None:
    """A missing file and an empty folder are the same outcome: no image found, exit 1, same message."""
    (tmp_path / "empty").mkdir()
    for target in (tmp_path / "missing.png", tmp_path / "empty"):
        r = runner.invoke(app, ["predict", str(target), "--checkpoint", str(tiny_checkpoint)])
        assert r.exit_code == 1 and f"no images found under {target}" in r.output, r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]  # no output folder made


def test_predict_is_quiet_unless_verbose_and_writes_beside_the_photos(tiny_checkpoint: Path, tmp_path: Path,
                                                                       make_pair, save_png) -> None:
    save_png(tmp_path / "photos" / "a.png", make_pair(4, 30, 30)[0])
    base = ["predict", str(tmp_path / "photos"), "--checkpoint", str(tiny_checkpoint), "--device", "cpu",
            "--max-new-tokens", "4", "--threshold", "0"]
    quiet = runner.invoke(app, base)
    assert quiet.exit_code == 0, quiet.output
    assert "Loading weights" not in quiet.output and "Warning" not in quiet.output
    assert "1 image(s) judged: 1 forged, 0 real" in quiet.output
    assert sorted(p.name for p in (tmp_path / "photos").iterdir()) == ["a.png"]
    assert sorted(p.name for p in (tmp_path / "photos-predictions").iterdir()) == ["a.mask.png", "a.overlay.png"]
    loud = runner.invoke(app, base + ["--verbose"])
    assert loud.exit_code == 0 and "Loading weights" in loud.output
    assert (tmp_path / "photos-predictions-2").is_dir()


def test_eval_checkpoint_with_perturbations(tiny_checkpoint: Path, tmp_path: Path, samples_dir) -> None:
    samples_dir(tmp_path / "samples", n_fake=2, n_real=1)
    out = tmp_path / "eval"
    r = runner.invoke(app, ["eval", "--checkpoint", str(tiny_checkpoint), "--data", str(tmp_path / "samples"),
                            "--out", str(out), "--device", "cpu", "--max-new-tokens", "8", "--perturb", "jpeg:50", "noise:5"])
    assert r.exit_code == 0, r.output
    m = json.loads((out / "metrics.json").read_text())
    assert m["image"]["n"] == 3 and m["counts"]["score_sources"] == {"cls": 3}
    assert m["pixel"]["n"] == 2 and m["pixel"]["f1"] is not None
    assert m["authentic"]["n"] == 1
    assert m["text"]["n"] == 3 and m["text"]["json_valid_rate"] is not None
    assert set(m["robustness"]["conditions"]) == {"jpeg:50", "noise:5"}
    assert m["run"]["checkpoint"] == str(tiny_checkpoint)
    recs = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(recs) == 3 and all(Path(x["extra"]["pred_mask"]).is_file() for x in recs)
    check_report(out)
    # the saved masks can be re-scored as another detector's predictions, with the same pixel figures
    out2 = tmp_path / "eval2"
    r2 = runner.invoke(app, ["eval", "--predictions", str(out / "masks"), "--data", str(tmp_path / "samples"),
                             "--out", str(out2)])
    assert r2.exit_code == 0, r2.output
    m2 = json.loads((out2 / "metrics.json").read_text())
    assert m2["pixel"]["f1"] == pytest.approx(m["pixel"]["f1"], abs=0.05)


def test_model_predictor_matches_between_eval_and_predict(tiny_checkpoint: Path, tmp_path: Path, make_pair, save_png,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """`forgery eval --checkpoint` and `forgery predict` give each image the same score, answer and mask.

    The images have different sizes and each command batches them differently (eval in index order,
    predict in the reverse order), so an image's result must not depend on which images share its batch.
    """
    from PIL import Image

    import trainer.evaluation.predict as predict_mod
    from trainer.evaluation.examples import ExampleKeeper

    data = tmp_path / "samples"
    sizes = {"s00": (40, 48), "s01": (32, 32), "s02": (48, 40)}
    rows = []
    for i, (sid, (h, w)) in enumerate(sizes.items()):
        img, m = make_pair(400 + i, h, w)
        save_png(data / "images" / f"{sid}.png", img)
        save_png(data / "masks" / f"{sid}.png", m)
        rows.append({"id": sid, "image": f"images/{sid}.png", "mask": f"masks/{sid}.png", "label": "fake"})
    (data / "index.jsonl").write_text("".join(json.dumps(x) + "\n" for x in rows))
    # The float masks each command computes, caught just before they are written as 8-bit PNGs.
    eval_masks: dict[str, np.ndarray] = {}
    predict_masks: dict[str, np.ndarray] = {}
    offer, write = ExampleKeeper.offer, predict_mod._write_outputs

    def spy_offer(self, rec, image, gt, pred):
        eval_masks[rec.id] = pred.copy()
        return offer(self, rec, image, gt, pred)

    def spy_write(path, image, r, o, stem):
        predict_masks[Path(path).stem] = r.mask.copy()
        return write(path, image, r, o, stem)

    monkeypatch.setattr(ExampleKeeper, "offer", spy_offer)
    monkeypatch.setattr(predict_mod, "_write_outputs", spy_write)
    # --threshold 0: every image is judged forged, so predict writes every mask and its regions
    common = ["--checkpoint", str(tiny_checkpoint), "--device", "cpu", "--max-new-tokens", "8", "--batch-size", "2",
              "--threshold", "0"]
    r = runner.invoke(app, ["eval", "--data", str(data), "--out", str(tmp_path / "eval"), *common])
    assert r.exit_code == 0, r.output
    images = [str(data / "images" / f"{sid}.png") for sid in reversed(sizes)]
    r2 = runner.invoke(app, ["predict", *images, "--out", str(tmp_path / "pred"), *common])
    assert r2.exit_code == 0, r2.output

    recs = {x["id"]: x for x in map(json.loads, (tmp_path / "eval" / "predictions.jsonl").read_text().splitlines())}
    lines = {Path(x["image"]).stem: x for x in map(json.loads, r2.stdout.splitlines()) if "error" not in x}
    assert set(recs) == set(lines) == set(eval_masks) == set(predict_masks) == set(sizes)
    for sid, (h, w) in sizes.items():
        rec, line = recs[sid], lines[sid]
        assert rec["error"] is None
        assert rec["score"] == line["score"], sid
        assert (rec["text"] or predict_mod.NO_EXPLANATION) == line["explanation"], sid
        assert rec["text_verdict"] == line["text_verdict"] and line["verdict"] == "fake", sid
        assert rec["json_valid"] == line["json_valid"] and rec["extra"]["consistent"] == line["consistent"], sid
        assert eval_masks[sid].shape == predict_masks[sid].shape == (h, w), sid
        assert np.allclose(eval_masks[sid], predict_masks[sid], rtol=0, atol=1e-6), (
            sid, float(np.abs(eval_masks[sid] - predict_masks[sid]).max()))
        assert rec["extra"]["mask_polygons"] == line["regions"]["mask"], sid
        saved_eval = np.asarray(Image.open(rec["extra"]["pred_mask"]))
        saved_predict = np.asarray(Image.open(line["mask"]))
        assert np.array_equal(saved_eval, saved_predict), sid
