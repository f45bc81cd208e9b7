"""Epoch ends: the trailing partial group makes a step (a one-sample group is dropped), an epoch
shorter than --grad-accum trains, resume across such an epoch end is exact, every rank gets the same
micro-batches; no optimizer step of one class (--batch-size 1 --grad-accum 1 is refused)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from typer.testing import CliRunner

import trainer.training.loop as loop
from cli import app
from trainer.training.config import ConfigError, TrainConfig
from trainer.training.data import DataOptions, count_epoch, rank_chunks, shard_urls
from trainer.training.loop import TERMS, epoch_steps, run_training

SMALL = dict(templates={"json": 1.0}, min_pixels=56 * 56, max_pixels=84 * 84)


class Interrupted(Exception):
    pass


def _silent(s: str) -> None:
    pass


@pytest.fixture(scope="module")
def four(tmp_path_factory, build_small):
    """Shards whose epoch is 4 balanced micro-batches of one sample (2 real, 2 fake; json)."""
    shards, _, _ = build_small(tmp_path_factory.mktemp("four"), n_sources=3, **SMALL)
    return shards


@pytest.fixture(scope="module")
def six(tmp_path_factory, build_small):
    """Shards whose epoch is 6 balanced micro-batches of one sample (3 real, 3 fake; json)."""
    shards, _, _ = build_small(tmp_path_factory.mktemp("six"), n_sources=4, **SMALL)
    return shards


def test_steps_of_an_epoch():
    assert epoch_steps(8, 4, 1) == (2, 0)
    assert epoch_steps(6, 4, 1) == (2, 0)  # 4 + a partial group of 2
    assert epoch_steps(4, 8, 1) == (1, 0)  # shorter than --grad-accum: one step of 4
    assert epoch_steps(4, 3, 1) == (1, 1)  # the trailing group is one sample, one class: dropped
    assert epoch_steps(1, 8, 1) == (0, 1)
    assert epoch_steps(3, 2, 2) == (2, 0)  # a micro-batch of 2 holds both classes
    assert epoch_steps(1, 8, 2) == (1, 0)


@pytest.mark.parametrize("batch_size, world_size", [(1, 2), (2, 2), (1, 3), (3, 2)])
def test_every_rank_has_the_common_micro_batches(six, batch_size, world_size):
    urls = shard_urls(six, "train")
    opts = [DataOptions(seed=4, batch_size=batch_size, shuffle_buffer=8, rank=r, world_size=world_size)
            for r in range(world_size)]
    per_rank = [len(list(rank_chunks(urls, o, 0))) for o in opts]
    assert count_epoch(urls, opts[0])["common"] == min(per_rank)
    assert count_epoch(urls, opts[0])["global_micro_batches"] == sum(per_rank)


def test_single_class_steps_are_refused(tmp_path):
    def cfg(**kw):
        return TrainConfig(data=str(tmp_path), out=str(tmp_path / "r"), base_model="tiny", sam="tiny", **kw)

    with pytest.raises(ConfigError, match="--grad-accum:.*--grad-accum 2 or more, or --batch-size 2"):
        cfg(batch_size=1, grad_accum=1).validate()
    cfg(batch_size=2, grad_accum=1).validate()
    cfg(batch_size=1, grad_accum=2).validate()


def test_cli_refuses_single_class_steps(four, tmp_path):
    result = CliRunner().invoke(app, ["train", "--stage", "1", "--data", str(four), "--out", str(tmp_path / "r"),
                                      "--base-model", "tiny", "--sam", "tiny", "--batch-size", "1",
                                      "--grad-accum", "1"])
    assert result.exit_code == 2, result.output
    assert "--grad-accum" in result.output and "one class" in result.output
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("grad_accum, used, dropped", [(8, 4, 0), (3, 3, 1)])
def test_an_epoch_shorter_than_grad_accum_trains(four, tmp_path, monkeypatch, quick_config, run_metrics,
                                                 grad_accum, used, dropped):
    """4 micro-batches an epoch: --grad-accum 8 makes one step of 4 (it was a ConfigError); --grad-accum 3
    one step of 3, the fourth micro-batch (one sample) dropped. Two epochs, two steps."""
    calls = {"n": 0}
    real = loop.compute_loss

    def counting(*a, **k):
        calls["n"] += 1
        return real(*a, **k)

    monkeypatch.setattr(loop, "compute_loss", counting)
    run = tmp_path / "run"
    result = run_training(quick_config(four, run, max_steps=None, epochs=2, grad_accum=grad_accum, templates=["json"]),
                          log=_silent)
    info = json.loads((run / "data.json").read_text())
    assert info["micro_batches"] == 4
    assert (info["steps_per_epoch"], info["dropped_micro_batches"], info["total_steps"]) == (1, dropped, 2)
    assert result.steps == 2 and [m["epoch"] for m in run_metrics(run)] == [0, 1]
    assert calls["n"] == 2 * used


@pytest.mark.slow
def test_resume_across_an_epoch_end_with_a_partial_group(six, tmp_path, quick_config, run_metrics, trainable_tensors):
    """6 micro-batches an epoch with --grad-accum 4: steps of 4, 2 | 4, 2. The run dies after step 3;
    resumed from checkpoint-2 (the end of epoch 0, after its partial group) and from checkpoint-1 (before
    it), both equal the uninterrupted run."""
    over = dict(max_steps=None, epochs=2, grad_accum=4, batch_size=1, save_every=1, templates=["json"])
    full = tmp_path / "full"
    run_training(quick_config(six, full, **over), log=_silent)
    info = json.loads((full / "data.json").read_text())
    assert (info["micro_batches"], info["steps_per_epoch"], info["total_steps"]) == (6, 2, 4)

    cut = tmp_path / "cut"

    def crash(step: int) -> None:
        if step == 3:
            raise Interrupted

    with pytest.raises(Interrupted):
        run_training(quick_config(six, cut, **over), on_step=crash, log=_silent)
    for newest in (2, 1):
        for later in cut.glob("checkpoint-*"):
            if int(later.name.split("-")[1]) > newest:
                shutil.rmtree(later)
        shutil.rmtree(cut / "last", ignore_errors=True)
        state = json.loads((cut / f"checkpoint-{newest}" / "trainer_state" / "state.json").read_text())
        assert (state["epoch"], state["consumed"]) == ((0, 6) if newest == 2 else (0, 4))
        result = run_training(quick_config(six, cut, resume=True, **over), log=_silent)
        assert result.steps == 4
        a, b = run_metrics(full), run_metrics(cut)
        assert [m["step"] for m in b] == [1, 2, 3, 4] and [m["epoch"] for m in b] == [0, 0, 1, 1]
        for ma, mb in zip(a, b):
            for k in ("loss", *TERMS, "lr"):
                assert ma[k] == pytest.approx(mb[k], rel=1e-6, abs=1e-7), (newest, ma["step"], k)
        ta, tb = trainable_tensors(full / "last"), trainable_tensors(cut / "last")
        for k in ta:
            torch.testing.assert_close(ta[k], tb[k], rtol=1e-5, atol=1e-6)
