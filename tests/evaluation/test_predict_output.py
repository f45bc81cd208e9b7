"""What `forgery predict` says per image, driven by scripted model outputs (no model loaded): regions
only under a "fake" verdict, the disagreement of text and score named, an explanation or the explicit
"no explanation generated", output files in a new folder beside the inputs, never inside them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from trainer.evaluation.predict import (
    NO_EXPLANATION,
    PredictOptions,
    default_out,
    disagreement,
    predict_images,
    verdict,
)
from trainer.evaluation.predictors import ModelOutput


class Scripted:
    """A predictor whose outputs are given: (score, answer text) per image, in order; masks all 0.8."""

    supports_perturbation = False

    def __init__(self, outputs: list[tuple[float, str]], opt: PredictOptions) -> None:
        self.outputs, self.opt = list(outputs), opt

    def __call__(self, samples, images):
        outs = []
        for image in images:
            score, text = self.outputs.pop(0)
            mask = np.full(image.shape[:2], 0.8, np.float32)
            outs.append(ModelOutput(score=score, mask=mask, text=text,
                                    extra={"text_polygons": [[1, 1, 9, 1, 9, 9]], "mask_polygons": [[0, 0, 5, 0, 5, 5]]}))
        return outs


def _photos(root: Path, n: int, save_png, make_pair) -> list[Path]:
    paths = []
    for i in range(n):
        paths.append(save_png(root / "photos" / f"p{i}.png", make_pair(i, 24, 32)[0]))
    return paths


def _run(paths, outputs, out=None, threshold=0.5):
    opt = PredictOptions(threshold=threshold, batch_size=2)
    return list(predict_images(paths, Scripted(outputs, opt), out, opt))


def test_regions_mask_and_overlay_only_under_a_fake_verdict(tmp_path, save_png, make_pair):
    paths = _photos(tmp_path, 2, save_png, make_pair)
    real, fake = _run(paths, [(0.2, '{"result": "real"}'), (0.9, '{"result": "fake", "mask": [[1, 1, 9, 1, 9, 9]]}')],
                      tmp_path / "out")
    assert real["verdict"] == "real" and real["regions"] == {"text": [], "mask": []}
    assert real["mask"] is None and real["overlay"] is None
    assert fake["verdict"] == "fake" and fake["regions"]["mask"] and fake["regions"]["text"]
    assert Path(fake["mask"]).is_file() and Path(fake["overlay"]).is_file()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["p1.mask.png", "p1.overlay.png"]


def test_text_and_score_disagreeing_are_both_reported_and_named(tmp_path, save_png, make_pair):
    paths = _photos(tmp_path, 2, save_png, make_pair)
    says_real, agree = _run(paths, [(0.9, '{"result": "real"}'), (0.9, '{"result": "fake"}')], tmp_path / "out")
    assert says_real["verdict"] == "fake" and says_real["text_verdict"] == "real"
    assert says_real["verdict_from"] == "cls score > threshold"
    assert "the answer says real" in says_real["disagreement"] and "says fake" in says_real["disagreement"]
    assert agree["disagreement"] is None


def test_disagreement_sentence_and_verdict_rule():
    assert verdict(0.5, 0.5) == "real" and verdict(0.51, 0.5) == "fake"
    assert disagreement(None, 0.9, 0.5) is None and disagreement("fake", 0.9, 0.5) is None
    assert disagreement("fake", 0.3, 0.5) == ("the answer says fake, the cls score 0.300 <= 0.5 says real; "
                                              "the verdict is the score's")


def test_an_empty_answer_says_no_explanation_generated(tmp_path, save_png, make_pair):
    paths = _photos(tmp_path, 2, save_png, make_pair)
    empty, said = _run(paths, [(0.2, "  "), (0.2, "The image looks authentic.")], tmp_path / "out")
    assert empty["explanation"] == NO_EXPLANATION == "no explanation generated"
    assert said["explanation"] == "The image looks authentic."


def test_default_out_is_a_new_folder_beside_the_inputs_never_inside(tmp_path, save_png, make_pair):
    paths = _photos(tmp_path, 2, save_png, make_pair)
    photos = tmp_path / "photos"
    before = sorted(p.name for p in photos.iterdir())
    lines = _run(paths, [(0.9, ""), (0.9, "")])
    assert sorted(p.name for p in photos.iterdir()) == before  # nothing written into the user's folder
    assert Path(lines[0]["mask"]).parent == tmp_path / "photos-predictions"
    assert default_out([photos]) == tmp_path / "photos-predictions-2"  # a new folder each run
    assert default_out([paths[0], photos / "sub"]) == tmp_path / "photos-predictions-2"
    with pytest.raises(ValueError, match="--out"):
        default_out([Path("/")])
