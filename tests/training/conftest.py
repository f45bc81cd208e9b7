"""Fixtures for the trainer tests: reading runs back.

Tiny shards and quick configs (``build_tiny_shards``, ``quick_config``) live in tests/conftest.py:
tests/model/test_model_frame.py uses them too.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file


def _run_metrics(run: Path) -> list[dict]:
    """The lines of a run's metrics.jsonl, parsed."""
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]


def _trainable_tensors(checkpoint: Path) -> dict[str, torch.Tensor]:
    """The trainable tensors a checkpoint saved."""
    return load_file(str(checkpoint / "trainer_state" / "trainable.safetensors"))


@pytest.fixture(scope="session")
def run_metrics():
    """Reads a run's metrics.jsonl back: ``run_metrics(run) -> list of dicts``, one a step."""
    return _run_metrics


@pytest.fixture(scope="session")
def trainable_tensors():
    """Reads the trainable tensors of a checkpoint: ``trainable_tensors(checkpoint) -> {name: tensor}``."""
    return _trainable_tensors


def _build_separable_shards(make_sample_tree, root: Path) -> Path:
    """Tiny shards whose classes a head can tell from the image alone: every forged sample of the sample
    tree (tests/conftest.py) has its left half painted white (mask = that half), authentic ones are the
    photos. Small frames, json template, train/val/test."""
    import numpy as np
    from PIL import Image

    from forgery_synth.dataset.shard_options import ShardOptions
    from forgery_synth.dataset.shards import build_shards
    samples, photos = make_sample_tree(root, n_sources=8)
    for line in (samples / "index.jsonl").read_text().splitlines():
        entry = json.loads(line)
        if entry["label"] != "fake":
            continue
        image = np.asarray(Image.open(samples / entry["image"]).convert("RGB")).copy()
        mask = np.zeros(image.shape[:2], np.uint8)
        mask[:, : image.shape[1] // 2] = 255
        image[mask > 0] = 255
        Image.fromarray(image).save(samples / entry["image"])
        Image.fromarray(mask, "L").save(samples / entry["mask"])
        log_path = samples / entry["log"]
        log = json.loads(log_path.read_text())
        log["mask_area"] = float((mask > 0).mean())
        log_path.write_text(json.dumps(log))
    build_shards(ShardOptions(out=root / "shards", samples=[samples], real=[photos], templates={"json": 1.0},
                              splits=(0.6, 0.2, 0.2), min_pixels=56 * 56, max_pixels=84 * 84))
    return root / "shards"


@pytest.fixture(scope="session")
def build_separable_shards(make_sample_tree):
    """Writes tiny shards (build_tiny_shards' frames) whose forged images are told apart by their white
    left half: ``build_separable_shards(root) -> shard_dir``."""
    return lambda root: _build_separable_shards(make_sample_tree, root)


@pytest.fixture(scope="session")
def tiny_cli_run(build_tiny_shards):
    """Tiny shards and one 2-step stage-1 ``forgery train`` through the CLI with extra options:
    ``tiny_cli_run(root, *options) -> {"data", "run", "output"}`` (exit 0 asserted)."""
    from typer.testing import CliRunner

    from cli import app

    def run(root, *options: str) -> dict:
        data = build_tiny_shards(root / "data")
        conf = root / "quick.yaml"
        conf.write_text("val_samples: 2\nval_mode: teacher\nshuffle_buffer: 8\nprogress: false\n")
        out = root / "run"
        result = CliRunner().invoke(app, [
            "train", "--stage", "1", "--data", str(data), "--out", str(out), "--base-model", "tiny", "--sam", "tiny",
            "--max-steps", "2", "--grad-accum", "2", "--templates", "json,conclusion", "--config", str(conf), *options])
        assert result.exit_code == 0, result.output
        return {"data": data, "run": out, "output": result.output}

    return run
