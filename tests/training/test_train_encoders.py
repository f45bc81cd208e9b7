"""`forgery train --train-vision / --train-sam-encoder`: recorded in config.yaml and the checkpoint, the groups
train, SAM embeddings computed live, a contradicting --init-from value refused, predict loads the trained encoders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from typer.testing import CliRunner

from cli import app
from trainer.evaluation.predict import load_predictor
from trainer.training.config import ConfigError

runner = CliRunner()


@pytest.fixture(scope="module")
def encoder_run(tmp_path_factory, tiny_cli_run) -> dict[str, Path]:
    """One 2-step stage-1 CLI run with --train-vision lora --train-sam-encoder lora on tiny shards."""
    return tiny_cli_run(tmp_path_factory.mktemp("encoders"), "--train-vision", "lora", "--train-sam-encoder", "lora",
                        "--lora-r", "4")


@pytest.mark.slow
def test_encoder_options_recorded_and_trained(encoder_run):
    run = encoder_run["run"]
    assert "sam cache: not used: the SAM image encoder trains" in encoder_run["output"]
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert (config["train_vision"], config["train_sam_encoder"], config["language_model"]) == ("lora", "lora", "qwen")
    record = json.loads((run / "best" / "forensics_config.json").read_text())
    assert (record["train_vision"], record["train_sam_encoder"]) == ("lora", "lora")
    groups = json.loads((run / "trainable.json").read_text())["groups"]
    assert groups["vision"] > 0 and groups["sam_encoder"] > 0 and "lora" not in groups
    adapter = load_file(str(run / "last" / "adapter" / "adapter_model.safetensors"))
    vision_b = [v for k, v in adapter.items() if ".visual." in k and "lora_B" in k]
    assert vision_b and all(v.abs().sum() > 0 for v in vision_b)  # moved off their zero start
    sam = load_file(str(run / "last" / "sam_encoder.safetensors"))
    assert any("lora_B" in k and v.abs().sum() > 0 for k, v in sam.items())

    predictor = load_predictor(run / "last")  # predict and eval load through here
    model = predictor.model
    assert (model.config.train_vision, model.config.train_sam_encoder) == ("lora", "lora")
    mine = {k.replace(".default.", "."): v for k, v in model.mask_decoder.image_encoder.state_dict().items() if "lora_" in k}
    assert all(torch.equal(mine[k.replace(".default.", ".")], v) for k, v in sam.items())
    visual = {n: p for n, p in model.named_parameters() if ".visual." in n and "lora_B" in n}
    assert len(visual) == len(vision_b) and all(p.abs().sum() > 0 for p in visual.values())


@pytest.mark.slow
@pytest.mark.parametrize("option,value", [("--train-vision", "full"), ("--train-sam-encoder", "none"),
                                          ("--language-model", "none")])
def test_init_from_with_a_contradicting_encoder_option_is_exit_2(encoder_run, tmp_path, option, value):
    out = tmp_path / "r2"
    result = runner.invoke(app, ["train", "--stage", "1", "--data", str(encoder_run["data"]), "--out", str(out),
                                 "--init-from", str(encoder_run["run"] / "best"), option, value])
    assert result.exit_code == 2, result.output
    assert option in result.output and not out.exists()


def test_bad_encoder_values_and_combinations_are_refused(tmp_path, quick_config):
    data = tmp_path / "d"
    data.mkdir()
    for over, words in (({"train_vision": "half"}, "--train-vision"),
                        ({"train_sam_encoder": "full"}, "--train-sam-encoder"),
                        ({"train_sam_encoder": "lora", "mask_decoder": "conv"}, "no SAM")):
        with pytest.raises(ConfigError, match=words):
            quick_config(data, tmp_path / "o", **over).validate()
    quick_config(data, tmp_path / "o", train_vision="full", train_sam_encoder="lora").validate()


@pytest.fixture(scope="module")
def llm_free_run(encoder_run) -> Path:
    """One 2-step stage-1 CLI run of the LLM-free control on the same shards."""
    run = encoder_run["run"].parent / "llm-free"
    result = runner.invoke(app, [
        "train", "--stage", "1", "--data", str(encoder_run["data"]), "--out", str(run), "--base-model", "tiny",
        "--sam", "tiny", "--language-model", "none", "--max-steps", "2", "--grad-accum", "2",
        "--templates", "json,conclusion", "--config", str(encoder_run["run"].parent / "quick.yaml")])
    assert result.exit_code == 0, result.output
    return run


@pytest.mark.slow
def test_llm_free_predict_and_eval_say_no_language_model(llm_free_run, encoder_run, tmp_path):
    from trainer.evaluation.evaluate import EvalOptions, run_evaluation
    from trainer.evaluation.predict import PredictOptions, predict_images

    assert yaml.safe_load((llm_free_run / "config.yaml").read_text())["language_model"] == "none"
    groups = json.loads((llm_free_run / "trainable.json").read_text())["groups"]
    assert "token_rows" not in groups and "lora" not in groups
    predictor = load_predictor(llm_free_run / "best")
    assert predictor.model.config.language_model == "none"

    def boom(*_, **__):
        raise AssertionError("the language model was called")

    predictor.model.qwen.model.language_model.forward = boom
    res = run_evaluation([encoder_run["data"]], predictor, tmp_path / "eval", EvalOptions(split="test", n_examples=0))
    text = res.metrics["text"]
    assert text["n"] == 0 and text["json_valid_rate"] is None and text["verdict_agreement_rate"] is None
    assert res.metrics["image"]["n"] > 0

    from PIL import Image

    image = tmp_path / "a.png"
    Image.new("RGB", (60, 48), (120, 80, 40)).save(image)
    (tmp_path / "pred").mkdir()
    lines = list(predict_images([image], predictor, tmp_path / "pred", PredictOptions()))
    assert lines[0]["explanation"] == "no language model" and lines[0]["consistent"] is None
    assert lines[0]["text_verdict"] is None and lines[0]["mask"] is not None


@pytest.mark.slow
def test_stage_2_on_the_llm_free_model_is_exit_2(llm_free_run, encoder_run, tmp_path):
    out = tmp_path / "s2"
    result = runner.invoke(app, ["train", "--stage", "2", "--data", str(encoder_run["data"]), "--out", str(out),
                                 "--init-from", str(llm_free_run / "best")])
    assert result.exit_code == 2, result.output
    assert "no language model" in result.output and not out.exists()
