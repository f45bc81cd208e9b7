"""``forgery export RUN/best --out DIR``: one self-contained checkpoint for inference.

* LoRA (stages 2/3) is merged into the backbone's linear layers (peft ``merge_and_unload``);
* the trained new token rows (frozen base row + trained delta) are merged into the embedding and
  lm_head matrices, so the backbone alone generates with them (the delta becomes 0);
* the backbone is written in full, Hugging Face layout, under ``DIR/backbone/`` (``config.json``
  + ``model.safetensors`` or its shards: ``Qwen2_5_VLForConditionalGeneration.from_pretrained(DIR/backbone)``),
  in the run's dtype (a bf16 run writes bf16) and shard by shard, never a second copy of the backbone
  in memory (:func:`trainer.model.checkpoint.write_backbone`),
  the heads, mask decoder, token rows and the processor/tokenizer (forensic tokens included)
  beside it, as :func:`trainer.model.checkpoint.save_checkpoint` lays them out, so
  :func:`trainer.model.checkpoint.load_checkpoint` and ``forgery predict --checkpoint DIR`` load it.

``DIR/export.json`` records the source checkpoint, the dtype and what was merged. Everything is written
into a hidden temporary folder beside ``DIR`` (``.DIR.export-tmp``) renamed to ``DIR`` at the end: a crash
leaves no half-written ``DIR``, and a rerun removes the crashed attempt's folder and starts again.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from trainer.model.checkpoint import load_checkpoint, save_checkpoint
from trainer.model.forensics_model import ForensicsModel


def merge_token_rows(model: ForensicsModel) -> None:
    """Fold the trainable deltas into the base embedding / lm_head rows (in place; deltas -> 0)."""
    with torch.no_grad():
        emb = model.embed_tokens
        emb.base.weight[emb.new_ids] = (emb.base.weight[emb.new_ids].float() + emb.delta).to(emb.base.weight.dtype)
        if not model.tied:
            head = model.lm_head
            head.base.weight[head.new_ids] = (head.base.weight[head.new_ids].float() + head.delta).to(head.base.weight.dtype)
            head.delta.zero_()
        emb.delta.zero_()


def merge_lora(model: ForensicsModel) -> bool:
    """Merge a LoRA adapter into the backbone (in place); False when there was none."""
    if not model.is_lora:
        return False
    model.backbone = model.backbone.merge_and_unload()
    return True


def export_checkpoint(source: str | Path, out: str | Path) -> Path:
    """Export checkpoint ``source`` (e.g. ``RUN/best``) to ``out`` (must be new or empty); returns ``out``.
    Written into a temporary folder renamed at the end (see the module doc)."""
    src, dst = Path(source), Path(out)
    if not (src / "forensics_config.json").is_file():
        raise FileNotFoundError(f"{src} is not a checkpoint directory (no forensics_config.json)")
    if dst.exists() and (not dst.is_dir() or any(dst.iterdir())):
        raise FileExistsError(f"{dst} is not empty")
    tmp = temporary_folder(dst)
    if tmp.exists():
        shutil.rmtree(tmp)  # a crashed export's leftovers
    model, processor = load_checkpoint(src)
    had_lora = merge_lora(model)
    merge_token_rows(model)
    model.freeze_backbone()
    save_checkpoint(model, processor, tmp, save_backbone=True)
    (tmp / "export.json").write_text(json.dumps(
        {"source": str(src.resolve()), "lora_merged": had_lora, "token_rows_merged": True, "dtype": model.config.dtype,
         "backbone": "backbone/ (Hugging Face Qwen2_5_VLForConditionalGeneration)"}, indent=2))
    if dst.exists():
        dst.rmdir()
    tmp.rename(dst)
    return dst


def temporary_folder(out: Path) -> Path:
    """Where an export to ``out`` is written before the rename: a hidden sibling of ``out``."""
    return out.parent / f".{out.name}.export-tmp"
