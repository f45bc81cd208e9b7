"""Issue 23's overfit case through the user's path, at test size: what the model learns survives its
own inference. Eight samples: copy-move forgeries of four scikit-image photos and the four photos
themselves as authentic samples (every photo forged AND authentic, so the verdict cannot come from
which photo it is). `forgery synth`, `build-shards --splits 1,0,0 --templates json:1`, `train --stage 1`
with the CLI's defaults (only the step count and --grad-accum given, as in the issue), then
`forgery eval` on the same samples: answers generated, heads read. The full-size case (the photos at
their own size, stage 1 150 steps + stage 2 250 steps) is bench/overfit.py (bench/README.md)."""

from __future__ import annotations

import json

import pytest
from PIL import Image
from typer.testing import CliRunner

from cli import app

runner = CliRunner()
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")
SIDE = 112
STEPS = 120


def _invoke(args: list[str]) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output[-3000:]


@pytest.mark.slow
def test_overfit_eight_samples_through_forgery_eval(tmp_path):
    from skimage import data

    photos = tmp_path / "photos"
    photos.mkdir()
    for name in PHOTOS:  # small copies, so the test fits CI; the bench runs them at their own size
        im = Image.fromarray(getattr(data, name)()).convert("RGB")
        im.thumbnail((SIDE, SIDE), Image.Resampling.LANCZOS)
        im.save(photos / f"{name}.png")
    _invoke(["synth", str(photos), "--out", str(tmp_path / "samples"), "--method", "copy-move", "--seed", "0"])
    _invoke(["build-shards", str(tmp_path / "samples"), "--real", str(photos), "--out", str(tmp_path / "shards"),
             "--splits", "1,0,0", "--templates", "json:1"])
    _invoke(["train", "--stage", "1", "--data", str(tmp_path / "shards"), "--out", str(tmp_path / "run"),
             "--base-model", "tiny", "--sam", "tiny", "--max-steps", str(STEPS), "--grad-accum", "2"])
    learning = json.loads((tmp_path / "run" / "learning.json").read_text())
    _invoke(["eval", "--data", str(tmp_path / "shards"), "--split", "train", "--checkpoint",
             str(tmp_path / "run" / "last"), "--out", str(tmp_path / "eval")])
    m = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    print("overfit (user path):", json.dumps({"image": m["image"], "pixel": m["pixel"], "learning": learning})[:2000])
    assert m["image"]["n_fake"] == 4 and m["image"]["n_real"] == 4
    # every forgery scored above every authentic version of the same photos (what the heads learned is
    # there after generation); at the fixed 0.5 the accuracy is 0.875 at 120 and at 200 steps (one forgery
    # at 0.38: eval asks the one inference prompt, training saw zh/en paraphrases), bench/README.md, Overfit
    assert m["image"]["auc"] == 1.0
    assert m["image"]["accuracy"] >= 0.75
    assert m["pixel"]["iou"] >= 0.5  # the masks are drawn from the image, not from an answer's polygon
