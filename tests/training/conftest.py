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
