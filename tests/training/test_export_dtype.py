"""forgery export at real size: the backbone written in the run's dtype, shard by shard, never cloned whole,
into a temporary folder renamed at the end (a crash leaves no half-written --out; a rerun works)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from typer.testing import CliRunner

import trainer.model.checkpoint as checkpoint_module
from cli import app
from trainer.model.build_model import build_forensics_model
from trainer.model.checkpoint import load_checkpoint, save_checkpoint
from trainer.training.export import export_checkpoint, temporary_folder


@pytest.fixture()
def bf16_checkpoint(tmp_path, tiny_processor):
    """A stage-2-like checkpoint of a bf16 run: tiny backbone in bf16 with a LoRA adapter."""
    model, processor = build_forensics_model("tiny", "tiny", dtype="bfloat16", processor=tiny_processor())
    model.enable_lora(r=4, alpha=8)
    with torch.no_grad():
        model.embed_tokens.delta.normal_(0, 0.1)
    return save_checkpoint(model, processor, tmp_path / "best")


def _backbone_bytes(folder) -> int:
    """Bytes of the backbone's safetensors files in an exported checkpoint."""
    return sum(p.stat().st_size for p in (folder / "backbone").glob("*.safetensors"))


@pytest.mark.slow
def test_export_writes_the_backbone_in_the_run_dtype_without_cloning_it(bf16_checkpoint, tmp_path, monkeypatch):
    cloned = []
    original = torch.Tensor.clone

    def counting_clone(self, *args, **kwargs):
        cloned.append(self.numel() * self.element_size())
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "clone", counting_clone)
    monkeypatch.setattr(checkpoint_module, "BACKBONE_SHARD_BYTES", 8 * 1024**2)  # several shards for the tiny backbone
    out = export_checkpoint(bf16_checkpoint, tmp_path / "export")
    monkeypatch.undo()

    backbone = out / "backbone"
    index = json.loads((backbone / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 1 and all((backbone / s).is_file() for s in shards)
    dtypes = set()
    for shard in shards:
        with safe_open(str(backbone / shard), "pt") as f:
            dtypes |= {f.get_slice(k).get_dtype() for k in f.keys()}
    assert dtypes == {"BF16"}  # the run's dtype, not a float32 upcast
    assert json.loads((out / "export.json").read_text())["dtype"] == "bfloat16"
    embedding = 151936 * 64 * 2  # the tiny backbone's largest tensor (bf16), most of its bytes
    assert _backbone_bytes(out) > embedding and max(cloned) < embedding / 4  # only small tensors (rows, heads, SAM)

    model, _ = load_checkpoint(out)  # loads as a full checkpoint, bf16, LoRA and rows merged
    assert model.config.dtype == "bfloat16" and not model.is_lora
    assert all(p.dtype == torch.bfloat16 for p in model.qwen.parameters() if not p.requires_grad)
    assert float(model.embed_tokens.delta.detach().abs().sum()) == 0.0


@pytest.mark.slow
def test_a_crashed_export_leaves_no_out_and_a_rerun_works(bf16_checkpoint, tmp_path, monkeypatch):
    out = tmp_path / "export"
    real_save = checkpoint_module.save_file

    def crash_on_backbone(tensors, path, *args, **kwargs):
        if "backbone" in str(path):
            raise OSError("disk full (simulated)")
        return real_save(tensors, path, *args, **kwargs)

    monkeypatch.setattr(checkpoint_module, "save_file", crash_on_backbone)
    with pytest.raises(OSError, match="disk full"):
        export_checkpoint(bf16_checkpoint, out)
    assert not out.exists() and temporary_folder(out).exists()
    monkeypatch.undo()

    result = CliRunner().invoke(app, ["export", str(bf16_checkpoint), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "export.json").is_file() and (out / "backbone" / "config.json").is_file()
    assert not temporary_folder(out).exists()
