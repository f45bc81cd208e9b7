"""Which encoder weights train: LoRA targets of the backbone (LLM and vision tower), LoRA on SAM's image encoder.

The backbone has one peft adapter ("default") whatever trains in it: its target regex covers the
language model's linear layers (stages 2/3), the vision tower's (``--train-vision lora``) or both.
Extending an adapter (stage 1 trained the vision LoRA, stage 2 adds the LLM's) rebuilds it with the
wider regex and copies every existing LoRA tensor back, so nothing trained is lost
(:func:`wrap_backbone_lora`). SAM's image encoder (segment-anything ``ImageEncoderViT``, not a
transformers model) gets LoRA through peft's ``inject_adapter_in_model`` (:func:`add_sam_encoder_lora`).

Parameter names tell the groups apart (``trainer.training.stages._group``): the vision tower's contain
``.visual.``, SAM's image encoder's ``mask_decoder.image_encoder.``.
"""

from __future__ import annotations

import re
from typing import Sequence

import torch
from torch import nn

LLM_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
"""The language model's linear layers LoRA wraps (stages 2, 3)."""

VISION_LORA_PATTERN = r".*visual\.(blocks\.\d+\.(attn\.(qkv|proj)|mlp\.(gate_proj|up_proj|down_proj))|merger\.mlp\.[02])"
"""Qwen2.5-VL vision tower: every block's attention qkv/proj and MLP gate/up/down, and the merger's MLP
(``model.visual.merger.mlp.0`` and ``.2``); not the patch embedding (a Conv3d)."""

SAM_ENCODER_LORA_PATTERN = r"blocks\.\d+\.(attn\.(qkv|proj)|mlp\.lin[12])"
"""segment-anything ImageEncoderViT: every block's attention qkv/proj and MLP lin1/lin2."""

SAM_ENCODER_LORA_R = 8
"""Rank of the SAM image-encoder LoRA (alpha = 2 r, no dropout)."""

VISION_NAME = re.compile(r"(^|\.)visual\.")
SAM_ENCODER_NAME = re.compile(r"(^|\.)mask_decoder\.image_encoder\.")


def lora_pattern(*, language: bool, vision: bool, llm_targets: Sequence[str] = LLM_LORA_TARGETS) -> str:
    """The one target regex of the backbone's adapter: the LLM's linear layers, the vision tower's, or both."""
    parts = []
    if language:
        parts.append(r".*language_model\.layers\.\d+\..*\.(" + "|".join(map(re.escape, llm_targets)) + r")")
    if vision:
        parts.append(VISION_LORA_PATTERN)
    if not parts:
        raise ValueError("a LoRA adapter needs the language model, the vision tower or both")
    return parts[0] if len(parts) == 1 else "(" + ")|(".join(parts) + ")"


def adapter_covers(backbone: nn.Module) -> dict[str, bool]:
    """{"language": ..., "vision": ...}: which parts the backbone's LoRA adapter wraps (False, False unwrapped)."""
    names = [n for n, _ in backbone.named_parameters() if ".lora_" in n]
    return {"language": any(".language_model." in n for n in names), "vision": any(VISION_NAME.search(n) for n in names)}


def wrap_backbone_lora(backbone: nn.Module, *, language: bool, vision: bool, r: int, alpha: float,
                       dropout: float, llm_targets: Sequence[str] = LLM_LORA_TARGETS) -> nn.Module:
    """``backbone`` (a Qwen2.5-VL, or a peft model around one) with one LoRA adapter over ``language``
    and/or ``vision`` targets. An existing adapter is widened: its tensors are copied back exactly and
    keep their rank and alpha (``rank_pattern``), the new targets get ``r``/``alpha``."""
    from peft import LoraConfig, get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict

    kept: dict[str, torch.Tensor] | None = None
    rank_pattern: dict[str, int] = {}
    alpha_pattern: dict[str, float] = {}
    if hasattr(backbone, "peft_config"):
        old = backbone.peft_config["default"]
        covered = adapter_covers(backbone)
        language, vision = language or covered["language"], vision or covered["vision"]
        language_pattern = lora_pattern(language=True, vision=False, llm_targets=llm_targets)
        for part, pattern in (("language", language_pattern), ("vision", VISION_LORA_PATTERN)):
            if covered[part]:
                rank_pattern[pattern] = int(old.rank_pattern.get(pattern, old.r))
                alpha_pattern[pattern] = float(old.alpha_pattern.get(pattern, old.lora_alpha))
        kept = {k: v.detach().clone() for k, v in get_peft_model_state_dict(backbone, save_embedding_layers=False).items()}
        backbone = backbone.unload()
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, bias="none",
                        target_modules=lora_pattern(language=language, vision=vision, llm_targets=llm_targets),
                        rank_pattern=rank_pattern, alpha_pattern=alpha_pattern)
    wrapped = get_peft_model(backbone, config)
    if kept:
        result = set_peft_model_state_dict(wrapped, kept)
        if result.unexpected_keys:
            raise RuntimeError(f"widening the LoRA adapter lost tensors: {result.unexpected_keys[:3]}")
    return wrapped


def add_sam_encoder_lora(encoder: nn.Module, *, seed: int, r: int = SAM_ENCODER_LORA_R) -> nn.Module:
    """Inject LoRA (rank ``r``, alpha 2r, no dropout; A seeded from ``seed``, B zero, so the encoder's
    output is unchanged until it trains) into a segment-anything image encoder, in place."""
    from peft import LoraConfig, inject_adapter_in_model

    config = LoraConfig(r=r, lora_alpha=2 * r, lora_dropout=0.0, bias="none", target_modules=SAM_ENCODER_LORA_PATTERN)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return inject_adapter_in_model(config, encoder)


def vision_tower(qwen: nn.Module) -> nn.Module:
    """The Qwen2.5-VL vision tower and merger (``model.visual``) of an unwrapped Qwen2_5_VLForConditionalGeneration."""
    return qwen.model.visual
