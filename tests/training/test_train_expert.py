"""`forgery train --expert`: the view in the batches, the checkpoint that records it, and the
checkpoint's view kept (or an explicit other one refused) by --init-from and --resume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

import trainer.training.data as data_module
from cli import app
from trainer.model.expert_views import expert_batch
from trainer.training.augment import AugmentConfig
from trainer.training.config import ConfigError
from trainer.training.data import DataOptions, decode_image, make_batch, rank_chunks, shard_urls
from trainer.training.loop import run_training

runner = CliRunner()


@pytest.fixture(scope="module")
def expert_run(tmp_path_factory, tiny_cli_run) -> dict[str, Path]:
    """Tiny shards and one 2-step stage-1 run with ``--expert noise`` (CLI), checkpoint-2 kept."""
    return tiny_cli_run(tmp_path_factory.mktemp("expert"), "--expert", "noise", "--save-every", "2")


def test_train_expert_records_and_trains_the_view(expert_run):
    run = expert_run["run"]
    for ckpt in ("best", "last", "checkpoint-2"):
        assert json.loads((run / ckpt / "forensics_config.json").read_text())["expert"] == "noise", ckpt
    assert json.loads((run / "trainable.json").read_text())["groups"]["expert_head"] > 0
    heads = load_file(str(run / "last" / "heads.safetensors"))
    assert heads["expert_head.to_mask.weight"].abs().sum() > 0  # moved from its zero start: it trained
    assert heads["expert_head.to_cls.weight"].abs().sum() > 0


def test_init_from_with_another_expert_is_exit_2(expert_run, tmp_path):
    out = tmp_path / "r2"
    result = runner.invoke(app, ["train", "--stage", "2", "--data", str(expert_run["data"]), "--out", str(out),
                                 "--init-from", str(expert_run["run"] / "best"), "--expert", "ela"])
    assert result.exit_code == 2, result.output
    assert "--expert" in result.output and "'noise'" in result.output and "'ela'" in result.output
    assert not out.exists()


def test_an_unknown_expert_is_exit_2(expert_run, tmp_path):
    result = runner.invoke(app, ["train", "--stage", "1", "--data", str(expert_run["data"]), "--out",
                                 str(tmp_path / "r"), "--base-model", "tiny", "--sam", "tiny", "--expert", "sobel"])
    assert result.exit_code == 2 and "--expert" in result.output and "srm" in result.output


def test_init_from_keeps_the_checkpoints_expert(expert_run, tmp_path, quick_config):
    out = tmp_path / "again"
    run_training(quick_config(expert_run["data"], out, init_from=str(expert_run["run"] / "best"), max_steps=1),
                 log=lambda s: None)
    assert json.loads((out / "last" / "forensics_config.json").read_text())["expert"] == "noise"


def test_resume_with_another_expert_is_refused(expert_run, quick_config):
    with pytest.raises(ConfigError, match=r"--expert srm \(the run has noise\)"):
        run_training(quick_config(expert_run["data"], expert_run["run"], resume=True, expert="srm"),
                     log=lambda s: None)


def test_batches_carry_the_view_of_the_final_images(expert_run, tiny_processor, monkeypatch):
    """make_batch's expert_images are the view of the augmented images (not of the decoded ones), at
    the mask frame."""
    final: list[np.ndarray] = []
    real_augment = data_module.augment_image

    def recording(image, cfg, rng):
        out, ops = real_augment(image, cfg, rng)
        final.append(out)
        return out, ops

    monkeypatch.setattr(data_module, "augment_image", recording)
    opts = DataOptions(batch_size=2, shuffle_buffer=0, mask_size=(40, 48), sam_size=None, expert="srm",
                       augment=AugmentConfig(prob=1.0, noise_std=(6.0, 8.0)))
    index, chunk = next(rank_chunks(shard_urls(expert_run["data"], "train"), opts, 0))
    batch = make_batch(chunk, tiny_processor(), opts, epoch=0, index=index)
    assert batch["expert_images"].shape == (2, 3, 40, 48)
    assert torch.equal(batch["expert_images"], expert_batch(final, "srm", (40, 48)))
    decoded = [decode_image(s.image) for s in chunk]
    assert not torch.equal(batch["expert_images"], expert_batch(decoded, "srm", (40, 48)))
    plain = make_batch(chunk, tiny_processor(), DataOptions(batch_size=2, mask_size=(40, 48), sam_size=None),
                       epoch=0, index=index)
    assert "expert_images" not in plain



def test_predict_and_eval_read_the_view(expert_run, tmp_path, photo):
    """`forgery predict` runs the expert checkpoint (the model refuses to run without its view), and the
    predictor it and `forgery eval` share gives the score that depends on the view."""
    from PIL import Image

    from trainer.evaluation.predict import PROMPT, ModelPredictor, PredictOptions
    from trainer.model.checkpoint import load_checkpoint

    Image.fromarray(photo).save(tmp_path / "a.png")
    best = expert_run["run"] / "best"
    result = runner.invoke(app, ["predict", str(tmp_path / "a.png"), "--checkpoint", str(best), "--out",
                                 str(tmp_path / "out"), "--device", "cpu", "--max-new-tokens", "8"])
    assert result.exit_code == 0, result.output
    model, processor = load_checkpoint(best)
    with torch.no_grad():
        model.expert_head.to_cls.bias.add_(3.0)  # a strong expert opinion: the score must show it
    out = ModelPredictor(model, processor, PredictOptions(device="cpu", max_new_tokens=8)).run(photo)
    assert out.score == pytest.approx(model.score(processor, photo, PROMPT, out.text).cls_prob, abs=1e-6)
    with torch.no_grad():
        model.expert_head.to_cls.bias.sub_(3.0)
    assert model.score(processor, photo, PROMPT, out.text).cls_prob < out.score - 0.1


def test_prnu_needs_fingerprints_exit_2(expert_run, tmp_path):
    result = runner.invoke(app, ["train", "--stage", "1", "--data", str(expert_run["data"]), "--out",
                                 str(tmp_path / "r"), "--base-model", "tiny", "--sam", "tiny", "--expert", "prnu"])
    assert result.exit_code == 2 and "--expert prnu needs --fingerprints" in result.output
    result = runner.invoke(app, ["train", "--stage", "1", "--data", str(expert_run["data"]), "--out",
                                 str(tmp_path / "r"), "--base-model", "tiny", "--sam", "tiny", "--expert", "noise",
                                 "--fingerprints", str(tmp_path)])
    assert result.exit_code == 2 and "read only by the prnu" in result.output


def test_prnu_batches_read_each_samples_camera_fingerprint(tmp_path, camera_kit, tiny_processor):
    """A photo of a camera with a fingerprint gets its correlation map (expert_known True); a photo
    without EXIF gets zeros (expert_known False)."""
    from forgery_synth.dataset.shard_options import ShardOptions
    from forgery_synth.dataset.shards import build_shards
    from forgery_synth.fingerprints.build import build_fingerprints

    camera_kit.write(tmp_path / "photos", "Acme A1", range(6), size_hw=(112, 140))
    camera_kit.write(tmp_path / "photos", "Anon X", [9], size_hw=(112, 140), exif=False)
    build_fingerprints([tmp_path / "photos"], tmp_path / "fp", min_photos=3)
    build_shards(ShardOptions(out=tmp_path / "shards", real=[tmp_path / "photos"], splits=(1.0, 0.0, 0.0),
                              near_duplicates=-1, templates={"json": 1}, min_pixels=112 * 140, max_pixels=112 * 140))
    opts = DataOptions(batch_size=7, shuffle_buffer=0, mask_size=(28, 35), sam_size=None, expert="prnu",
                       fingerprints=str(tmp_path / "fp"))
    chunk = [s for s in data_module._raw_stream(shard_urls(str(tmp_path / "shards"), "train"))]
    batch = make_batch(chunk, tiny_processor(), opts, epoch=0, index=0)
    known = batch["expert_known"].tolist()
    assert sorted(known) == [False] + [True] * 6
    views = batch["expert_images"]
    assert views.shape == (7, 1, 28, 35) and views.dtype == torch.float32
    for view, k in zip(views, known):
        assert (view.mean() > 0.3) if k else not view.any()
