"""Stages 1 -> 2 -> 3 end to end on tiny shards with the tiny model; what each stage changes;
export; the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from cli import app
from trainer.model.build_model import build_forensics_model
from trainer.model.checkpoint import load_checkpoint
from trainer.training.data import (
    DataOptions,
    decode_image,
    shard_urls,
    validation_samples,
)
from trainer.training.loop import TERMS, run_training
from trainer.training.stages import check_stage, setup_stage

runner = CliRunner()


@pytest.fixture(scope="module")
def runs(tmp_path_factory, build_tiny_shards, quick_config) -> dict[str, Path]:
    """Three chained runs: stage 1 (fresh), stage 2 (--init-from stage 1), stage 3 via the CLI."""
    root = tmp_path_factory.mktemp("stages")
    data = build_tiny_shards(root / "data")
    r1, r2, r3 = root / "run1", root / "run2", root / "run3"
    run_training(quick_config(data, r1, stage=1), log=lambda s: None)
    run_training(quick_config(data, r2, stage=2, init_from=str(r1 / "best"), lora_r=4, lora_alpha=8),
                 log=lambda s: None)
    result = runner.invoke(app, [
        "train", "--stage", "3", "--data", str(data), "--out", str(r3), "--init-from", str(r2 / "best"),
        "--max-steps", "2", "--grad-accum", "2", "--adv-share", "1", "--templates", "json,conclusion",
        "--config", str(_yaml(root))])
    assert result.exit_code == 0, result.output
    return {"data": data, "run1": r1, "run2": r2, "run3": r3, "root": root}


def _yaml(root: Path) -> Path:
    p = root / "stage3.yaml"
    p.write_text("val_samples: 2\nval_mode: teacher\nshuffle_buffer: 8\nprogress: false\nadv_steps: 1\n"
                 "aug_prob: 1.0\naug_prompt_prob: 1.0\nloss:\n  contrastive: 0.2\n")
    return p


def _state(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def _changed(before: dict, after: dict) -> set[str]:
    assert before.keys() == after.keys()
    return {n for n in before if not torch.equal(before[n], after[n])}


def test_run_directory_and_logs(runs, run_metrics):
    for name, stage in (("run1", 1), ("run2", 2), ("run3", 3)):
        run = runs[name]
        for f in ("config.yaml", "trainable.json", "data.json", "metrics.jsonl", "val.jsonl", "summary.json"):
            assert (run / f).is_file(), (name, f)
        for d in ("best", "last", "tensorboard"):
            assert (run / d).is_dir(), (name, d)
        lines = run_metrics(run)
        assert [m["step"] for m in lines] == [1, 2]
        for m in lines:
            assert {"step", "loss", *TERMS} <= m.keys() and np.isfinite(m["loss"])
        report = json.loads((run / "trainable.json").read_text())
        assert report["stage"] == stage and report["trainable_total"] == sum(report["trainable"].values())
        val = json.loads((run / "val.jsonl").read_text().splitlines()[-1])
        assert {"accuracy", "balanced_accuracy", "auc"} <= val["image"].keys() and {"f1", "iou"} <= val["pixel"].keys()
    assert any(m["adversarial"] > 0 for m in run_metrics(runs["run3"]))  # --adv-share 1
    cfg3 = (runs["run3"] / "config.yaml").read_text()
    assert "contrastive: 0.2" in cfg3 and "stage: 3" in cfg3  # YAML and CLI merged, saved


def test_stage1_changes_exactly_its_parameters(runs):
    fresh, _ = build_forensics_model("tiny", "tiny", seed=0)
    setup_stage(fresh, 1)
    trained, _ = load_checkpoint(runs["run1"] / "last")
    changed = _changed(_state(fresh), _state(trained))
    assert changed == set(fresh.trainable_parameter_names())
    assert all(".lora_" not in n for n in changed) and not any(n.startswith("backbone.model.visual") for n in changed)


@pytest.mark.parametrize("stage", [2, 3])
def test_stage2_3_change_exactly_their_parameters(runs, stage):
    start, _ = load_checkpoint(runs[f"run{stage - 1}"] / "best")
    setup_stage(start, stage, lora_r=4, lora_alpha=8, seed=0)
    check_stage(start, stage)
    trained, _ = load_checkpoint(runs[f"run{stage}"] / "last")
    setup_stage(trained, stage)
    meant = set(start.trainable_parameter_names())
    assert any(".lora_" in n for n in meant)
    assert not any("visual" in n and ".lora_" in n for n in meant)  # LoRA on the LLM only
    assert not any(n.startswith(("cls_head", "mask_head", "mask_decoder")) and ".lora_" in n for n in meant)
    assert _changed(_state(start), _state(trained)) == meant


def test_stage2_without_init_from_is_exit_2(runs, tmp_path):
    result = runner.invoke(app, ["train", "--stage", "2", "--data", str(runs["data"]), "--out", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert "--init-from" in result.output


@pytest.mark.parametrize("args, needle", [
    (["--stage", "4"], "--stage"),
    (["--stage", "1", "--grad-accum", "0"], "--grad-accum"),
    (["--stage", "1", "--templates", "poem"], "--templates"),
    (["--stage", "1", "--loss-weights", "colour=1"], "--loss-weights"),
])
def test_cli_bad_options_exit_2(runs, tmp_path, args, needle):
    result = runner.invoke(app, ["train", *args, "--data", str(runs["data"]), "--out", str(tmp_path / "r"),
                                 "--base-model", "tiny", "--sam", "tiny"])
    assert result.exit_code == 2, result.output
    assert needle in result.output


@pytest.mark.parametrize("given, missing", [([], "--base-model"), (["--base-model", "tiny"], "--sam")])
def test_a_real_run_names_its_backbone_and_sam(runs, tmp_path, given, missing):
    """No silent tiny random model: `tiny` only when asked."""
    result = runner.invoke(app, ["train", "--stage", "1", "--data", str(runs["data"]), "--out", str(tmp_path / "r"), *given])
    assert result.exit_code == 2 and missing in result.output and "tiny" in result.output
    assert not (tmp_path / "r").exists()


def test_cli_refuses_non_empty_out(runs):
    result = runner.invoke(app, ["train", "--stage", "1", "--data", str(runs["data"]), "--out", str(runs["run1"]),
                                 "--base-model", "tiny", "--sam", "tiny"])
    assert result.exit_code == 2 and "--resume" in result.output


def test_export_merges_and_predicts_the_same(runs, tmp_path):
    src = runs["run3"] / "best"
    out = tmp_path / "exported"
    result = runner.invoke(app, ["export", str(src), "--out", str(out)])
    assert result.exit_code == 0, result.output
    before, processor = load_checkpoint(src)
    after, processor_after = load_checkpoint(out)
    assert before.is_lora and not after.is_lora
    assert json.loads((out / "forensics_config.json").read_text())["backbone"] == "full"
    opts = DataOptions(templates=("json",))
    sample = validation_samples(shard_urls(runs["data"], "train"), opts, 2)[0]  # any json sample will do
    image = decode_image(sample.image)
    prompt = sample.meta["messages"][0]["content"].replace("<image>", "")
    answer = sample.meta["messages"][1]["content"]
    a = before.score(processor, image, prompt, answer)
    b = after.score(processor_after, image, prompt, answer)
    assert abs(a.cls_prob - b.cls_prob) < 1e-4
    assert np.abs(a.mask_prob - b.mask_prob).max() < 1e-3

    from transformers import Qwen2_5_VLForConditionalGeneration

    plain = Qwen2_5_VLForConditionalGeneration.from_pretrained(str(out / "backbone"))
    rows = plain.get_input_embeddings().weight[list(after.token_ids.all)]
    assert torch.allclose(rows, before.embed_tokens.merged_rows(), atol=1e-6)  # trained rows merged

    again = runner.invoke(app, ["export", str(src), "--out", str(out)])
    assert again.exit_code == 2  # refuses a non-empty target
