"""`--cls-position`: training moves `<cls>` in every answer to the model's place, the checkpoint and
RUN/config.yaml record what was built, and a contradiction with an --init-from checkpoint is refused."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from cli import app
from forgery_synth.dataset.answer_tokens import CLS_TOKEN
from trainer.training.config import ConfigError
from trainer.training.data import DataOptions, make_batch, rank_chunks, shard_urls
from trainer.training.loop import run_training

runner = CliRunner()


@pytest.fixture(scope="module")
def shards(tmp_path_factory, build_tiny_shards):
    return build_tiny_shards(tmp_path_factory.mktemp("clspos") / "data")


def _answers_as_trained(shards, tiny_processor, position: str | None) -> list[str]:
    """The assistant text of the first micro-batches, decoded from the token ids the model trains on."""
    processor = tiny_processor()
    opts = DataOptions(batch_size=1, shuffle_buffer=0, sam_size=None, cls_position=position)
    texts = []
    for index, chunk in rank_chunks(shard_urls(shards, "train"), opts, epoch=0):
        batch = make_batch(chunk, processor, opts, epoch=0, index=index)
        ids = batch["input_ids"][0][batch["labels"][0] != -100]
        texts.append(processor.tokenizer.decode(ids, skip_special_tokens=False))
        if len(texts) == 6:
            break
    return texts


def test_training_answers_follow_the_model_cls_position(shards, tiny_processor):
    assert json.loads((shards / "manifest.json").read_text())["options"]["cls_position"] == "before-verdict"
    kept = _answers_as_trained(shards, tiny_processor, None)
    assert all(t.startswith(CLS_TOKEN) for t in kept)  # the shards' own place
    moved = _answers_as_trained(shards, tiny_processor, "after-verdict")
    assert not any(t.startswith(CLS_TOKEN) for t in moved)
    assert all(("fake" + CLS_TOKEN in t) or ("real" + CLS_TOKEN in t) or ("伪造" + CLS_TOKEN in t)
               or ("真实" + CLS_TOKEN in t) for t in moved), moved
    assert [t.replace(CLS_TOKEN, "") for t in moved] == [t.replace(CLS_TOKEN, "") for t in kept]


def test_checkpoint_records_the_position_and_init_from_refuses_a_contradiction(shards, tmp_path, quick_config):
    from trainer.model.checkpoint import read_config

    run = tmp_path / "run1"
    run_training(quick_config(shards, run, cls_position="after-verdict", max_steps=1), log=lambda s: None)
    assert read_config(run / "best")["cls_position"] == "after-verdict"
    assert yaml.safe_load((run / "config.yaml").read_text())["cls_position"] == "after-verdict"
    with pytest.raises(ConfigError, match=r"--cls-position before-verdict \(the checkpoint has after-verdict\)"):
        run_training(quick_config(shards, tmp_path / "run2", stage=2, init_from=str(run / "best"),
                                  cls_position="before-verdict", max_steps=1), log=lambda s: None)
    result = runner.invoke(app, ["train", "--stage", "1", "--data", str(shards), "--out", str(tmp_path / "r3"),
                                 "--base-model", "tiny", "--sam", "tiny", "--cls-position", "middle"])
    assert result.exit_code == 2 and "--cls-position: must be one of after-verdict, before-verdict" in result.output
