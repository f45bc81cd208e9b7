"""Helpers for the trainer tests: tiny shards, quick configs, reading runs back."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from trainer.training.config import TrainConfig, load_config

TINY_PIXELS = dict(min_pixels=56 * 56, max_pixels=84 * 84)


def build_tiny_shards(root: Path) -> Path:
    """Shards from the hand-written sample tree (tests/shards_fixtures.py), small frames.

    Templates json and conclusion only (short answers keep the CPU runs fast); train/val/test.
    """
    from tests.shards_fixtures import build_small

    shards, _, _ = build_small(root, n_sources=10, templates={"json": 0.8, "conclusion": 0.2},
                               splits=(0.6, 0.2, 0.2), **TINY_PIXELS)
    return shards


def quick_config(data: Path, out: Path, **over) -> TrainConfig:
    """A few-step CPU config: teacher-forced validation on 2 samples, no progress bar."""
    values = dict(stage=1, data=str(data), out=str(out), max_steps=2, grad_accum=2, val_samples=2,
                  val_mode="teacher", shuffle_buffer=8, progress=False, templates=["json", "conclusion"])
    values.update(over)
    return load_config(None, values)


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]


def trainable_tensors(checkpoint: Path) -> dict[str, torch.Tensor]:
    return load_file(str(checkpoint / "trainer_state" / "trainable.safetensors"))
