"""What a real-size run checks, and in which order: data before the model load, --hidden-layer against the
backbone's layers, relative model paths stored resolved, the dtype recorded and kept, models never
downloaded unless allowed (one line, exit 2), and launchers that would start lone processes refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from safetensors.torch import save_file
from typer.testing import CliRunner

import trainer.training.loop as loop
from cli import app
from trainer.model.build_model import build_tiny_qwen
from trainer.model.checkpoint import save_checkpoint
from trainer.model.tokens import build_offline_tokenizer, build_processor
from trainer.training.config import ConfigError
from trainer.training.loop import check_launch

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

ROOT = Path(__file__).resolve().parents[2]
UNCACHED = "Qwen/NoSuchModel-Test"


@pytest.fixture(scope="module")
def data(tmp_path_factory, build_tiny_shards):
    return build_tiny_shards(tmp_path_factory.mktemp("realsize") / "data")


def _train(*args: str):
    return CliRunner().invoke(app, ["train", "--stage", "1", "--max-steps", "1", "--grad-accum", "2",
                                    "--val-samples", "2", "--val-mode", "teacher", *args])


def _never_load(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(loop, "build_forensics_model", refuse)
    monkeypatch.setattr(loop, "load_checkpoint", refuse)


def test_a_data_error_is_reported_before_the_model_is_touched(data, tmp_path, monkeypatch):
    _never_load(monkeypatch)
    result = _train("--data", str(data), "--out", str(tmp_path / "run"), "--base-model", UNCACHED, "--sam", "tiny",
                    "--templates", "pair")  # the tiny shards hold no pair sample: no balanced step
    assert result.exit_code == 2, result.output
    assert "no optimizer step that sees both classes can be made" in result.output
    assert UNCACHED not in result.output and "Traceback" not in result.output


def test_an_out_of_range_hidden_layer_exits_2_before_the_model_loads(data, tmp_path, monkeypatch):
    _never_load(monkeypatch)
    result = _train("--data", str(data), "--out", str(tmp_path / "run"), "--base-model", "tiny", "--sam", "tiny",
                    "--hidden-layer", "5")  # 2 layers: 5 % 3 == 2 used to mean "last"
    assert result.exit_code == 2, result.output
    assert "--hidden-layer 5: the backbone has 2 layers, so an index is in 0..2" in result.output


def test_an_uncached_hub_model_is_one_line_and_exit_2(data, tmp_path):
    result = _train("--data", str(data), "--out", str(tmp_path / "run"), "--base-model", UNCACHED, "--sam", "tiny")
    assert result.exit_code == 2, result.output
    error = [ln for ln in result.output.splitlines() if ln.startswith("Error:")]
    assert len(error) == 1 and f"hf download {UNCACHED}" in error[0] and "--allow-download" in error[0]
    assert "Traceback" not in result.output


@pytest.mark.slow
def test_predict_eval_and_export_of_a_checkpoint_on_an_uncached_model_exit_2(data, tmp_path, tiny_processor):
    from trainer.model.build_model import build_forensics_model

    model, processor = build_forensics_model("tiny", "tiny", processor=tiny_processor())
    ckpt = save_checkpoint(model, processor, tmp_path / "best", save_backbone=False)
    record = json.loads((ckpt / "forensics_config.json").read_text())
    record.update(base_model=UNCACHED, backbone="reference")  # a stage-1 checkpoint of a hub model not on this machine
    (ckpt / "forensics_config.json").write_text(json.dumps(record))
    image = next((data.parent / "photos").glob("*.jpg"))
    runner = CliRunner()
    for args in (["predict", str(image), "--checkpoint", str(ckpt), "--out", str(tmp_path / "pred")],
                 ["eval", "--data", str(data), "--checkpoint", str(ckpt), "--out", str(tmp_path / "eval")],
                 ["export", str(ckpt), "--out", str(tmp_path / "export")]):
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args[0], result.output)
        assert f"hf download {UNCACHED}" in result.output and "Traceback" not in result.output, args[0]
    assert not (tmp_path / "export").exists()


def _tiny_folder(folder: Path) -> Path:
    """A tiny Qwen2.5-VL saved as a model folder (weights, config, tokenizer, processor)."""
    build_tiny_qwen().save_pretrained(str(folder))
    build_processor(build_offline_tokenizer()).save_pretrained(str(folder))
    return folder


@pytest.mark.slow
def test_relative_paths_are_stored_resolved_and_the_dtype_is_recorded_and_kept(data, tmp_path, monkeypatch):
    from forgery_synth.models.sam import build_sam

    _tiny_folder(tmp_path / "qwen")
    sam, _ = build_sam("tiny")
    save_file({k: v.contiguous() for k, v in sam.state_dict().items()}, str(tmp_path / "sam-tiny.safetensors"))
    monkeypatch.chdir(tmp_path)
    result = _train("--data", str(data), "--out", "run", "--base-model", "qwen", "--sam", "sam-tiny.safetensors",
                    "--val-samples", "3", "--val-max-new-tokens", "7")
    assert result.exit_code == 0, result.output
    assert "stored as " + str((tmp_path / "qwen").resolve()) in result.output
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["base_model"] == str((tmp_path / "qwen").resolve())
    assert saved["sam"] == str((tmp_path / "sam-tiny.safetensors").resolve())
    assert (saved["val_samples"], saved["val_mode"], saved["val_max_new_tokens"]) == (3, "teacher", 7)
    assert saved["dtype"] == "bfloat16"  # auto: a real checkpoint folder on the CPU
    record = json.loads((tmp_path / "run" / "best" / "forensics_config.json").read_text())
    assert record["base_model"] == saved["base_model"] and record["dtype"] == "bfloat16"

    monkeypatch.chdir(ROOT)  # later stages find the backbone from anywhere; a contradicting dtype is refused
    bad = CliRunner().invoke(app, ["train", "--stage", "2", "--data", str(data), "--out", str(tmp_path / "run2"),
                                   "--init-from", str(tmp_path / "run" / "best"), "--dtype", "float32"])
    assert bad.exit_code == 2 and "--dtype float32 (the checkpoint has bfloat16)" in bad.output


def test_accelerate_cpu_multi_process_environment_is_refused():
    simple = {"ACCELERATE_USE_CPU": "True", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}
    with pytest.raises(ConfigError, match="ACCELERATE_USE_CPU=1 torchrun --nproc_per_node N -m cli train"):
        check_launch(1, simple)
    with pytest.raises(ConfigError, match="torchrun --nproc_per_node 4"):
        check_launch(1, {"LOCAL_WORLD_SIZE": "4"})
    with pytest.raises(ConfigError, match="--nproc_per_node 2"):
        check_launch(1, {"PMI_SIZE": "2"})
    check_launch(2, {**simple, "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2"})  # torchrun: accelerate sees both
    check_launch(1, {"ACCELERATE_USE_CPU": "True"})  # accelerate launch --cpu, one process
    check_launch(1, {**simple, "WORLD_SIZE": "1"})  # torchrun --nproc_per_node 1


@pytest.mark.slow
def test_accelerate_launch_cpu_two_processes_as_the_readme_shows_exits_2(data, tmp_path):
    accelerate = Path(sys.executable).parent / "accelerate"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([str(accelerate), "launch", "--cpu", "--num_processes", "2", "-m", "cli", "train",
                           "--stage", "1", "--data", str(data), "--out", str(tmp_path / "run"), "--base-model", "tiny",
                           "--sam", "tiny", "--max-steps", "1", "--grad-accum", "2"],
                          cwd=str(ROOT), env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "accelerate sees one process" in proc.stderr
    assert "ACCELERATE_USE_CPU=1 torchrun --nproc_per_node N -m cli train" in proc.stderr
    assert "exit status 2" in proc.stderr  # the train process itself exited 2 (accelerate reports it)
    assert not (tmp_path / "run" / "last").exists()
