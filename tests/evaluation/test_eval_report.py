"""`forgery eval --predictions`, robustness runs and the HTML report (no model needed)."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path
from typing import Sequence

import numpy as np
import pytest
from typer.testing import CliRunner

from cli import app
from trainer.evaluation.evaluate import EvalOptions, run_evaluation
from trainer.evaluation.perturb import (
    Perturbation,
    apply_perturbation,
    parse_perturbations,
)
from trainer.evaluation.predictors import ModelOutput
from trainer.evaluation.samples import EvalSample

runner = CliRunner()


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.stack: list[str] = []
        self.errors: list[str] = []

    VOID = {"img", "meta", "br", "link", "hr", "input"}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for k, v in attrs:
            if k in ("src", "href") and v:
                self.links.append(v)
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unbalanced </{tag}> (open: {self.stack[-3:]})")
        else:
            self.stack.pop()


def check_report(out: Path) -> list[str]:
    """Parse report.html; assert it is balanced and every linked file exists; return the links."""
    text = (out / "report.html").read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    p = _Links()
    p.feed(text)
    p.close()
    assert not p.errors and not p.stack, (p.errors, p.stack)
    for link in p.links:
        assert "://" not in link and not link.startswith("/"), link
        assert (out / link).is_file(), link
    return p.links


def test_eval_predictions_folder_cli(tmp_path: Path, casia_layout, prediction_folder, save_png) -> None:
    truth = casia_layout(tmp_path / "casia", n_fake=3, n_real=2)
    scores = {k: (0.9 if k.startswith("Tp") else 0.2) for k in truth}
    scores["Au_001"] = 0.6  # one false alarm at image level
    prediction_folder(tmp_path / "pred", truth, quality="shifted", scores=scores)
    # authentic image with a false-alarm mask
    save_png(tmp_path / "pred" / "Au_001.png", np.full((40, 48), 200, np.uint8))
    out = tmp_path / "out"
    r = runner.invoke(app, ["eval", "--predictions", str(tmp_path / "pred"), "--data", str(tmp_path / "casia"),
                            "--out", str(out)])
    assert r.exit_code == 0, r.output
    m = json.loads((out / "metrics.json").read_text())
    assert set(m) >= {"image", "pixel", "authentic", "text", "per_method", "image_best_threshold",
                      "pixel_best_threshold"}
    assert set(m["image"]) >= {"accuracy", "balanced_accuracy", "f1", "auc"}
    assert set(m["pixel"]) >= {"f1", "iou", "auc"}
    assert m["image"]["accuracy"] == pytest.approx(4 / 5)
    assert m["authentic"]["false_alarm_rate"] == 0.5 and m["authentic"]["mean_predicted_area"] == 0.5
    assert 0 < m["pixel"]["f1"] < 1 and m["counts"]["score_sources"] == {"given": 5}
    lines = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(lines) == 5 and all("pixel" in x for x in lines)
    links = check_report(out)
    assert "plots/curves.png" in links and any(x.startswith("examples/") for x in links)


def test_eval_jsonl_without_scores_uses_max_pixel(tmp_path: Path, prediction_folder, samples_dir) -> None:
    truth = samples_dir(tmp_path / "samples")
    prediction_folder(tmp_path / "masks", truth)
    jl = tmp_path / "pred.jsonl"
    jl.write_text("".join(json.dumps({"image": f"{k}.png", "mask": f"masks/{k}.png"}) + "\n" for k in truth
                          if k != "s03"))
    out = tmp_path / "out"
    r = runner.invoke(app, ["eval", "--predictions", str(jl), "--data", str(tmp_path / "samples"), "--out", str(out)])
    assert r.exit_code == 0, r.output
    m = json.loads((out / "metrics.json").read_text())
    assert m["counts"]["errors"] == 1  # s03 has no prediction: reported, run goes on
    assert m["counts"]["score_sources"] == {"max_pixel": 3} and "score_note" in m["run"]
    assert m["pixel"]["f1"] == 1.0 and m["image"]["accuracy"] == 1.0
    assert set(m["per_method"]) == {"copy-move"}
    assert "maximum pixel probability" in (out / "report.html").read_text()
    check_report(out)


def test_eval_bad_options_exit_2(tmp_path: Path, casia_layout, prediction_folder) -> None:
    truth = casia_layout(tmp_path / "c", n_fake=1, n_real=1)
    prediction_folder(tmp_path / "p", truth)
    base = ["eval", "--data", str(tmp_path / "c"), "--out", str(tmp_path / "o")]
    assert runner.invoke(app, base).exit_code == 2  # neither --checkpoint nor --predictions
    r = runner.invoke(app, base + ["--predictions", str(tmp_path / "p"), "--perturb", "jpeg:50", "noise:5"])
    assert r.exit_code == 2 and "--checkpoint" in r.output
    assert runner.invoke(app, base + ["--predictions", str(tmp_path / "p"), "--threshold", "2"]).exit_code == 2
    r = runner.invoke(app, ["eval", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "o"),
                            "--predictions", str(tmp_path / "p")])
    assert r.exit_code == 2
    # nothing matches: exit 1
    empty = tmp_path / "empty_pred"
    empty.mkdir()
    r = runner.invoke(app, base + ["--predictions", str(empty)])
    assert r.exit_code == 1


def test_datasets_convert_cli(tmp_path: Path, casia_layout, make_pair, save_png) -> None:
    casia_layout(tmp_path / "c", n_fake=2, n_real=1)
    save_png(tmp_path / "c" / "Tp" / "lonely.png", make_pair(7)[0])
    r = runner.invoke(app, ["datasets", "convert", str(tmp_path / "c"), "--out", str(tmp_path / "l.json")])
    assert r.exit_code == 0, r.output
    assert len(json.loads((tmp_path / "l.json").read_text())) == 3 and "lonely" in r.output
    (tmp_path / "nothing").mkdir()
    assert runner.invoke(app, ["datasets", "convert", str(tmp_path / "nothing"), "--out",
                               str(tmp_path / "n.json")]).exit_code == 2


def test_perturbation_parsing_and_units() -> None:
    ps = parse_perturbations(["jpeg:50,70,90", "resize:0.5,0.75 blur:3", "noise:5"])
    assert [p.name for p in ps] == ["jpeg:50", "jpeg:70", "jpeg:90", "resize:0.5", "resize:0.75", "blur:3", "noise:5"]
    for bad in (["jpeg:0"], ["blur:4"], ["noise:-1"], ["rotate:3"], ["jpeg"], ["resize:x"]):
        with pytest.raises(ValueError):
            parse_perturbations(bad)
    img = np.full((32, 40, 3), 128, np.uint8)
    noisy = apply_perturbation(img, Perturbation("noise", 5), seed=1, index=3)
    assert abs(float(noisy.astype(float).std()) - 5.0) < 0.5  # std in 0-255 units
    assert np.array_equal(noisy, apply_perturbation(img, Perturbation("noise", 5), seed=1, index=3))
    assert apply_perturbation(img, Perturbation("resize", 0.5)).shape == (16, 20, 3)
    assert apply_perturbation(img, Perturbation("jpeg", 50)).shape == img.shape
    assert apply_perturbation(img, Perturbation("blur", 3)).shape == img.shape


class _Oracle:
    """A pixel 'model' that finds the inverted rectangle by looking at the brightness pattern it
    knows; degradations that blur it out hurt it, which is what the robustness table must show."""

    supports_perturbation = True

    def __init__(self, truth: dict[str, np.ndarray]) -> None:
        self.truth = truth

    def __call__(self, samples: Sequence[EvalSample], images: Sequence[np.ndarray]) -> list[ModelOutput | str]:
        outs: list[ModelOutput | str] = []
        for s, img in zip(samples, images):
            m = self.truth[s.id].astype(np.float32)
            h, w = img.shape[:2]
            if (h, w) != m.shape:
                m = np.asarray(np.array(m)[:: max(1, m.shape[0] // h), :: max(1, m.shape[1] // w)][:h, :w])
            noise = float(np.abs(np.diff(img.astype(np.float32), axis=1)).mean()) / 255.0
            prob = np.clip(m * (1.0 - noise) + 0.05, 0, 1)
            outs.append(ModelOutput(score=float(prob.max()), mask=prob, text='{"result": "fake"}', score_source="cls"))
        return outs


def test_robustness_table_with_a_pixel_predictor(tmp_path: Path, samples_dir) -> None:
    truth = samples_dir(tmp_path / "s", n_fake=2, n_real=1)
    opt = EvalOptions(perturbations=parse_perturbations(["jpeg:30", "resize:0.5", "blur:5", "noise:20"]))
    res = run_evaluation([tmp_path / "s"], _Oracle(truth), tmp_path / "out", opt)
    rob = res.metrics["robustness"]
    assert set(rob["conditions"]) == {"jpeg:30", "resize:0.5", "blur:5", "noise:20"}
    assert "standard deviation" in rob["units"]["noise"]
    assert rob["conditions"]["resize:0.5"]["figures"]["pixel.f1"] is not None  # mask resized back and scored
    assert rob["clean"]["pixel.f1"] == 1.0
    assert res.metrics["text"]["json_valid_rate"] == 1.0
    assert (tmp_path / "out" / "masks" / "s00.png").is_file()
    html = (tmp_path / "out" / "report.html").read_text()
    assert "Robustness" in html and "noise:20" in html
    check_report(tmp_path / "out")
