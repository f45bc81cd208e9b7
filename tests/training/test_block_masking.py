"""Block masking (--block-mask): the schedule, a draw that ignores the mask and the label and repeats,
hidden pixels out of every pixel loss, an all-hidden forgery out of cls/text/contrastive, off by
default, the options, and the step record."""

from __future__ import annotations

import dataclasses
import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from cli import app
from trainer.model.positions import ForensicPositions
from trainer.training.block_masking import (
    FILL_RGB,
    BlockMaskConfig,
    block_rng,
    draw_blocks,
    evidence_hidden,
    hidden_pixels,
    hide_blocks,
    scheduled_share,
)
from trainer.training.config import ConfigError, TrainConfig
from trainer.training.data import (
    DataOptions,
    decode_image,
    decode_mask,
    make_batch,
    rank_chunks,
    shard_urls,
)
from trainer.training.losses import EmbeddingQueue, boundary_loss, dice_loss, mask_bce, total_loss

MASK = (32, 32)


@pytest.fixture(scope="module")
def data(tmp_path_factory, build_tiny_shards):
    return build_tiny_shards(tmp_path_factory.mktemp("blocks") / "data")


@pytest.fixture(scope="module")
def urls(data):
    return shard_urls(data, "train")


@pytest.fixture(scope="module")
def fake(urls):
    """A forged training sample with a non-empty mask."""
    for _, chunk in rank_chunks(urls, DataOptions(shuffle_buffer=0), 0):
        s = chunk[0]
        if s.label == 1 and s.mask is not None and decode_mask(s.mask, decode_image(s.image).shape[:2]).any():
            return s
    raise AssertionError("the tiny shards hold no forged sample with a mask")


def _on(share: float = 0.6, **kw) -> BlockMaskConfig:
    """Block masking at its final share from epoch 1 on (run_epochs 1)."""
    return BlockMaskConfig(share=share, epoch_micro_batches=8, run_epochs=1.0, **kw)


# -- the schedule -------------------------------------------------------------------------------


def test_schedule_grows_linearly_over_the_ramp():
    cfg = BlockMaskConfig(share=0.4, epoch_micro_batches=100, run_epochs=2.0)
    assert scheduled_share(cfg, 0, 0) == 0.0  # the run's first micro-batch hides nothing
    assert scheduled_share(cfg, 0, 50) == pytest.approx(0.1)
    assert scheduled_share(cfg, 1, 0) == pytest.approx(0.2)  # half the run
    assert scheduled_share(cfg, 1, 99) == pytest.approx(0.4 * 199 / 200)  # the last one: the final share
    fast = dataclasses.replace(cfg, ramp=0.5)
    assert scheduled_share(fast, 0, 50) == pytest.approx(0.2)
    assert scheduled_share(fast, 1, 0) == pytest.approx(0.4) == scheduled_share(fast, 1, 60)  # then constant
    assert all(scheduled_share(BlockMaskConfig(), e, i) == 0.0 for e in range(3) for i in (0, 7, 99))


def test_hidden_share_follows_the_schedule():
    """Each image within 0.03 of the scheduled share (a 8 x 12 grid: one cell is 1/96 of the image),
    the mean of 200 within 0.01 (the cell count is rounded stochastically, so it is unbiased)."""
    image = np.full((90, 130, 3), 200, np.uint8)
    for share in (0.1, 0.35, 0.6):
        got = [hide_blocks(image, _on(share), seed=0, epoch=1, index=0, sample=i)[1].mean() for i in range(200)]
        assert max(abs(g - share) for g in got) <= 0.03, share
        assert abs(np.mean(got) - share) <= 0.01, share


def test_batches_follow_the_schedule(urls, tiny_processor):
    """Through make_batch: 1 - mean(pixel_valid) within 0.05 of the scheduled share (the 32 x 32 mask
    frame samples the blocks, nearest)."""
    cfg = BlockMaskConfig(share=0.6, epoch_micro_batches=8, run_epochs=1.0)
    opts = DataOptions(seed=1, shuffle_buffer=8, mask_size=MASK, block_mask=cfg)
    shares = []
    for index, chunk in list(rank_chunks(urls, opts, 0))[:8]:
        batch = make_batch(chunk, tiny_processor(), opts, epoch=0, index=index)
        hidden = 1.0 - float(batch["pixel_valid"].mean())
        assert hidden == pytest.approx(scheduled_share(cfg, 0, index), abs=0.05), index
        shares.append(hidden)
    assert shares[0] == 0.0 and shares[-1] > 0.4


# -- the draw -----------------------------------------------------------------------------------


def test_blocks_ignore_the_mask_and_the_label(fake, tiny_processor):
    """The same (seed, epoch, index) hides the same blocks whatever the sample's mask and label."""
    real = dataclasses.replace(fake, label=0, mask=None)
    other_mask = dataclasses.replace(fake, mask=_png(np.ones(decode_image(fake.image).shape[:2], bool)))
    opts = DataOptions(seed=3, mask_size=MASK, block_mask=_on())
    a, b, c = (make_batch([s], tiny_processor(), opts, epoch=1, index=4) for s in (fake, real, other_mask))
    assert 0.3 < 1 - float(a["pixel_valid"].mean()) < 0.9
    for other in (b, c):
        assert torch.equal(a["pixel_valid"], other["pixel_valid"])
        assert torch.equal(a["pixel_values"], other["pixel_values"])  # the same image went in
        assert torch.equal(a["sam_images"], other["sam_images"])


def test_blocks_fall_inside_and_outside_the_forged_region(fake):
    """Over many draws the forged and the authentic pixels are hidden alike (0.5 each, within 0.08)."""
    image = decode_image(fake.image)
    mask = decode_mask(fake.mask, image.shape[:2])
    inside, outside = [], []
    for i in range(60):
        out, hidden = hide_blocks(image, _on(0.5), seed=0, epoch=1, index=0, sample=i)
        inside.append(hidden[mask].mean())
        outside.append(hidden[~mask].mean())
        assert (out[hidden] == FILL_RGB).all() and (out[~hidden] == image[~hidden]).all()
    assert abs(np.mean(inside) - 0.5) < 0.08 and abs(np.mean(outside) - 0.5) < 0.08


def test_the_draw_is_deterministic(fake, tiny_processor):
    params = draw_blocks((90, 130), 0.3, 0.125, block_rng(0, 2, 5))
    assert params == draw_blocks((90, 130), 0.3, 0.125, block_rng(0, 2, 5)) and json.loads(json.dumps(params)) == params
    assert params != draw_blocks((90, 130), 0.3, 0.125, block_rng(0, 3, 5))
    assert params != draw_blocks((90, 130), 0.3, 0.125, block_rng(1, 2, 5))
    assert hidden_pixels(params, (90, 130)).sum() > 0
    opts = DataOptions(seed=3, mask_size=MASK, block_mask=_on())
    a, b = (make_batch([fake], tiny_processor(), opts, epoch=1, index=2) for _ in range(2))
    assert torch.equal(a["pixel_valid"], b["pixel_valid"]) and torch.equal(a["pixel_values"], b["pixel_values"])
    assert a["sam_keys"] == b["sam_keys"] != [fake.key]  # a masked image is not the cached original
    c = make_batch([fake], tiny_processor(), opts, epoch=1, index=3)
    assert not torch.equal(a["pixel_valid"], c["pixel_valid"])


def test_off_by_default_the_batch_is_unchanged(fake, tiny_processor):
    from trainer.model.tokens import encode_conversation

    assert TrainConfig().block_mask == 0.0 and DataOptions().block_mask.share == 0.0
    batch = make_batch([fake], tiny_processor(), DataOptions(mask_size=MASK), epoch=3, index=2)
    assert "pixel_valid" not in batch and "evidence_weight" not in batch
    image = Image.fromarray(decode_image(fake.image))
    plain = encode_conversation(tiny_processor(), [fake.meta["messages"]], [[image]])
    for k in plain:
        assert torch.equal(batch[k], plain[k]), k
    assert batch["sam_keys"] == [fake.key]


def _png(mask: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8) * 255, "L").save(buf, format="PNG")
    return buf.getvalue()


# -- the losses ---------------------------------------------------------------------------------


def _pixels():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 1, 16, 16, generator=g)
    target = torch.zeros(2, 1, 16, 16)
    target[:, :, 4:12, 3:10] = 1
    valid = torch.ones(2, 1, 16, 16)
    valid[:, :, :, 7:] = 0  # across the forged region and its edge band
    valid[1, :, :6] = 0
    noise = 5 * torch.randn(2, 1, 16, 16, generator=g)
    return logits, target, valid, noise


@pytest.mark.parametrize("loss", [mask_bce, dice_loss, lambda x, t, pixel_weight=None: boundary_loss(
    x, t, width=1, pixel_weight=pixel_weight)], ids=["bce", "dice", "boundary"])
def test_hidden_pixels_have_zero_weight(loss):
    logits, target, valid, noise = _pixels()
    under_hidden = logits + noise * (1 - valid)
    assert loss(logits, target, pixel_weight=valid).item() == pytest.approx(
        loss(under_hidden, target, pixel_weight=valid).item(), rel=1e-6)
    assert loss(logits, target).item() != pytest.approx(loss(under_hidden, target).item(), rel=1e-3)  # counted without
    under_visible = logits + noise * valid
    assert loss(logits, target, pixel_weight=valid).item() != pytest.approx(
        loss(under_visible, target, pixel_weight=valid).item(), rel=1e-3)


def _outputs(mask_logits: torch.Tensor) -> SimpleNamespace:
    g = torch.Generator().manual_seed(1)
    b = mask_logits.shape[0]
    return SimpleNamespace(
        text_loss=None, cls_logit=torch.randn(b, generator=g), cls_embedding=torch.randn(b, 4, generator=g),
        mask_prompts=torch.zeros(b, 32, 256), mask_logits=mask_logits, unused_zero=torch.zeros(()),
        positions=ForensicPositions(
            cls=torch.zeros(b, dtype=torch.long), has_cls=torch.ones(b, dtype=torch.bool),
            masks=torch.zeros(b, 32, dtype=torch.long), has_masks=torch.ones(b, dtype=torch.bool)))


def _queue() -> EmbeddingQueue:
    q = EmbeddingQueue(size=16)
    q.push(torch.randn(4, 4, generator=torch.Generator().manual_seed(2)), torch.tensor([0, 1, 0, 1]))
    return q


def test_total_loss_leaves_hidden_pixels_out():
    logits, target, valid, noise = _pixels()
    a = total_loss(_outputs(logits), cls_target=torch.tensor([1.0, 0.0]), mask_target=target, pixel_valid=valid)
    b = total_loss(_outputs(logits + noise * (1 - valid)), cls_target=torch.tensor([1.0, 0.0]), mask_target=target,
                   pixel_valid=valid)
    for k in ("mask_bce", "mask_dice", "mask_boundary"):
        assert a.parts[k] == pytest.approx(b.parts[k], rel=1e-6), k


def test_an_all_hidden_forgery_is_no_evidence_in_the_loss():
    """Evidence weight 0: the sample's cls and contrastive terms (and queue entry) go, its mask terms stay."""
    logits, target, valid, noise = _pixels()
    cls_target, drop = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])

    def run(out, weight, queue=None):
        return total_loss(out, cls_target=cls_target, mask_target=target, pixel_valid=valid, evidence_weight=weight,
                          queue=queue if queue is not None else _queue())

    base, moved = _outputs(logits), _outputs(logits)
    moved.cls_logit[0] += 3.0
    moved.cls_embedding[0] = -moved.cls_embedding[0]
    for k in ("cls", "contrastive"):
        assert run(base, drop).parts[k] == pytest.approx(run(moved, drop).parts[k], rel=1e-6), k
        assert run(base, None).parts[k] != pytest.approx(run(moved, None).parts[k], rel=1e-3), k
    queue = _queue()
    run(base, drop, queue)
    assert len(queue) == 5 and int(queue.labels[-1]) == 0  # only the real sample was remembered
    seen = _outputs(logits + noise * valid * torch.tensor([1.0, 0.0]).view(2, 1, 1, 1))  # sample 0's visible pixels
    assert run(base, drop).parts["mask_bce"] != pytest.approx(run(seen, drop).parts["mask_bce"], rel=1e-3)


def test_evidence_hidden_rule():
    mask = np.zeros((8, 8), bool)
    mask[2:4, 2:4] = True
    hidden = np.zeros((8, 8), bool)
    hidden[1:5, 1:5] = True
    assert evidence_hidden(mask, hidden)
    hidden[3, 3] = False
    assert not evidence_hidden(mask, hidden)  # one forged pixel shows
    assert not evidence_hidden(np.zeros((8, 8), bool), np.ones((8, 8), bool))  # no forged region: nothing to hide


def test_an_all_hidden_forgery_leaves_the_text_and_cls(urls, tiny_processor):
    """In make_batch: evidence_weight 0 and an all -100 labels row for the forged sample whose forged
    pixels are all hidden; the authentic sample beside it keeps its answer."""
    opts = DataOptions(seed=0, batch_size=2, shuffle_buffer=8, mask_size=MASK, block_mask=_on(0.95, size=1.0))
    found = 0
    for index, chunk in list(rank_chunks(urls, opts, 1))[:6]:
        batch = make_batch(chunk, tiny_processor(), opts, epoch=1, index=index)
        for j, s in enumerate(chunk):
            labelled = bool((batch["labels"][j] != -100).any())
            if batch["evidence_weight"][j] == 0:
                found += 1
                assert s.label == 1 and not labelled
                assert float((batch["pixel_valid"][j] * batch["mask_target"][j]).sum()) == 0.0
            else:
                assert labelled
    assert found >= 1


# -- options and the run ------------------------------------------------------------------------


@pytest.mark.parametrize("option, value", [("block_mask", 1.0), ("block_mask", -0.1), ("block_mask", math.nan),
                                           ("block_mask_size", 0.0), ("block_mask_size", 1.5),
                                           ("block_mask_ramp", 0.0), ("block_mask_ramp", 2.0)])
def test_block_mask_options_are_checked(tmp_path, option, value):
    cfg = TrainConfig(data=str(tmp_path), out=str(tmp_path / "r"), base_model="tiny", sam="tiny", **{option: value})
    with pytest.raises(ConfigError, match="--" + option.replace("_", "-") + ":"):
        cfg.validate()


def test_a_run_logs_the_hidden_share_and_the_dropped_evidence(tmp_path, build_small, run_metrics):
    """Two steps of two micro-batches over an epoch of 4 (run_epochs 1): step 1 hides about
    (0 + 0.15) / 2, step 2 about (0.3 + 0.45) / 2 of the image (within 0.06: 4 x 6 blocks)."""
    shards, _, _ = build_small(tmp_path / "data", n_sources=3, templates={"json": 1.0}, min_pixels=56 * 56,
                               max_pixels=84 * 84)
    (tmp_path / "c.yaml").write_text("val_samples: 2\nval_mode: teacher\nshuffle_buffer: 8\nprogress: false\n")
    run = tmp_path / "run"
    result = CliRunner().invoke(app, [
        "train", "--stage", "1", "--data", str(shards), "--out", str(run), "--base-model", "tiny", "--sam", "tiny",
        "--max-steps", "2", "--grad-accum", "2", "--templates", "json", "--block-mask", "0.6",
        "--block-mask-size", "0.25", "--config", str(tmp_path / "c.yaml")])
    assert result.exit_code == 0, result.output
    assert json.loads((run / "data.json").read_text())["micro_batches"] == 4
    lines = run_metrics(run)
    assert [m["block_share"] for m in lines] == pytest.approx([0.075, 0.375], abs=0.06)
    assert all(isinstance(m["evidence_dropped"], int) and 0 <= m["evidence_dropped"] <= 2 for m in lines)
    assert "block_mask: 0.6" in (run / "config.yaml").read_text()
