"""``forgery export RUN/best --out DIR``: one self-contained checkpoint for inference.

* LoRA (stages 2/3) is merged into the backbone's linear layers (peft ``merge_and_unload``);
* the trained new token rows (frozen base row + trained delta) are merged into the embedding and
  lm_head matrices, so the backbone alone generates with them (the delta becomes 0);
* the backbone is written in full, Hugging Face layout, under ``DIR/backbone/`` (``config.json``
  + ``model.safetensors``: ``Qwen2_5_VLForConditionalGeneration.from_pretrained(DIR/backbone)``),
  the heads, mask decoder, token rows and the processor/tokenizer (forensic tokens included)
  beside it, as :func:`trainer.model.checkpoint.save_checkpoint` lays them out, so
  :func:`trainer.model.checkpoint.load_checkpoint` and ``forgery predict --checkpoint DIR`` load it.

``DIR/export.json`` records the source checkpoint and what was merged.
"""

from __future__ import annotations

import json
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
    """Export checkpoint ``source`` (e.g. ``RUN/best``) to ``out`` (must be new or empty); returns ``out``."""
    src, dst = Path(source), Path(out)
    if not (src / "forensics_config.json").is_file():
        raise FileNotFoundError(f"{src} is not a checkpoint directory (no forensics_config.json)")
    if dst.exists() and any(dst.iterdir()):
        raise FileExistsError(f"{dst} is not empty")
    model, processor = load_checkpoint(src)
    had_lora = merge_lora(model)
    merge_token_rows(model)
    model.freeze_backbone()
    save_checkpoint(model, processor, dst, save_backbone=True)
    (dst / "export.json").write_text(json.dumps(
        {"source": str(src.resolve()), "lora_merged": had_lora, "token_rows_merged": True,
         "backbone": "backbone/ (Hugging Face Qwen2_5_VLForConditionalGeneration)"}, indent=2))
    return dst
