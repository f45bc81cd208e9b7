"""What each training stage trains (ARCHITECTURE.md, Model, training, evaluation).

======  =====================================================================================
stage   trainable parameters
======  =====================================================================================
1       new token rows (embedding delta, lm_head delta), cls_head, mask_head, the SAM mask
        decoder's single-mask path (or the conv decoder), the expert head (``--expert``, when
        the model has one); LLM and vision tower frozen
2       stage 1 + LoRA (peft) on the LLM's linear layers (``language_model.layers.N.*_proj``
        only: not the vision tower, not the heads); mixed templates
3       the stage-2 set, trained with adversarial inputs and anti-forensic / instruction
        augmentation
======  =====================================================================================

Whatever the stage, the model's encoder options add their groups (``--train-vision``,
``--train-sam-encoder``, recorded in its config): ``vision`` (the Qwen vision tower and merger: its
LoRA, in the backbone's one adapter beside the LLM's, or every parameter), ``sam_encoder`` (LoRA on
SAM's image encoder). Stage 1 may train them; the LLM's LoRA stays a stage-2/3 thing.

Stages 2 and 3 start from the previous stage's checkpoint (``--init-from``); a checkpoint that
already holds a LoRA adapter (stage 2's, for stage 3) keeps it. :func:`trainable_report` gives the
names and counts the run records in ``RUN/trainable.json``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import torch

from trainer.model.adapters import LLM_LORA_TARGETS, SAM_ENCODER_NAME, VISION_NAME, adapter_covers
from trainer.model.forensics_model import ForensicsModel

LORA_TARGETS = LLM_LORA_TARGETS
_LORA_NAME = re.compile(r"language_model\.layers\.\d+\..*\.(" + "|".join(LORA_TARGETS) + r")\.lora_[AB]\.")


@dataclass(frozen=True)
class StageSpec:
    """lora: wrap the LLM with LoRA; adversarial/augment: stage-3 training extras on by default."""

    stage: int
    lora: bool
    adversarial: bool
    augment: bool
    description: str


STAGES: dict[int, StageSpec] = {
    1: StageSpec(1, False, False, False, "token rows, heads and mask decoder; LLM frozen (the encoders per the model's options)"),
    2: StageSpec(2, True, False, False, "stage 1 + LoRA on the LLM's linear layers, mixed templates"),
    3: StageSpec(3, True, True, True, "stage 2 + adversarial inputs, anti-forensic and instruction augmentation"),
}


def setup_stage(model: ForensicsModel, stage: int, *, lora_r: int = 16, lora_alpha: int = 32,
                lora_dropout: float = 0.05, seed: int = 0) -> ForensicsModel:
    """Set ``model``'s trainable parameters for ``stage`` (in place; returns the model).

    A new LoRA adapter is initialised from ``seed`` (torch's RNG forked, the caller's untouched).
    """
    spec = STAGES[stage]
    if spec.lora and model.config.language_model == "none":
        raise ValueError(f"stage {stage} adds LoRA to the language model; this model has none (language_model 'none')")
    covered = adapter_covers(model.backbone)
    vision_lora = model.config.train_vision == "lora"
    if (spec.lora and not covered["language"]) or (vision_lora and not covered["vision"]):
        # one adapter: stage 1's vision LoRA is widened to the LLM at stage 2, its tensors kept
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model.enable_lora(r=lora_r, alpha=lora_alpha, dropout=lora_dropout, target_modules=LORA_TARGETS,
                              language=spec.lora or covered["language"])
    model.freeze_backbone()
    check_stage(model, stage)
    return model


def _group(name: str) -> str:
    """The parameter group of a (ForensicsModel.named_parameters) name: vision (the Qwen vision tower
    and merger, its LoRA or its own weights), sam_encoder (SAM's image encoder), lora (the LLM's),
    token_rows, cls_head, mask_head, mask_decoder, expert_head, or other."""
    if VISION_NAME.search(name):
        return "vision"
    if SAM_ENCODER_NAME.search(name):
        return "sam_encoder"
    if ".lora_" in name:
        return "lora"
    if name == "mask_queries":  # the LLM-free control's queries: part of the mask head
        return "mask_head"
    if name.startswith("mask_evidence."):  # the cls logit's reading of the mask (mask_evidence.py)
        return "cls_head"
    if name.endswith(".delta"):
        return "token_rows"
    for g in ("cls_head", "mask_head", "mask_decoder", "expert_head"):
        if name.startswith(g + "."):
            return g
    return "other"


LR_GROUPS = ("lora", "head", "vision")
"""The optimizer's parameter groups, each at its own learning rate (TrainConfig lr, head_lr, vision_lr)."""


def lr_group(name: str) -> str:
    """The learning-rate group of trainable parameter ``name`` (one of :data:`LR_GROUPS`), from
    :func:`_group`: LoRA on the LLM -> "lora"; the vision tower / SAM image encoder -> "vision"; the new
    parts (token rows, heads, mask decoder, expert head) -> "head"."""
    g = _group(name)
    return {"lora": "lora", "vision": "vision", "sam_encoder": "vision"}.get(g, "head")


def check_stage(model: ForensicsModel, stage: int) -> None:
    """Raise AssertionError if the trainable set is not the stage's (see the table above; an LLM-free
    model trains no token row)."""
    names = model.trainable_parameter_names()
    if model.config.language_model == "none" and "token_rows" in {_group(n) for n in names}:
        raise AssertionError("an LLM-free model reads no token row, but token rows train")
    groups = {_group(n) for n in names}
    if "other" in groups:
        raise AssertionError(f"unexpected trainable parameters: {[n for n in names if _group(n) == 'other'][:5]}")
    lora = [n for n in names if _group(n) == "lora"]
    if STAGES[stage].lora:
        if not lora:
            raise AssertionError(f"stage {stage} needs LoRA weights but none train")
        wrong = [n for n in lora if not _LORA_NAME.search(n)]
        if wrong:
            raise AssertionError(f"LoRA outside the LLM's linear layers: {wrong[:5]}")
    elif lora:
        raise AssertionError(f"stage {stage} trains no LoRA, found {lora[:3]}")
    needed = ("token_rows",) if model.config.language_model != "none" else ()
    needed += ("cls_head", "mask_head", "mask_decoder")
    needed += ("expert_head",) if model.expert_head is not None else ()
    needed += ("vision",) if model.config.train_vision != "none" else ()
    needed += ("sam_encoder",) if model.config.train_sam_encoder != "none" else ()
    for g in needed:
        if g not in groups:
            raise AssertionError(f"stage {stage}: {g} should train")
    _check_encoders(model, names)


def _check_encoders(model: ForensicsModel, names: list[str]) -> None:
    """The vision and SAM-encoder parameters that train are exactly what the model's options say:
    none, only LoRA tensors ("lora"), or every one of them ("full")."""
    for group, mode, params in (("vision", model.config.train_vision, model.qwen.model.visual.named_parameters()),
                                ("sam_encoder", model.config.train_sam_encoder,
                                 getattr(model.mask_decoder, "image_encoder", torch.nn.Module()).named_parameters())):
        training = [n for n in names if _group(n) == group]
        lora_only = all(".lora_" in n for n in training)
        total = sum(1 for _ in params)
        if mode == "none" and training:
            raise AssertionError(f"{group} is frozen (none) but trains: {training[:3]}")
        if mode == "lora" and not lora_only:
            raise AssertionError(f"{group} trains LoRA only, found {[n for n in training if '.lora_' not in n][:3]}")
        if mode == "full" and len(training) != total:
            raise AssertionError(f"{group} trains in full: {len(training)} of {total} parameters train")


def trainable_report(model: ForensicsModel, stage: int) -> dict[str, Any]:
    """{"stage", "trainable": {name: numel}, "groups": {group: numel}, "trainable_total", "total"}."""
    seen: set[int] = set()
    trainable: dict[str, int] = {}
    total = 0
    for name, p in model.named_parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
        if p.requires_grad:
            trainable[name] = p.numel()
    groups: dict[str, int] = {}
    for name, n in trainable.items():
        groups[_group(name)] = groups.get(_group(name), 0) + n
    return {
        "stage": stage,
        "description": STAGES[stage].description,
        "trainable_total": sum(trainable.values()),
        "total": total,
        "groups": groups,
        "trainable": trainable,
    }
