"""Issue 23: at the CLI's default options the cls head of a stage-1 run learns (its loss leaves the
chance value), where at a learning rate far too low for a new head it does not (so the check can fail)."""

from __future__ import annotations

import json

import pytest

from trainer.training.config import TrainConfig
from trainer.training.loop import run_training

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::RuntimeWarning")]

STEPS = 30


@pytest.fixture(scope="module")
def data(tmp_path_factory, build_separable_shards):
    return build_separable_shards(tmp_path_factory.mktemp("head-lr") / "data")


def _cls(data, out, quick_config, **over) -> dict:
    """The cls entry of a STEPS-step stage-1 run's learning.json: the default learning rates and warmup,
    2 micro-batches of 1 sample a step (quick_config's)."""
    default = TrainConfig()
    cfg = quick_config(data, out, max_steps=STEPS, val_samples=2, **over)
    assert (cfg.lr, cfg.warmup) == (default.lr, default.warmup)
    run_training(cfg, log=lambda s: None)
    return json.loads((out / "learning.json").read_text())["terms"]["cls"]


def test_at_the_default_head_lr_the_cls_loss_leaves_chance_and_at_1e_5_it_does_not(data, tmp_path, quick_config):
    learned = _cls(data, tmp_path / "default", quick_config)
    assert TrainConfig().head_lr == 1e-3
    assert not learned["at_chance"] and learned["last"] < 0.85 * learned["chance"], learned
    stuck = _cls(data, tmp_path / "low", quick_config, head_lr=1e-5)
    assert stuck["at_chance"], stuck
