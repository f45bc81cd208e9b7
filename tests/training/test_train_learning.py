"""A run says whether its losses left their chance values (RUN/learning.json, best/, last/), writes the
thresholds it calibrated on validation into its checkpoints, and `forgery eval` / `forgery predict`
use and report them."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from cli import app
from trainer.evaluation.predict import decision_thresholds
from trainer.model.checkpoint import load_thresholds, save_thresholds
from trainer.training.learning import LEARNING_FILE, learning_summary, load_learning
from trainer.training.loop import run_training

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


def _records(cls: list[float], chance: float = 0.0866) -> list[dict]:
    return [{"step": i + 1, "cls": c, "cls_chance": chance, "mask_bce": 0.05, "mask_bce_chance": 0.1,
             "mask_dice": 0.6, "mask_dice_chance": 0.6} for i, c in enumerate(cls)]


def test_a_cls_loss_that_stays_at_chance_is_said_with_the_remedy():
    summary = learning_summary(_records([0.09] * 40 + [0.0866] * 10), head_lr=1e-3)
    assert summary["window"] == 5
    cls = summary["terms"]["cls"]
    assert cls["at_chance"] and cls["last"] == pytest.approx(0.0866) and cls["first"] == pytest.approx(0.09)
    assert any(m.startswith("cls loss stayed at its chance value (0.0866 vs chance 0.0866): the cls head did not "
                            "learn; try --head-lr 0.003") for m in summary["messages"])
    assert not summary["terms"]["mask_bce"]["at_chance"]  # 0.05 vs 0.1: learned
    assert summary["terms"]["mask_dice"]["at_chance"]


def test_a_cls_loss_that_left_chance_is_not_flagged_and_the_window_is_the_last_tenth():
    summary = learning_summary(_records([0.0866] * 90 + [0.02] * 10), head_lr=1e-3)
    assert summary["window"] == 10 and summary["terms"]["cls"]["last"] == pytest.approx(0.02)
    assert not summary["terms"]["cls"]["at_chance"]
    assert not any(m.startswith("cls") for m in summary["messages"])
    assert "too few" in learning_summary(_records([0.1] * 4), 1e-3)["messages"][0]


@pytest.fixture(scope="module")
def data(tmp_path_factory, build_tiny_shards):
    return build_tiny_shards(tmp_path_factory.mktemp("learning") / "data")


@pytest.fixture(scope="module")
def run(data, tmp_path_factory, quick_config):
    """A 5-step stage-1 run with validation (its log lines kept)."""
    out = tmp_path_factory.mktemp("learning-run") / "run"
    lines: list[str] = []
    run_training(quick_config(data, out, max_steps=5, val_samples=4, warmup=1), log=lines.append)
    return out, lines


def test_the_run_writes_its_learning_summary_and_calibrated_thresholds(run, run_metrics):
    out, lines = run
    for m in run_metrics(out):
        assert m["cls_chance"] == pytest.approx(0.0866, abs=1e-4) and m["text_chance"] > 0
        assert "mask_bce_chance" in m and "mask_dice_chance" in m
    summary = json.loads((out / LEARNING_FILE).read_text())
    assert set(summary["terms"]) >= {"cls", "mask_bce"}
    assert load_learning(out / "best") == summary == load_learning(out / "last")
    assert any(ln.startswith("learning (mean of the first and last 5 logged steps): cls ") for ln in lines)
    for ckpt in ("best", "last"):
        th = load_thresholds(out / ckpt)
        assert th["calibrated"] and th["n_val"] == 4 and 0 <= th["image"] <= 1 and 0 < th["pixel"] < 1
        assert set(th["at_0.5"]) == set(th["at_calibrated"]) == {"image_balanced_accuracy", "pixel_f1"}
    val = [json.loads(ln) for ln in (out / "val.jsonl").read_text().splitlines()]
    assert val[-1]["thresholds"]["image"] == load_thresholds(out / "last")["image"]


def test_a_run_without_validation_says_so_and_keeps_half(data, tmp_path, quick_config):
    shards = tmp_path / "shards"
    shutil.copytree(data, shards)
    manifest = json.loads((shards / "manifest.json").read_text())
    for entry in manifest["splits"]["val"]["shards"]:
        (shards / entry["name"]).unlink()
    manifest["splits"]["val"]["shards"] = []  # as `build-shards --splits 0.8,0,0.2` writes it
    (shards / "manifest.json").write_text(json.dumps(manifest))
    lines: list[str] = []
    run_training(quick_config(shards, tmp_path / "run", max_steps=2), log=lines.append)
    assert "no validation split: no validation ran, thresholds stay 0.5 (thresholds.json: calibrated false)" in lines
    th = load_thresholds(tmp_path / "run" / "best")
    assert (th["image"], th["pixel"], th["calibrated"]) == (0.5, 0.5, False)


def test_predict_decides_with_the_checkpoints_thresholds_unless_told(run, tmp_path):
    ckpt = tmp_path / "ckpt"
    shutil.copytree(run[0] / "last", ckpt)
    save_thresholds(ckpt, {"image": 0.3, "pixel": 0.2, "calibrated": True, "n_val": 4})
    assert decision_thresholds(ckpt) == {"image": 0.3, "pixel": 0.2, "calibrated": True, "source": "checkpoint"}
    assert decision_thresholds(ckpt, 0.7)["image"] == decision_thresholds(ckpt, 0.7)["pixel"] == 0.7
    (ckpt / "thresholds.json").unlink()
    assert decision_thresholds(ckpt) == {"image": 0.5, "pixel": 0.5, "calibrated": False, "source": "default"}
    (ckpt / "thresholds.json").write_text("{\"image\": 2}")
    with pytest.raises(ValueError, match="thresholds.json"):
        decision_thresholds(ckpt)


def test_eval_reports_the_calibrated_figures_and_the_learning_summary(run, data, tmp_path):
    ckpt = tmp_path / "ckpt"
    shutil.copytree(run[0] / "last", ckpt)
    save_thresholds(ckpt, {"image": 0.0, "pixel": 0.0, "calibrated": True, "n_val": 4})  # everything "forged"
    out = tmp_path / "eval"
    res = CliRunner().invoke(app, ["eval", "--data", str(data), "--checkpoint", str(ckpt), "--out", str(out),
                                   "--limit", "4", "--max-new-tokens", "4", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    m = json.loads((out / "metrics.json").read_text())
    assert m["image"]["threshold"] == 0.5  # the fixed figures stay
    cal = m["image"]["calibrated"]
    assert cal["threshold"] == 0.0 and cal["recall"] == 1.0  # every score > 0: every forged image found
    assert m["pixel"]["calibrated"]["threshold"] == 0.0 and m["pixel"]["calibrated"]["n"] == m["pixel"]["n"]
    assert m["thresholds"]["n_val"] == 4 and m["learning"] == load_learning(ckpt)
    html = (out / "report.html").read_text()
    assert "At the thresholds calibrated on validation" in html and "losses against their chance values" in html
    assert "at the calibrated thresholds (image 0.000" in res.output
