"""`forgery ablate` on the tiny model on CPU: a 2x2 grid, one seed, its table, resume, --part, refusals."""

from __future__ import annotations

import csv
import json
import shutil

import pytest
import yaml
from typer.testing import CliRunner

from cli import app
from trainer.ablation.grid import load_grid, stage_config
from trainer.ablation.run import job_environment, select_cells

BASE = dict(base_model="tiny", sam="tiny", max_steps=2, grad_accum=2, val_samples=2, val_mode="teacher",
            shuffle_buffer=8, templates=["json", "conclusion"], save_every=1, lr=1e-3)
GRID = {"base": BASE, "axes": {"stages": [[1], [1, 2]], "lora_alpha": [32, 8]}, "seeds": [0],
        "eval": {"split": "test", "limit": 4, "max_new_tokens": 4}}


def _ablate(tmp, shards, out, grid, *extra):
    path = tmp / "grid.yaml"
    path.write_text(yaml.safe_dump(grid, sort_keys=False))
    return CliRunner().invoke(app, ["ablate", str(path), "--data", str(shards), "--out", str(out),
                                    "--resamples", "50", *extra])


@pytest.fixture(scope="module")
def grid_run(tmp_path_factory, build_tiny_shards):
    """The 2x2 grid trained and tabulated once: (tmp, shards, out, first result)."""
    tmp = tmp_path_factory.mktemp("ablate")
    shards = build_tiny_shards(tmp)
    out = tmp / "abl"
    result = _ablate(tmp, shards, out, GRID)
    return tmp, shards, out, result


def test_a_2x2_grid_trains_each_shared_stage_once_and_writes_the_table(grid_run):
    _, _, out, result = grid_run
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader((out / "table.csv").open()))
    assert [r["cell"] for r in rows] == ["stages=1__lora_alpha=32", "stages=1__lora_alpha=8",
                                         "stages=1+2__lora_alpha=32", "stages=1+2__lora_alpha=8"]
    assert all(r["seeds"] == "1" and r["image.auc.mean"] != "" or r["image.auc.mean"] == "" for r in rows)
    assert rows[0]["image.balanced_accuracy.diff"] == ""  # the base cell has no difference to itself
    assert rows[1]["image.balanced_accuracy.diff"] != ""
    assert "± " in (out / "table.md").read_text()
    assert (out / "report.html").read_text().count("data:image/png;base64,") == 4
    stage1_runs = sorted(p.parent.parent.parent.name for p in (out / "cells").glob("*/seed-0/stage1/summary.json"))
    assert stage1_runs == ["stages=1__lora_alpha=32"]  # stage 1 trains no LoRA: one run for the 4 cells
    cell = json.loads((out / "cells" / "stages=1+2__lora_alpha=8" / "seed-0" / "cell.json").read_text())
    assert cell["stages"]["1"].endswith("stages=1__lora_alpha=32/seed-0/stage1")
    stage2 = yaml.safe_load((out / "cells" / "stages=1+2__lora_alpha=8" / "seed-0" / "stage2" / "config.yaml").read_text())
    assert stage2["lora_alpha"] == 8 and stage2["init_from"].endswith("stages=1__lora_alpha=32/seed-0/stage1/best")
    for r in rows:
        assert (out / "cells" / r["cell"] / "seed-0" / "eval" / "metrics.json").is_file()


def test_a_second_run_trains_nothing(grid_run):
    tmp, shards, out, _ = grid_run
    stamps = {p: p.stat().st_mtime_ns for p in (out / "cells").glob("*/seed-0/*/summary.json")}
    again = _ablate(tmp, shards, out, GRID)
    assert again.exit_code == 0, again.output
    assert "0 of 6 task(s) to do" in again.output
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps


def test_a_killed_cell_resumes_from_its_checkpoint(grid_run):
    tmp, shards, out, _ = grid_run
    cell = out / "cells" / "stages=1+2__lora_alpha=8" / "seed-0"
    run = cell / "stage2"
    for gone in ("summary.json", "last", "best", "checkpoint-2"):  # killed after its step-1 checkpoint
        p = run / gone
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    shutil.rmtree(cell / "eval")
    result = _ablate(tmp, shards, out, GRID, "--jobs", "2")  # the worker processes' path too
    assert result.exit_code == 0, result.output
    assert "2 of 6 task(s) to do" in result.output
    log = (out / "tasks" / "train-stages=1+2__lora_alpha=8--seed-0--stage2.log").read_text()
    assert "stages=1__lora_alpha=32/seed-0/stage1" not in result.output  # the shared stage 1 is not retrained
    assert "continuing from checkpoint-1 (--resume)" in log
    assert json.loads((run / "summary.json").read_text())["steps"] == 2
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2]
    assert (cell / "eval" / "metrics.json").is_file()


@pytest.mark.parametrize("axes, named", [
    ({"lora_alfa": [8, 32]}, ["cell lora_alfa=8", "lora_alfa"]),
    ({"stages": [[1]], "lora_alpha": [32, -1]}, ["cell stages=1__lora_alpha=-1", "--lora-r", "alpha=-1"]),
    ({"cls_position": ["after-verdict", "sideways"]}, ["cell cls_position=sideways", "--cls-position"]),
    ({"lora_alpha": []}, ["axis lora_alpha", "empty"]),
    ({"head_lr": [1e-3, -1]}, ["cell head_lr=-1", "--head-lr"]),
    ({"stages": [[2]]}, ["axis stages", "[2]"]),
])
def test_a_bad_grid_exits_2_naming_the_cell_and_option_before_training(grid_run, axes, named):
    tmp, shards, _, _ = grid_run
    out = tmp / "bad"
    result = _ablate(tmp, shards, out, {**GRID, "axes": axes})
    assert result.exit_code == 2, result.output
    for words in named:
        assert words in result.output
    assert not out.exists()


def test_a_head_lr_axis_gives_each_cell_its_head_learning_rate(grid_run):
    _, shards, out, _ = grid_run
    grid = load_grid({**GRID, "axes": {"head_lr": [1e-4, 3e-3]}}, shards, out / "head-lr")
    rates = {c.id: {stage_config(grid.runs[k], shards, out, None).head_lr for k in c.chains[0]} for c in grid.cells}
    assert rates == {"head_lr=0.0001": {1e-4}, "head_lr=0.003": {3e-3}}


def test_parts_deal_whole_families_and_jobs_get_gpus_round_robin(grid_run):
    tmp, shards, _, _ = grid_run
    grid = load_grid({**GRID, "seeds": [0, 1, 2]}, shards, tmp / "x")
    parts = [{(c.id, s) for c, s in select_cells(grid, (i, 2))} for i in (1, 2)]
    assert parts[0] and parts[1] and not parts[0] & parts[1]
    assert len(parts[0] | parts[1]) == len(grid.cells) * 3
    for share in parts:  # a cell [1, 2] travels with the [1] cell whose stage-1 run it shares
        for cid, s in share:
            if cid.startswith("stages=1+2"):
                assert (cid.replace("stages=1+2", "stages=1"), s) in share
    env = {"CUDA_VISIBLE_DEVICES": "3,5"}
    assert [job_environment(j, ["3", "5"], env)["CUDA_VISIBLE_DEVICES"] for j in range(3)] == ["3", "5", "3"]
    assert "CUDA_VISIBLE_DEVICES" not in job_environment(0, [], {})


def test_the_documented_grids_are_the_demos_and_the_notes(grid_run):
    from pathlib import Path

    from trainer.demo import QUICK_GRID

    tmp, shards, _, _ = grid_run
    docs = Path(__file__).resolve().parents[2] / "docs" / "ablation"
    assert yaml.safe_load((docs / "quick-grid.yaml").read_text()) == QUICK_GRID
    notes = load_grid(docs / "notes-grid.yaml", shards, tmp / "notes")
    assert len(notes.cells) == 8 and notes.seeds == [0, 1, 2]  # the base cell + one change per other value
    assert {k for c in notes.cells[1:] for k, v in c.values.items() if v != notes.base.values[k]} == \
        {"stages", "hidden_layer", "lora_alpha", "cls_position", "mask_position", "expert"}
    tiny = load_grid(docs / "notes-grid-tiny.yaml", shards, tmp / "notes-tiny")  # the same axes + block masking
    extra = ("block_mask", "loss", "language_model")  # + the field controls
    assert {k: v for k, v in tiny.axes.items() if k not in extra}.keys() == notes.axes.keys()
    assert len(tiny.cells) == 11 and tiny.seeds == [0, 1, 2]


def test_the_tiny_notes_grid_has_the_field_controls(grid_run):
    from pathlib import Path

    from trainer.ablation.grid import stage_config

    tmp, shards, _, _ = grid_run
    docs = Path(__file__).resolve().parents[2] / "docs" / "ablation"
    tiny = load_grid(docs / "notes-grid-tiny.yaml", shards, tmp / "controls")
    assert tiny.base.stages == (1, 2, 3) and tiny.base.values["language_model"] == "qwen"
    text_off = [c for c in tiny.cells if c.values["loss"] == {"text": 0.0}]
    llm_free = [c for c in tiny.cells if c.values["language_model"] == "none"]
    assert len(text_off) == 1 and len(llm_free) == 1
    assert text_off[0].stages == (1, 2, 3)
    for key in text_off[0].chains[0]:  # every stage trains with the text loss off
        assert stage_config(tiny.runs[key], shards, tmp / "controls", None).loss.text == 0.0
    assert llm_free[0].stages == (1,) and "stages=1__" in llm_free[0].id  # stages 2, 3 adapt an LLM it lacks
    (key,) = llm_free[0].chains[0]
    assert stage_config(tiny.runs[key], shards, tmp / "controls", None).language_model == "none"


def test_a_vision_lora_cell_takes_the_lora_options_at_stage_1(grid_run):
    tmp, shards, _, _ = grid_run
    grid = {"base": BASE, "axes": {"train_vision": ["none", "lora"], "lora_r": [4]}, "seeds": [0]}
    cells = load_grid(grid, shards, tmp / "vision").cells
    opts = {c.values["train_vision"]: load_grid(grid, shards, tmp / "vision").runs[c.chains[0][0]].options
            for c in cells}
    assert opts["lora"]["lora_r"] == 4 and "lora_r" not in opts["none"]


def test_the_bootstrap_auc_is_sklearns():
    import numpy as np
    from sklearn.metrics import roc_auc_score

    from trainer.ablation.table import _auc

    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 50)
    v = np.round(rng.random(50), 1)  # ties
    assert _auc(y, v) == pytest.approx(roc_auc_score(y, v))
    assert np.isnan(_auc(np.ones(5, int), v[:5]))


def test_llm_free_cells_of_several_chains_are_one_stage_1_cell(grid_run):
    tmp, shards, _, _ = grid_run
    grid = {"base": BASE, "axes": {"stages": [[1], [1, 2]], "language_model": ["qwen", "none"]}, "seeds": [0]}
    cells = load_grid(grid, shards, tmp / "llm-free").cells
    assert sorted((c.stages, c.values["language_model"]) for c in cells) == \
        [((1,), "none"), ((1,), "qwen"), ((1, 2), "qwen")]
