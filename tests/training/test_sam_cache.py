"""SAM embeddings on disk (`forgery cache-embeddings`, trainer.training.sam_cache): the file equals the
encoder's output, the loader and the run use it, changed images miss, other SAMs' files are not used,
writes are atomic and resumable, and the command's exit codes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import safetensors.torch
import torch
from safetensors import safe_open
from typer.testing import CliRunner

from cli import app
from trainer.model.sam_decoder import build_sam, encoder_fingerprint, prepare_sam_image
from trainer.training.augment import AugmentConfig
from trainer.training.block_masking import BlockMaskConfig
from trainer.training.data import DataOptions, decode_image, make_batch, rank_chunks, shard_urls
from trainer.training.loop import run_training
from trainer.training.sam_cache import cache_path, cache_shard, cache_tag, find_caches
from trainer.training.shard_stream import _raw_stream

runner = CliRunner()


@pytest.fixture(scope="module")
def cached(tmp_path_factory, build_tiny_shards) -> dict:
    """Tiny shards with the tiny SAM's embeddings cached for the train split (through the CLI)."""
    data = build_tiny_shards(tmp_path_factory.mktemp("samcache") / "data")
    result = runner.invoke(app, ["cache-embeddings", str(data), "--sam", "tiny", "--batch-size", "3"])
    assert result.exit_code == 0, result.output
    sam, spec = build_sam("tiny")
    fp = encoder_fingerprint(sam.image_encoder)
    return {"data": data, "urls": shard_urls(data, "train"), "sam": sam, "spec": spec, "fp": fp,
            "tag": cache_tag(spec.name, fp), "output": result.output}


def test_cache_holds_the_encoders_embedding_of_each_sample_in_float16(cached):
    url = cached["urls"][0]
    path = cache_path(url, cached["tag"])
    assert path.name == Path(url).stem + f".sam-tiny-{cached['fp'][:12]}.safetensors"
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        samples = list(_raw_stream([url]))
        assert sorted(f.keys()) == sorted(s.key for s in samples)
        for s in samples:
            x, _ = prepare_sam_image(decode_image(s.image), cached["spec"].image_size)
            with torch.no_grad():
                want = cached["sam"].image_encoder(x[None])[0]
            got = f.get_tensor(s.key)
            assert got.dtype == torch.float16 and got.shape == want.shape == (256, 8, 8)
            torch.testing.assert_close(got.float(), want, atol=2e-3, rtol=2e-3)
    assert meta["fingerprint"] == cached["fp"] and json.loads(meta["spec"]) == cached["spec"].to_dict()
    assert meta["dtype"] == "float16" and set(json.loads(meta["image_sha1"])) == {s.key for s in samples}
    assert "0 failed" in cached["output"]


def test_rerun_skips_present_files_and_a_failed_write_leaves_no_file(cached, monkeypatch):
    url = cached["urls"][0]
    path = cache_path(url, cached["tag"])
    before = path.stat().st_mtime_ns
    again = cache_shard(url, cached["sam"].image_encoder, cached["spec"], cached["fp"])
    assert again.status == "present" and path.stat().st_mtime_ns == before

    def broken(tensors, filename, metadata=None):  # writes half a file, then dies
        Path(filename).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", broken)
    moved = path.with_name("keep.safetensors")
    os.replace(path, moved)
    try:
        with pytest.raises(OSError, match="disk full"):
            cache_shard(url, cached["sam"].image_encoder, cached["spec"], cached["fp"])
        assert not path.exists()
        assert not [p for p in path.parent.iterdir() if ".tmp-" in p.name]
    finally:
        os.replace(moved, path)


def _opts(cached: dict, **kw) -> DataOptions:
    found, _ = find_caches(cached["urls"], cached["spec"], cached["fp"])
    return DataOptions(batch_size=2, shuffle_buffer=0, sam_size=128, mask_size=(32, 32), sam_cache=found, **kw)


def test_loader_hits_unchanged_images_and_misses_augmented_or_block_masked_ones(cached, tiny_processor):
    opts = _opts(cached)
    index, chunk = next(rank_chunks(cached["urls"], opts, 0))
    batch = make_batch(chunk, tiny_processor(), opts, epoch=0, index=index)
    assert batch["sam_cached"].tolist() == [True, True]
    with safe_open(cache_path(chunk[0].url, cached["tag"]), framework="pt") as f:
        assert torch.equal(batch["sam_embeddings"][0], f.get_tensor(chunk[0].key))

    augmented = _opts(cached, augment=AugmentConfig(prob=1.0))
    assert "sam_embeddings" not in make_batch(chunk, tiny_processor(), augmented, epoch=0, index=index)

    blocks = _opts(cached, block_mask=BlockMaskConfig(share=0.5, epoch_micro_batches=8, run_epochs=1.0))
    masked = make_batch(chunk, tiny_processor(), blocks, epoch=1, index=index)  # past the ramp: share 0.5
    hidden = [bool((m < 1).any()) for m in masked["pixel_valid"]]
    assert any(hidden)
    got = masked["sam_cached"].tolist() if "sam_cached" in masked else [False, False]
    assert got == [not h for h in hidden]


def test_a_cache_of_another_sam_is_not_used_and_said(cached, tmp_path):
    other, spec = build_sam("tiny", seed=1)  # same spec, other weights
    fp = encoder_fingerprint(other.image_encoder)
    url = cached["urls"][0]
    result = cache_shard(url, other.image_encoder, spec, fp)
    try:
        found, notes = find_caches(cached["urls"], spec, cached["fp"])
        assert url in found and found[url].endswith(f".sam-{cached['tag']}.safetensors")
        assert any("other SAMs" in n and result.path.name in n for n in notes)
        # the other SAM's file under this SAM's name: refused by its metadata, with the file named
        mine = cache_path(url, cached["tag"])
        os.replace(mine, tmp_path / "mine.safetensors")
        os.replace(result.path, mine)
        found, notes = find_caches([url], spec, cached["fp"])
        assert found == {} and any(str(mine) in n and "another SAM image encoder" in n for n in notes)
        os.replace(mine, result.path)
    finally:
        if (tmp_path / "mine.safetensors").exists():
            os.replace(tmp_path / "mine.safetensors", cache_path(url, cached["tag"]))
        result.path.unlink(missing_ok=True)


def test_a_rebuilt_shard_makes_its_cache_stale(cached):
    url = cached["urls"][-1]
    st = os.stat(url)
    os.utime(url, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    try:
        found, notes = find_caches([url], cached["spec"], cached["fp"])
        assert found == {} and any("rebuilt" in n for n in notes)
    finally:
        os.utime(url, ns=(st.st_atime_ns, st.st_mtime_ns))


def _encoder_calls(monkeypatch) -> list[int]:
    from segment_anything.modeling import ImageEncoderViT

    calls: list[int] = []
    forward = ImageEncoderViT.forward

    def counted(self, x):
        calls.append(int(x.shape[0]))
        return forward(self, x)

    monkeypatch.setattr(ImageEncoderViT, "forward", counted)
    return calls


@pytest.mark.slow
def test_train_reads_the_cache_instead_of_encoding(cached, quick_config, run_metrics, tmp_path, monkeypatch):
    logs: list[str] = []
    calls = _encoder_calls(monkeypatch)
    run_training(quick_config(cached["data"], tmp_path / "on"), log=logs.append)
    with_cache = sum(calls)
    metrics = run_metrics(tmp_path / "on")
    assert [m["sam_cached"] for m in metrics] == [2, 2]  # 2 steps x 2 micro-batches x batch 1
    n = len(cached["urls"])
    assert any(f"sam cache: {n} of {n} train shard(s)" in line for line in logs)
    calls.clear()
    logs.clear()
    run_training(quick_config(cached["data"], tmp_path / "off", sam_cache=False), log=logs.append)
    assert sum(calls) - with_cache == 4 and "sam_cached" not in run_metrics(tmp_path / "off")[0]
    assert any("--no-sam-cache" in line for line in logs)


def test_cache_embeddings_exit_codes(cached, tmp_path):
    again = runner.invoke(app, ["cache-embeddings", str(cached["data"]), "--sam", "tiny"])
    assert again.exit_code == 0 and "already present" in again.output
    assert runner.invoke(app, ["cache-embeddings", str(tmp_path), "--sam", "tiny"]).exit_code == 1
    missing = runner.invoke(app, ["cache-embeddings", str(cached["data"]), "--sam", str(tmp_path / "no.pth")])
    assert missing.exit_code == 2 and "no.pth" in missing.output
    bad = runner.invoke(app, ["cache-embeddings", str(cached["data"]), "--sam", "tiny", "--splits", "dev"])
    assert bad.exit_code == 2 and "dev" in bad.output
    broken = tmp_path / "train-000000.tar"
    broken.write_bytes(b"not a tar")
    failed = runner.invoke(app, ["cache-embeddings", str(broken), "--sam", "tiny"])
    assert failed.exit_code == 1 and str(broken) in failed.output


@pytest.mark.slow
def test_the_tiny_sam_gets_no_cache_hint_and_the_balance_is_explained(build_tiny_shards, quick_config, tmp_path):
    """The cache hint is for a real SAM encoder: a run with the tiny SAM and no cache says nothing about
    caching; the data line says what "balanced" means."""
    logs: list[str] = []
    data = build_tiny_shards(tmp_path / "shards")
    run_training(quick_config(data, tmp_path / "run", max_steps=1), log=logs.append)
    assert not any("sam cache" in line or "cache-embeddings" in line for line in logs), logs
    line = next(line for line in logs if line.startswith("data: training on"))
    assert "balanced = as many real as fake" in line and "waits for the next epoch" in line
