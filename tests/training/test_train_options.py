"""Runs honour their options: --resume extends or refuses, --init-from refuses a contradicting model
option, RUN/config.yaml records what was built, and a launcher that starts lone processes is refused."""

from __future__ import annotations

import shutil

import pytest
import yaml
from typer.testing import CliRunner

from cli import app
from trainer.training.config import ConfigError, load_config
from trainer.training.loop import check_launch, lr_factor, run_training

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


def _silent(s: str) -> None:
    pass


@pytest.fixture(scope="module")
def data(tmp_path_factory, build_tiny_shards):
    return build_tiny_shards(tmp_path_factory.mktemp("options") / "data")


@pytest.fixture(scope="module")
def finished(data, tmp_path_factory, quick_config):
    """A finished 2-step stage-1 run (its end state in last/, no checkpoint-<step>/)."""
    run = tmp_path_factory.mktemp("finished") / "run"
    run_training(quick_config(data, run, max_steps=2, lr=1e-3, warmup=1), log=_silent)
    return run


def _copy(run, tmp_path):
    dst = tmp_path / "run"
    shutil.copytree(run, dst)
    return dst


def test_resume_with_more_steps_continues_to_the_new_end(finished, data, tmp_path, quick_config, run_metrics):
    run = _copy(finished, tmp_path)
    lines = []
    result = run_training(quick_config(data, run, resume=True, max_steps=4, lr=1e-3, warmup=1), log=lines.append)
    assert result.steps == 4
    metrics = run_metrics(run)
    assert [m["step"] for m in metrics] == [1, 2, 3, 4]
    # steps 1-2 kept the 2-step schedule; from the resume step on, the cosine of a 4-step run (warmup 1)
    assert metrics[1]["lr"] == pytest.approx(1e-3 * lr_factor(1, 2, 1))
    assert [m["lr"] for m in metrics[2:]] == pytest.approx([1e-3 * lr_factor(s, 4, 1) for s in (2, 3)])
    assert any("moves from step 2 to 4" in ln for ln in lines)
    assert yaml.safe_load((run / "config.yaml").read_text())["max_steps"] == 4


def test_resume_with_more_epochs_continues(data, tmp_path, quick_config, run_metrics):
    run = tmp_path / "run"
    over = dict(max_steps=None, epochs=1, grad_accum=2)
    run_training(quick_config(data, run, **over), log=_silent)
    one = len(run_metrics(run))
    result = run_training(quick_config(data, run, resume=True, **{**over, "epochs": 2}), log=_silent)
    assert one >= 1 and result.steps == 2 * one
    assert [m["epoch"] for m in run_metrics(run)][one:] == [1] * one


def test_resume_to_an_end_before_the_steps_made_is_refused(finished, data, tmp_path, quick_config):
    run = _copy(finished, tmp_path)
    with pytest.raises(ConfigError, match="has made 2 steps; a new end of 1"):
        run_training(quick_config(data, run, resume=True, max_steps=1, lr=1e-3, warmup=1), log=_silent)


def test_resume_refuses_other_options_listing_every_difference(finished, data, tmp_path, quick_config):
    run = _copy(finished, tmp_path)
    with pytest.raises(ConfigError) as err:
        run_training(quick_config(data, run, resume=True, max_steps=2, lr=5e-4, warmup=1, batch_size=2,
                                  loss={"cls": 3.0}), log=_silent)
    text = str(err.value)
    for part in ("--lr 0.0005 (the run has 0.001)", "--batch-size 2 (the run has 1)", "cls 3.0 (the run has 1.0)"):
        assert part in text
    assert not (run / "checkpoint-2").exists()  # nothing trained


def test_resume_reports_the_run_in_out(finished, data, tmp_path, quick_config):
    run = _copy(finished, tmp_path)  # config.yaml still names the original directory
    assert yaml.safe_load((run / "config.yaml").read_text())["out"] != str(run)
    result = run_training(quick_config(data, run, resume=True, max_steps=3, lr=1e-3, warmup=1), log=_silent)
    assert result.run_dir == run and result.steps == 3
    assert (run / "last").is_dir() and yaml.safe_load((run / "config.yaml").read_text())["out"] == str(run)


@pytest.mark.parametrize("option, value, shown", [
    ("base_model", "tiny-untied", "--base-model tiny-untied (the checkpoint has tiny)"),
    ("sam", "vit_b", "--sam vit_b (the checkpoint has tiny)"),
    ("mask_decoder", "conv", "--mask-decoder conv (the checkpoint has sam)"),
    ("hidden_layer", "1", "--hidden-layer 1 (the checkpoint has last)"),
])
def test_init_from_refuses_a_contradicting_model_option(finished, data, tmp_path, option, value, shown):
    cfg = load_config(None, dict(stage=2, data=str(data), out=str(tmp_path / "s2"), init_from=str(finished / "last"),
                                 **{option: value}))
    with pytest.raises(ConfigError, match=shown.replace("(", r"\(").replace(")", r"\)")):
        cfg.validate()


def test_init_from_with_the_same_model_options_is_accepted(finished, data, tmp_path):
    cfg = load_config(None, dict(stage=2, data=str(data), out=str(tmp_path / "s2"), init_from=str(finished / "last"),
                                 base_model="tiny", sam="tiny", mask_decoder="sam", hidden_layer="last"))
    cfg.validate()


def test_cli_init_from_contradiction_exits_2(finished, data, tmp_path):
    result = CliRunner().invoke(app, ["train", "--stage", "2", "--data", str(data), "--out", str(tmp_path / "s2"),
                                      "--init-from", str(finished / "last"), "--mask-decoder", "conv"])
    assert result.exit_code == 2, result.output
    assert "--mask-decoder conv (the checkpoint has sam)" in result.output
    assert not (tmp_path / "s2").exists()


def test_config_yaml_records_what_was_built(finished, data, tmp_path, quick_config):
    out = tmp_path / "s2"
    cfg = quick_config(data, out, stage=2, init_from=str(finished / "last"), max_steps=1)
    for k in ("base_model", "sam"):
        setattr(cfg, k, None)  # left out: the checkpoint's
    run_training(cfg, log=_silent)
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert (saved["base_model"], saved["sam"], saved["mask_decoder"], saved["hidden_layer"], saved["expert"]) == \
        ("tiny", "tiny", "sam", "last", "none")
    assert saved["cls_position"] in ("before-verdict", "after-verdict")


def test_a_launcher_of_lone_processes_is_refused(data, tmp_path, quick_config, monkeypatch):
    with pytest.raises(ConfigError, match="torchrun --nproc_per_node 2"):
        check_launch(1, {"WORLD_SIZE": "2"})
    check_launch(1, {"WORLD_SIZE": "1"})
    check_launch(2, {"WORLD_SIZE": "2"})
    monkeypatch.setenv("WORLD_SIZE", "2")  # what `accelerate launch --cpu --num_processes 2` leaves behind
    with pytest.raises(ConfigError, match="accelerate sees one process"):
        run_training(quick_config(data, tmp_path / "run"), log=_silent)
    assert not (tmp_path / "run").exists()
