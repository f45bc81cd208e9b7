"""The model sees photos in the shards' frame, and its coordinates map back to image pixels."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.model.tokens import (
    build_offline_tokenizer,
    build_processor,
    frame_size,
    set_image_frame,
)


@pytest.mark.parametrize("hw", [(448, 300), (57, 91), (1000, 1000)])
def test_frame_size_is_what_the_processor_does(hw):
    processor = build_processor(build_offline_tokenizer())
    set_image_frame(processor, 56 * 56, 84 * 84)
    grid = processor.image_processor(images=[np.zeros((*hw, 3), np.uint8)], return_tensors="pt")["image_grid_thw"][0]
    patch = processor.image_processor.patch_size
    assert frame_size(processor, *hw) == (int(grid[1]) * patch, int(grid[2]) * patch)


def test_trained_checkpoint_carries_the_shard_frame(tmp_path, build_tiny_shards, quick_config):
    import json

    from trainer.model.checkpoint import load_checkpoint
    from trainer.training.loop import run_training

    shards = build_tiny_shards(tmp_path / "data")
    run_training(quick_config(shards, tmp_path / "run", max_steps=1, val_samples=1), log=lambda s: None)
    _, processor = load_checkpoint(tmp_path / "run" / "last")
    options = json.loads((shards / "manifest.json").read_text())["options"]
    size = processor.image_processor.size
    assert (size["shortest_edge"], size["longest_edge"]) == (options["min_pixels"], options["max_pixels"])
