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
from trainer.training.augment import AugmentConfig, augment_image, paraphrase_prompt
from trainer.training.config import ConfigError, LossWeights, TrainConfig, load_config
from trainer.training.data import (
    DataOptions,
    ShardBatches,
    count_epoch,
    make_loader,
    rank_chunks,
    shard_urls,
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


def test_ranks_partition_the_stream_and_keep_alternating(urls):
    whole = dict(_labels(urls, DataOptions(seed=2, shuffle_buffer=8)))
    parts = [dict(_labels(urls, DataOptions(seed=2, shuffle_buffer=8, rank=r, world_size=2))) for r in (0, 1)]
    assert sorted(parts[0].keys() | parts[1].keys()) == sorted(whole) and not parts[0].keys() & parts[1].keys()
    for p in parts:
        seq = [p[i][0] for i in sorted(p)]
        assert all(a != b for a, b in zip(seq, seq[1:]))


def test_workers_and_resume_position_give_the_global_order(urls, tiny_processor):
    opts = DataOptions(seed=5, shuffle_buffer=8, mask_size=(32, 32))
    ds = ShardBatches(urls, tiny_processor(), opts)
    ds.epoch = 1
    plain = [(b["index"], b["keys"][0]) for b in make_loader(ds, 0)]
    two = [(b["index"], b["keys"][0]) for b in make_loader(ds, 2)]
    assert two == plain
    ds.start = 5
    assert [(b["index"], b["keys"][0]) for b in make_loader(ds, 0)] == plain[5:]
    b = next(iter(make_loader(ds, 0)))
    assert b["mask_target"].shape == (1, 1, 32, 32) and set(b["mask_target"].unique().tolist()) <= {0.0, 1.0}
    assert b["labels"].shape == b["input_ids"].shape and (b["labels"] != -100).any()
    assert b["sam_images"].shape == (1, 3, 128, 128) and b["cls_target"].shape == (1,)


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
