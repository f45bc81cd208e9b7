"""Data pipeline (balance, determinism, workers, ranks, resume position), config, augmentation,
adversarial perturbation. No model training here."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trainer.model.build_model import build_forensics_model
from trainer.training.adversarial import (
    AdversarialConfig,
    decode_pixel_values,
    is_adversarial_step,
    patch_view,
    perturb_pixels,
)
from trainer.training.augment import AugmentConfig, ask_inference_prompt, augment_image, paraphrase_prompt
from trainer.training.config import ConfigError, LossWeights, TrainConfig, load_config
from trainer.training.data import (
    DataOptions,
    ShardBatches,
    count_epoch,
    epoch_slots,
    make_loader,
    rank_chunks,
    shard_counts,
    shard_urls,
    slot_blocks,
    slot_samples,
)
from trainer.training.loop import compute_loss


@pytest.fixture(scope="module")
def urls(tmp_path_factory, build_tiny_shards):
    data = build_tiny_shards(tmp_path_factory.mktemp("data") / "data")
    return shard_urls(data, "train")


def _labels(urls, opts, epoch=0):
    return [(i, [s.label for s in chunk]) for i, chunk in rank_chunks(urls, opts, epoch)]


def test_batch1_alternates_so_every_accumulation_group_has_both_classes(urls):
    opts = DataOptions(seed=3, batch_size=1, shuffle_buffer=8)
    seq = [c[0] for _, c in _labels(urls, opts)]
    counts = count_epoch(urls, opts)
    assert len(seq) == counts["balanced"] == 2 * min(counts["real"], counts["fake"])
    assert all(a != b for a, b in zip(seq, seq[1:]))
    for accum in (2, 3, 4):
        groups = [seq[i : i + accum] for i in range(0, len(seq) - accum + 1, accum)]
        assert all(set(g) == {0, 1} for g in groups)


def test_padded_batches_mix_labels(urls):
    for bs in (2, 4):
        chunks = _labels(urls, DataOptions(seed=1, batch_size=bs, shuffle_buffer=8))
        assert chunks and all(len(c) == bs and set(c) == {0, 1} for _, c in chunks)


def test_order_is_deterministic_by_seed_and_epoch(urls):
    keys = lambda seed, epoch: [s.key for _, c in rank_chunks(urls, DataOptions(seed=seed, shuffle_buffer=8), epoch) for s in c]
    assert keys(0, 0) == keys(0, 0)
    assert keys(0, 0) != keys(0, 1) and keys(0, 0) != keys(1, 0)
    assert sorted(keys(0, 0)) != keys(0, 0) or len(keys(0, 0)) < 3


@pytest.fixture(scope="module")
def many(tmp_path_factory, build_small):
    """Train shards of 3 samples each (about 8 shards), json and conclusion."""
    shards, _, _ = build_small(tmp_path_factory.mktemp("many"), n_sources=10, shard_size=3,
                               templates={"json": 0.6, "conclusion": 0.4}, splits=(0.8, 0.1, 0.1),
                               min_pixels=56 * 56, max_pixels=84 * 84)
    return shard_urls(shards, "train")


def _slot_keys(urls, opts, epoch):
    w = max(1, opts.workers)
    return [[s.key for s in slot_samples(urls, opts, epoch, slot)] for slot in range(opts.world_size * w)]


@pytest.mark.parametrize("world_size, workers", [(1, 1), (2, 2), (4, 2), (3, 0)])
def test_slots_read_each_shard_once_and_take_each_sample_at_most_once(many, world_size, workers):
    opts = DataOptions(seed=2, shuffle_buffer=4, world_size=world_size, workers=workers)
    slots = epoch_slots(len(many), opts, 1)
    read = [shard for sh in slots for shard, _, _ in sh]
    if len(many) >= len(slots):
        assert sorted(read) == list(range(len(many)))  # bytes read per epoch = the dataset once
    else:
        assert set(read) == set(range(len(many)))
    keys = [k for slot in _slot_keys(many, opts, 1) for k in slot]
    assert len(keys) == len(set(keys)) and keys


@pytest.mark.parametrize("world_size, workers", [(2, 2), (1, 3)])
def test_shared_shards_split_their_samples(urls, world_size, workers):
    """Fewer shards than slots: the slots on a shard keep disjoint shares of it, deterministically."""
    opts = DataOptions(seed=1, shuffle_buffer=0, world_size=world_size, workers=workers)
    assert len(urls) < world_size * workers
    first, again = _slot_keys(urls, opts, 0), _slot_keys(urls, opts, 0)
    keys = [k for slot in first for k in slot]
    assert first == again and len(keys) == len(set(keys)) and sum(1 for slot in first if slot) >= 2
    assert "reads the shards" in " ".join(count_epoch(urls, opts)["notes"])


def test_ranks_keep_alternating_over_their_workers(many):
    for workers in (0, 2, 3):
        for rank in (0, 1):
            opts = DataOptions(seed=2, shuffle_buffer=4, rank=rank, world_size=2, workers=workers)
            seq = [c[0] for _, c in _labels(many, opts)]
            assert seq and all(a != b for a, b in zip(seq, seq[1:]))
    chunks = _labels(many, DataOptions(seed=2, batch_size=2, shuffle_buffer=4, world_size=2, workers=2))
    assert chunks and all(set(c) == {0, 1} for _, c in chunks)


@pytest.mark.parametrize("seed, epoch, templates, batch_size, world_size, workers", [
    (0, 0, None, 1, 1, 0), (1, 2, None, 1, 2, 2), (2, 1, ("json",), 2, 2, 1), (3, 0, ("conclusion",), 1, 1, 3),
    (4, 3, None, 3, 4, 2), (5, 1, ("json", "conclusion"), 2, 3, 0), (6, 0, None, 1, 8, 2)])
def test_epoch_length_from_the_manifest_is_exact(many, urls, seed, epoch, templates, batch_size, world_size, workers):
    for data in (many, urls):
        per_rank = []
        for rank in range(world_size):
            opts = DataOptions(seed=seed, batch_size=batch_size, templates=templates, shuffle_buffer=4,
                               rank=rank, world_size=world_size, workers=workers)
            counted = count_epoch(data, opts, epoch)
            w = max(1, workers)
            slots = [sum(len(b) for b in slot_blocks(data, opts, epoch, rank * w + j)) for j in range(w)]
            assert counted["micro_batches"] == sum(slots) == len(list(rank_chunks(data, opts, epoch)))
            per_rank.append(sum(slots))
        assert counted["common"] == min(per_rank) and counted["global_micro_batches"] == sum(per_rank)


def test_counts_come_from_the_manifest_or_from_reading(many, tmp_path):
    import json
    import shutil
    from pathlib import Path

    assert count_epoch(many, DataOptions())["notes"] == []
    old = tmp_path / "old"
    shutil.copytree(Path(many[0]).parent, old)
    manifest = json.loads((old / "manifest.json").read_text())
    for split in manifest["splits"].values():
        for sh in split["shards"]:
            sh.pop("template_labels")
    (old / "manifest.json").write_text(json.dumps(manifest))
    old_urls = shard_urls(old, "train")
    assert shard_counts(old_urls) == shard_counts(many)
    assert "counted by reading" in count_epoch(old_urls, DataOptions())["notes"][0]


def test_workers_and_resume_position_give_the_same_order(urls, many, tiny_processor):
    """The DataLoader's round robin over workers of different lengths is what rank_chunks says, and a
    resume from any position continues it exactly (each worker skips its share; the workers rotate)."""
    opts = DataOptions(seed=5, shuffle_buffer=8, mask_size=(32, 32), sam_size=None)
    ds = ShardBatches(urls, tiny_processor(), opts)
    ds.epoch = 1
    plain = [(b["index"], b["keys"][0]) for b in make_loader(ds, 0)]
    assert plain == [(i, c[0].key) for i, c in rank_chunks(urls, opts, 1)]
    ds.start = 5
    assert [(b["index"], b["keys"][0]) for b in make_loader(ds, 0)] == plain[5:]
    b = next(iter(make_loader(ShardBatches(urls, tiny_processor(), DataOptions(seed=5, shuffle_buffer=8,
                                                                              mask_size=(32, 32))), 0)))
    assert b["mask_target"].shape == (1, 1, 32, 32) and set(b["mask_target"].unique().tolist()) <= {0.0, 1.0}
    assert b["labels"].shape == b["input_ids"].shape and (b["labels"] != -100).any()
    assert b["sam_images"].shape == (1, 3, 128, 128) and b["cls_target"].shape == (1,)
    two = DataOptions(seed=5, shuffle_buffer=4, mask_size=(32, 32), sam_size=None, workers=2)
    ds2 = ShardBatches(many, tiny_processor(), two)
    ds2.epoch = 2
    expected = [(i, c[0].key) for i, c in rank_chunks(many, two, 2)]
    assert [(b["index"], b["keys"][0]) for b in make_loader(ds2, 2)] == expected
    for start in (1, 3, len(expected) - 1):
        ds2.start = start
        assert [(b["index"], b["keys"][0]) for b in make_loader(ds2, 2)] == expected[start:], start
    with pytest.raises(ValueError, match="num_workers"):
        make_loader(ds2, 0)


def test_augment_keeps_size_and_is_deterministic():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (60, 90, 3), dtype=np.uint8)
    cfg = AugmentConfig(prob=1.0)
    a, ops_a = augment_image(image, cfg, np.random.default_rng([1, 2]))
    b, ops_b = augment_image(image, cfg, np.random.default_rng([1, 2]))
    assert a.shape == image.shape and a.dtype == np.uint8 and ops_a and ops_a == ops_b and np.array_equal(a, b)
    assert not np.array_equal(a, image)
    same, ops = augment_image(image, AugmentConfig(prob=0.0), rng)
    assert same is image and ops == []
    for op in ops_a:
        assert op["op"] in ("jpeg", "resize", "noise")


def test_paraphrase_keeps_image_and_answer():
    msgs = [{"role": "user", "content": "<image>Please analyse whether this image is authentic; answer in JSON."},
            {"role": "assistant", "content": '{"result": "fake<cls>"}'}]
    out = paraphrase_prompt(msgs, "json", "en", AugmentConfig(prompt_prob=1.0), np.random.default_rng(0))
    assert out[0]["content"].startswith("<image>") and out[0]["content"] != msgs[0]["content"]
    assert out[1] == msgs[1]


def test_a_share_of_json_samples_is_asked_the_inference_prompt():
    """inference_prompt_share: json samples get predict's prompt (placeholders and answer kept) about
    that share of the time; other templates never; share 0 never."""
    from trainer.evaluation.predict import PROMPT

    msgs = [{"role": "user", "content": "<image>Examine this picture for signs of manipulation and answer in JSON."},
            {"role": "assistant", "content": '<cls>{"result": "fake"}'}]
    asked = [ask_inference_prompt(msgs, "json", 0.5, np.random.default_rng([0, i])) for i in range(400)]
    changed = [a for a in asked if a != msgs]
    assert 0.4 < len(changed) / len(asked) < 0.6
    assert all(a[0]["content"] == "<image>" + PROMPT and a[1] == msgs[1] for a in changed)
    assert ask_inference_prompt(msgs, "explain", 1.0, np.random.default_rng(0)) == msgs
    assert ask_inference_prompt(msgs, "json", 0.0, np.random.default_rng(0)) == msgs


def test_pgd_and_fgsm_stay_within_eps_in_rgb_units(urls, tiny_processor):
    """Against the tiny ForensicsModel's loss on a real batch with saturated patches: the attacked image
    is within ε of the clean one in RGB units, the [0, 1] clamp binds at white and black pixels, the loss rises."""
    processor = tiny_processor()
    model, _ = build_forensics_model("tiny", "tiny", processor=processor, seed=0)
    opts = DataOptions(seed=0, shuffle_buffer=8, mask_size=tuple(model.config.mask_size),
                       sam_size=model.mask_decoder.image_size)
    batch = next(iter(make_loader(ShardBatches(urls, processor, opts), 0)))
    ip = processor.image_processor
    stats = dict(image_mean=tuple(ip.image_mean), image_std=tuple(ip.image_std))
    mean, std = (torch.tensor(v).view(1, 3, 1, 1, 1) for v in stats.values())
    patches = patch_view(batch["pixel_values"].clone())
    patches[:4], patches[4:8] = ((1 - mean) / std).expand_as(patches[:4]), (-mean / std).expand_as(patches[4:8])
    pv = patches.reshape(batch["pixel_values"].shape)  # the image now holds white and black 14 x 14 squares

    def loss(x: torch.Tensor) -> torch.Tensor:
        return compute_loss(model, {**batch, "pixel_values": x}, LossWeights(), None).total

    def decoded(x: torch.Tensor) -> np.ndarray:
        return decode_pixel_values(x, batch["image_grid_thw"], merge_size=ip.merge_size, **stats)[0]

    clean = decoded(pv)
    white, black = clean > 1 - 1e-6, clean < 1e-6
    assert white.sum() >= 4 * 14 * 14 * 3 and black.sum() >= 4 * 14 * 14 * 3
    for method in ("fgsm", "pgd"):
        cfg = AdversarialConfig(share=1.0, method=method, eps=4 / 255, alpha=1 / 255, steps=3)
        adv = perturb_pixels(pv, loss, cfg, generator=torch.Generator().manual_seed(1), **stats)
        image = decoded(adv)
        assert np.abs(image - clean).max() <= 4 / 255 + 1e-6
        assert image.min() >= -1e-6 and image.max() <= 1 + 1e-6
        # the gradient pushed some saturated pixels out of [0, 1]: the clamp held them at 1 and 0
        assert (image[white] > 1 - 1e-6).any() and (image[white] < 1 - 1 / 255).any()
        assert (image[black] < 1e-6).any() and (image[black] > 1 / 255).any()
        with torch.no_grad():
            assert loss(adv) > loss(pv), method
    share = [is_adversarial_step(AdversarialConfig(share=0.3), 0, s, 0) for s in range(400)]
    assert 0.2 < np.mean(share) < 0.4
    assert share == [is_adversarial_step(AdversarialConfig(share=0.3), 0, s, 0) for s in range(400)]


def test_config_yaml_overrides_and_roundtrip(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("stage: 2\nlr: 0.001\ngrad_accum: 4\nloss:\n  cls: 2.0\naug_noise_std: [2, 5]\n")
    cfg = load_config(y, {"lr": 0.01, "seed": None, "loss": {"text": 0.5}})
    assert cfg.stage == 2 and cfg.lr == 0.01 and cfg.grad_accum == 4 and cfg.seed == 0
    assert cfg.loss.cls == 2.0 and cfg.loss.text == 0.5 and cfg.aug_noise_std == (2.0, 5.0)
    assert cfg.effective_templates == ["json", "explain", "conclusion", "pair"] and cfg.effective_adv_share == 0.0
    cfg.save(tmp_path / "saved.yaml")
    assert load_config(tmp_path / "saved.yaml") == cfg
    assert TrainConfig(stage=1).effective_templates == ["json"]
    assert TrainConfig(stage=3).effective_adv_share == 0.5
    with pytest.raises(ConfigError, match="unknown option"):
        load_config(None, {"learning_rate": 1})
    with pytest.raises(ConfigError, match="--init-from"):
        load_config(None, {"stage": 3, "data": str(tmp_path), "out": str(tmp_path / "r")}).validate()


def test_imbalanced_shards_keep_an_exact_length_and_a_small_waiting_room(tmp_path, build_small):
    """30 % real: each slot keeps min(real, fake) of each label spread over its stream, so the length is
    what the counts say and the waiting room stays within a small --balance-buffer."""
    shards, _, _ = build_small(tmp_path, n_sources=8, shard_size=4, real_ratio=0.3, templates={"json": 1.0},
                               splits=(1.0, 0.0, 0.0), min_pixels=56 * 56, max_pixels=84 * 84)
    data = shard_urls(shards, "train")
    for world_size, workers in ((1, 0), (2, 2)):
        for rank in range(world_size):
            opts = DataOptions(seed=3, shuffle_buffer=4, balance_buffer=6, rank=rank, world_size=world_size,
                               workers=workers)
            seq = [c[0] for _, c in _labels(data, opts)]
            assert len(seq) == count_epoch(data, opts)["micro_batches"] > 0
            assert all(a != b for a, b in zip(seq, seq[1:]))
