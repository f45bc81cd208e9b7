"""Exact resume after an interruption; the NaN/inf guard; no poisoned checkpoint."""

from __future__ import annotations

import math

import pytest
import torch

import trainer.training.loop as loop
from trainer.training.loop import TERMS, run_training


class Interrupted(Exception):
    pass


@pytest.fixture(scope="module")
def data(tmp_path_factory, build_tiny_shards):
    return build_tiny_shards(tmp_path_factory.mktemp("resume") / "data")


def _silent(s: str) -> None:
    pass


@pytest.mark.parametrize("workers, accum", [(0, 2), (2, 3)])
def test_resume_gives_the_same_losses(data, tmp_path, quick_config, run_metrics, trainable_tensors, workers, accum):
    """Also with 2 DataLoader workers reading their own share (each skips its part of the position)."""
    over = dict(max_steps=3, grad_accum=accum, save_every=2, batch_size=1, num_workers=workers)
    full = tmp_path / "full"
    run_training(quick_config(data, full, **over), log=_silent)

    cut = tmp_path / "cut"

    def crash(step: int) -> None:
        if step == 3:
            raise Interrupted  # dies after step 3, before its end state; the newest checkpoint is checkpoint-2

    with pytest.raises(Interrupted):
        run_training(quick_config(data, cut, **over), on_step=crash, log=_silent)
    assert (cut / "checkpoint-2").is_dir() and not (cut / "last").exists()
    assert [m["step"] for m in run_metrics(cut)] == [1, 2, 3]

    result = run_training(quick_config(data, cut, resume=True, **over), log=_silent)  # the same command, resumed
    assert result.steps == 3
    a, b = run_metrics(full), run_metrics(cut)
    assert [m["step"] for m in b] == [1, 2, 3]  # step 3 was redone, not duplicated
    for ma, mb in zip(a, b):
        for k in ("loss", *TERMS, "lr"):
            assert ma[k] == pytest.approx(mb[k], rel=1e-6, abs=1e-7), (ma["step"], k)
    ta, tb = trainable_tensors(full / "last"), trainable_tensors(cut / "last")
    assert ta.keys() == tb.keys()
    for k in ta:
        torch.testing.assert_close(ta[k], tb[k], rtol=1e-5, atol=1e-6)


def test_resume_without_checkpoint_is_an_error(data, tmp_path, quick_config):
    from trainer.training.config import ConfigError

    with pytest.raises(ConfigError, match="--resume"):
        run_training(quick_config(data, tmp_path / "none", resume=True), log=_silent)


def test_nan_loss_skips_the_step(data, tmp_path, monkeypatch, quick_config, run_metrics, trainable_tensors):
    real = loop.compute_loss
    calls = {"n": 0}

    def flaky(model, batch, weights, queue):
        calls["n"] += 1
        br = real(model, batch, weights, queue)
        if calls["n"] == 2:  # the only micro-batch of step 2
            br.total = br.total * float("nan")
        return br

    monkeypatch.setattr(loop, "compute_loss", flaky)
    run = tmp_path / "nan"
    with pytest.warns(RuntimeWarning, match="skipped"):
        result = run_training(quick_config(data, run, max_steps=3, grad_accum=1, batch_size=2, save_every=1),
                              log=_silent)
    assert result.skipped_steps == 1
    lines = run_metrics(run)
    assert lines[1]["step"] == 2 and lines[1]["skipped"] == "non-finite loss" and lines[1]["loss"] is None
    assert "skipped" not in lines[0] and "skipped" not in lines[2]
    one, two, three = (trainable_tensors(run / f"checkpoint-{s}") for s in (1, 2, 3))
    assert all(torch.equal(one[k], two[k]) for k in one)  # the skipped step changed nothing
    assert any(not torch.equal(two[k], three[k]) for k in two)  # training went on
    assert all(bool(torch.isfinite(v).all()) for v in three.values())


def test_no_poisoned_checkpoint(data, tmp_path, quick_config, run_metrics):
    run = tmp_path / "poison"
    holder = {}

    def poison(step: int) -> None:
        if step == 1:
            model = holder["run"].unwrapped
            with torch.no_grad():
                next(p for p in model.cls_head.parameters()).fill_(math.nan)

    original = loop._Run.__init__

    def capture(self, *a, **k):
        original(self, *a, **k)
        holder["run"] = self

    mp = pytest.MonkeyPatch()
    mp.setattr(loop._Run, "__init__", capture)
    try:
        with pytest.raises(RuntimeError, match="refusing"):
            with pytest.warns(RuntimeWarning):
                run_training(quick_config(data, run, max_steps=2, grad_accum=1, batch_size=2, save_every=1),
                             on_step=poison, log=_silent)
    finally:
        mp.undo()
    assert (run / "checkpoint-1").is_dir()
    assert not (run / "checkpoint-2").exists() and not (run / "last").exists()
    assert run_metrics(run)[1]["skipped"]  # the poisoned parameters made step 2 non-finite
