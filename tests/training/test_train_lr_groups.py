"""Learning rates by parameter group: LoRA at --lr, the new parts at --head-lr, encoders at --vision-lr;
one schedule factor for every group; config.yaml and metrics.jsonl record them; a checkpoint written
with other optimizer groups is refused on --resume with a clear message."""

from __future__ import annotations

import shutil

import pytest
import torch
import yaml

from trainer.training.config import ConfigError, TrainConfig
from trainer.training.loop import lr_factor, param_groups, run_training
from trainer.training.stages import lr_group

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


def _silent(s: str) -> None:
    pass


@pytest.mark.parametrize("name, group", [
    ("qwen.model.language_model.layers.0.self_attn.q_proj.lora_A.default.weight", "lora"),
    ("qwen.model.visual.blocks.0.attn.qkv.lora_A.default.weight", "vision"),
    ("qwen.model.visual.merger.mlp.0.weight", "vision"),
    ("mask_decoder.image_encoder.blocks.0.attn.qkv.lora_B.default.weight", "vision"),
    ("mask_decoder.image_encoder.adapter.0.weight", "vision"),
    ("mask_decoder.mask_decoder.transformer.layers.0.mlp.lin1.weight", "head"),
    ("cls_head.0.weight", "head"),
    ("mask_head.proj.bias", "head"),
    ("expert_head.conv.weight", "head"),
    ("embed_tokens.delta", "head"),
    ("lm_head.delta", "head"),
])
def test_each_trainable_name_has_one_learning_rate_group(name, group):
    assert lr_group(name) == group


def test_param_groups_put_each_parameter_at_its_groups_rate():
    names = ["cls_head.0.weight", "qwen.model.language_model.layers.0.self_attn.q_proj.lora_A.default.weight",
             "qwen.model.visual.blocks.0.attn.qkv.lora_A.default.weight", "embed_tokens.delta"]
    params = [torch.nn.Parameter(torch.zeros(1)) for _ in names]
    groups = param_groups(names, params, TrainConfig(lr=2e-4, head_lr=5e-3, vision_lr=7e-5))
    name_of = {id(p): n for n, p in zip(names, params)}
    got = {g["name"]: (g["lr"], [name_of[id(p)] for p in g["params"]]) for g in groups}
    assert got == {"lora": (2e-4, [names[1]]), "head": (5e-3, [names[0], names[3]]), "vision": (7e-5, [names[2]])}
    default = param_groups(names, params, TrainConfig(lr=2e-4))
    assert {g["name"]: g["lr"] for g in default}["vision"] == 2e-4  # --vision-lr defaults to --lr
    assert [g["name"] for g in param_groups(names[:1], params[:1], TrainConfig())] == ["head"]  # no empty group


@pytest.fixture(scope="module")
def data(tmp_path_factory, build_tiny_shards):
    return build_tiny_shards(tmp_path_factory.mktemp("lr-groups") / "data")


@pytest.fixture(scope="module")
def run(data, tmp_path_factory, quick_config):
    """A finished 3-step stage-1 run at --lr 2e-4 --head-lr 3e-3."""
    out = tmp_path_factory.mktemp("lr-run") / "run"
    run_training(quick_config(data, out, max_steps=3, lr=2e-4, head_lr=3e-3, warmup=1), log=_silent)
    return out


def test_the_rates_are_recorded_and_scheduled_alike(run, run_metrics):
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert (saved["lr"], saved["head_lr"], saved["vision_lr"]) == (2e-4, 3e-3, None)
    metrics = run_metrics(run)
    factors = [lr_factor(s, 3, 1) for s in range(3)]
    assert [m["lr_head"] for m in metrics] == pytest.approx([3e-3 * f for f in factors])
    assert [m["lr"] for m in metrics] == pytest.approx([2e-4 * f for f in factors])
    state = torch.load(run / "last" / "trainer_state" / "optimizer.pt", weights_only=True)
    assert [g["name"] for g in state["param_groups"]] == ["head"]  # stage 1: no LoRA, no encoder trains


def test_resuming_a_checkpoint_with_other_optimizer_groups_is_refused(run, data, tmp_path, quick_config):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    path = copy / "last" / "trainer_state" / "optimizer.pt"
    state = torch.load(path, weights_only=True)
    for g in state["param_groups"]:
        del g["name"]  # as written before the groups existed: one unnamed group at --lr
    torch.save(state, path)
    with pytest.raises(ConfigError, match="one learning rate for every parameter.*--init-from"):
        run_training(quick_config(data, copy, resume=True, max_steps=4), log=_silent)


def test_a_bad_head_lr_is_refused(data, tmp_path, quick_config):
    with pytest.raises(ConfigError, match="--head-lr: must be a positive number"):
        quick_config(data, tmp_path / "r", head_lr=0.0).validate()
    with pytest.raises(ConfigError, match="--vision-lr"):
        quick_config(data, tmp_path / "r", vision_lr=-1.0).validate()
