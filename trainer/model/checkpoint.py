"""Save and load a ForensicsModel as a directory of safetensors + JSON (never pickle).

Layout of a checkpoint directory::

    forensics_config.json     ForensicsModelConfig (token ids, base model, sam, hidden layer, ...)
                              plus what the directory holds ("backbone": "full" | "adapter" | "reference")
    token_rows.safetensors    embed_rows / embed_delta (33 x H) and, when untied, lm_head_rows / lm_head_delta
    heads.safetensors         cls_head.*, mask_head.*, mask_decoder.* (for SAM: its trainable mask decoder),
                              mask_queries (the LLM-free control's, ``language_model`` "none"),
                              expert_head.* (when the config names an expert view),
                              mask_evidence.* (when the config has cls_mask_evidence)
    sam.safetensors           the SAM image + prompt encoders (only for in-process SAMs: "tiny", vit_*)
    sam_encoder.safetensors   the SAM image encoder's trained tensors (``train_sam_encoder`` "lora": its LoRA A/B)
    vision.safetensors        the Qwen vision tower and merger (``train_vision`` "full" only: about 670 M
                              parameters for Qwen2.5-VL-3B/7B, 1.3 GB in bf16; 60 k for the tiny model)
    backbone/                 config.json + model.safetensors, HF layout (only when saved in full)
    backbone/                 config.json + model.safetensors (or model-0000i-of-0000n.safetensors shards of at
                              most BACKBONE_SHARD_BYTES + model.safetensors.index.json), HF layout, in the
                              model's dtype (only when saved in full)
    adapter/                  adapter_config.json + adapter_model.safetensors (peft LoRA, when wrapped)
    tokenizer / processor     the processor's own files (tokenizer.json with the forensic tokens, ...)
    thresholds.json           image and pixel thresholds calibrated on validation (a training run writes
                              it: save_thresholds / load_thresholds; none = 0.5 / 0.5, uncalibrated)
    learning.json             a training run's losses against their chance values (trainer.training.learning)

The backbone is saved in full when it was built in-process or any of its base weights train; a
frozen real backbone (stage 1 of a hub model) is recorded by reference (``base_model``) rather
than copied. Loading rebuilds the model and restores every saved tensor, so outputs are
bit-identical.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from trainer.model.adapters import VISION_NAME, vision_tower
from trainer.model.build_model import (
    BACKBONE_BUILDERS,
    _build_forensics_model,
    build_backbone,
)
from trainer.model.config import ForensicsModelConfig
from trainer.model.forensics_model import ForensicsModel
from trainer.model.hub import load_pretrained
from trainer.model.sam_decoder import SAM_SPECS, SamMaskDecoder
from trainer.model.tokens import load_processor

CONFIG_NAME = "forensics_config.json"


BACKBONE_SHARD_BYTES = 2 * 1024**3
"""Largest backbone shard a full save writes (a GPU model is copied to the host one shard at a time)."""


def _cpu(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Small tensor dicts (rows, heads, SAM): host copies, so none shares storage with another."""
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}


def write_backbone(state: dict[str, torch.Tensor], folder: Path, *, max_shard_bytes: int | None = None) -> list[str]:
    """Write a backbone state dict to ``folder`` in Hugging Face layout, each tensor in its own dtype
    (a bf16 run's backbone as bf16): one ``model.safetensors``, or shards of at most ``max_shard_bytes``
    plus ``model.safetensors.index.json``. Nothing is cloned: host tensors are written in place, a device
    tensor is copied to the host one shard at a time (``max_shard_bytes`` None: :data:`BACKBONE_SHARD_BYTES`).
    Returns the file names written."""
    max_shard_bytes = BACKBONE_SHARD_BYTES if max_shard_bytes is None else max_shard_bytes
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for key, value in state.items():
        n = value.numel() * value.element_size()
        if shards[-1] and size + n > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][key] = value
        size += n
    names = (["model.safetensors"] if len(shards) == 1 else
             [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))])
    weight_map: dict[str, str] = {}
    for name, shard in zip(names, shards):
        host = {k: v.detach().to("cpu").contiguous() for k, v in shard.items()}  # no copy for host tensors
        save_file(host, str(folder / name), metadata={"format": "pt"})
        del host
        weight_map.update(dict.fromkeys(shard, name))
    if len(names) > 1:
        total = sum(v.numel() * v.element_size() for v in state.values())
        (folder / "model.safetensors.index.json").write_text(
            json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
    return names


def _plain_backbone_state(model: ForensicsModel) -> dict[str, torch.Tensor]:
    """The Qwen state dict in HF naming (wrappers' ``.base`` removed, deltas/LoRA left out)."""
    state = {}
    for key, value in model.qwen.state_dict().items():
        if key.endswith(".delta") or "lora_" in key:
            continue
        key = key.replace("embed_tokens.base.", "embed_tokens.").replace("lm_head.base.", "lm_head.")
        key = key.replace(".base_layer.", ".")
        state[key] = value
    if model.tied:
        state.pop("lm_head.weight", None)
    return state


def _backbone_mode(model: ForensicsModel, save_backbone: str | bool) -> str:
    if model.is_lora:
        return "adapter"
    if save_backbone is True:
        return "full"
    if save_backbone is False:
        return "reference"
    base_trained = any(  # a trained vision tower goes to vision.safetensors, not into a full copy
        p.requires_grad for n, p in model.qwen.named_parameters() if not n.endswith(".delta") and not VISION_NAME.search(n)
    )
    return "full" if (model.config.base_model in BACKBONE_BUILDERS or base_trained) else "reference"


def save_checkpoint(model: ForensicsModel, processor: Any, path: str | Path, *, save_backbone: str | bool = "auto") -> Path:
    """Write ``model`` and ``processor`` to directory ``path`` (created); returns the path.

    save_backbone: "auto" (see module doc), True (always full) or False (reference only).
    """
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    mode = _backbone_mode(model, save_backbone)

    rows = {"embed_rows": model.embed_tokens.base.weight[model.embed_tokens.new_ids], "embed_delta": model.embed_tokens.delta}
    if not model.tied:
        rows["lm_head_rows"] = model.lm_head.base.weight[model.lm_head.new_ids]
        rows["lm_head_delta"] = model.lm_head.delta
    save_file(_cpu(rows), str(out / "token_rows.safetensors"))

    heads = {f"cls_head.{k}": v for k, v in model.cls_head.state_dict().items()}
    heads.update({f"mask_head.{k}": v for k, v in model.mask_head.state_dict().items()})
    if model.mask_queries is not None:  # the LLM-free control's learned mask queries
        heads["mask_queries"] = model.mask_queries
    if model.expert_head is not None:
        heads.update({f"expert_head.{k}": v for k, v in model.expert_head.state_dict().items()})
    if model.mask_evidence is not None:
        heads.update({f"mask_evidence.{k}": v for k, v in model.mask_evidence.state_dict().items()})
    decoder = model.mask_decoder
    if isinstance(decoder, SamMaskDecoder):
        heads.update({f"mask_decoder.decoder.{k}": v for k, v in decoder.decoder.state_dict().items()})
        if decoder.encoder_mode == "lora":
            trained = {k: v for k, v in decoder.image_encoder.state_dict().items() if "lora_" in k}
            save_file(_cpu(trained), str(out / "sam_encoder.safetensors"))
        if model.config.sam in SAM_SPECS or decoder.encoder_mode == "full":
            sam = {f"image_encoder.{k}": v for k, v in decoder.image_encoder.state_dict().items()}
            sam.update({f"prompt_encoder.{k}": v for k, v in decoder.prompt_encoder.state_dict().items()})
            save_file(_cpu(sam), str(out / "sam.safetensors"))
    else:
        heads.update({f"mask_decoder.{k}": v for k, v in decoder.state_dict().items()})
    save_file(_cpu(heads), str(out / "heads.safetensors"))
    if model.config.train_vision == "full":
        save_file(_cpu(vision_tower(model.qwen).state_dict()), str(out / "vision.safetensors"))

    if mode == "full":
        (out / "backbone").mkdir(exist_ok=True)
        write_backbone(_plain_backbone_state(model), out / "backbone")
        model.qwen.config.save_pretrained(str(out / "backbone"))
    elif mode == "adapter":
        from peft import get_peft_model_state_dict

        (out / "adapter").mkdir(exist_ok=True)
        adapter = get_peft_model_state_dict(model.backbone, save_embedding_layers=False)
        adapter = {k: v for k, v in adapter.items() if "lora_" in k}
        save_file(_cpu(adapter), str(out / "adapter" / "adapter_model.safetensors"))
        peft_config = model.backbone.peft_config["default"].to_dict()
        peft_config["target_modules"] = (
            sorted(peft_config["target_modules"]) if isinstance(peft_config["target_modules"], (set, list)) else peft_config["target_modules"]
        )
        (out / "adapter" / "adapter_config.json").write_text(json.dumps(peft_config, indent=2, default=list))
    processor.save_pretrained(str(out))
    record = {**model.config.to_dict(), "backbone": mode, "tied": model.tied}
    (out / CONFIG_NAME).write_text(json.dumps(record, indent=2, sort_keys=True))
    return out


def read_config(path: str | Path) -> dict:
    """The checkpoint's JSON record (ForensicsModelConfig fields + "backbone", "tied")."""
    return json.loads((Path(path) / CONFIG_NAME).read_text())


def load_checkpoint(path: str | Path, *, device: str | torch.device = "cpu") -> tuple[ForensicsModel, Any]:
    """Rebuild (model, processor) from a :func:`save_checkpoint` directory, in eval mode."""
    src = Path(path)
    record = read_config(src)
    mode = record.pop("backbone")
    record.pop("tied")
    config = ForensicsModelConfig.from_dict(record)
    processor = load_processor(src)

    if mode == "full":
        from transformers import Qwen2_5_VLForConditionalGeneration

        backbone = load_pretrained(Qwen2_5_VLForConditionalGeneration.from_pretrained, src / "backbone",
                                   "backbone", dtype=getattr(torch, config.dtype))
        backbone.eval()
    else:
        backbone = build_backbone(config.base_model, seed=config.seed, dtype=config.dtype)

    model, _ = _build_forensics_model(
        base_model=config.base_model,
        sam=config.sam,
        mask_decoder=config.mask_decoder,
        hidden_layer=config.hidden_layer,
        cls_position=config.cls_position,
        mask_position=config.mask_position,
        seed=config.seed,
        dtype=config.dtype,
        new_row_noise=config.new_row_noise,
        sam_cache_items=config.sam_cache_items,
        conv_dim=config.conv_dim,
        mask_size=config.mask_size,
        processor=processor,
        backbone=backbone,
        expert=config.expert,
        train_vision=config.train_vision,
        train_sam_encoder=config.train_sam_encoder,
        language_model=config.language_model,
    )
    if model.token_ids.to_mapping() != config.token_ids:
        raise ValueError(f"tokenizer ids {model.token_ids.to_mapping()} differ from the saved {config.token_ids}")
    model.config = config

    if mode == "adapter":
        from peft import LoraConfig, get_peft_model, set_peft_model_state_dict

        lora_dict = json.loads((src / "adapter" / "adapter_config.json").read_text())
        lora = LoraConfig(**{k: v for k, v in lora_dict.items() if k in LoraConfig.__dataclass_fields__})
        model.backbone = get_peft_model(model.backbone, lora)
        set_peft_model_state_dict(model.backbone, load_file(str(src / "adapter" / "adapter_model.safetensors")))
        model.freeze_backbone()

    rows = load_file(str(src / "token_rows.safetensors"))
    with torch.no_grad():
        model.embed_tokens.base.weight[model.embed_tokens.new_ids] = rows["embed_rows"].to(model.embed_tokens.base.weight.dtype)
        model.embed_tokens.delta.copy_(rows["embed_delta"])
        if not model.tied:
            model.lm_head.base.weight[model.lm_head.new_ids] = rows["lm_head_rows"].to(model.lm_head.base.weight.dtype)
            model.lm_head.delta.copy_(rows["lm_head_delta"])

    heads = load_file(str(src / "heads.safetensors"))
    model.cls_head.load_state_dict({k[len("cls_head.") :]: v for k, v in heads.items() if k.startswith("cls_head.")})
    model.mask_head.load_state_dict({k[len("mask_head.") :]: v for k, v in heads.items() if k.startswith("mask_head.")})
    if model.mask_queries is not None:
        with torch.no_grad():
            model.mask_queries.copy_(heads["mask_queries"])
    if model.expert_head is not None:
        model.expert_head.load_state_dict({k[len("expert_head.") :]: v for k, v in heads.items()
                                           if k.startswith("expert_head.")})
    if model.mask_evidence is not None:
        model.mask_evidence.load_state_dict({k[len("mask_evidence.") :]: v for k, v in heads.items()
                                             if k.startswith("mask_evidence.")})
    decoder = model.mask_decoder
    if isinstance(decoder, SamMaskDecoder):
        prefix = "mask_decoder.decoder."
        decoder.decoder.load_state_dict({k[len(prefix) :]: v for k, v in heads.items() if k.startswith(prefix)})
        if (src / "sam.safetensors").exists():
            sam = load_file(str(src / "sam.safetensors"))
            decoder.image_encoder.load_state_dict({k[14:]: v for k, v in sam.items() if k.startswith("image_encoder.")})
            decoder.prompt_encoder.load_state_dict({k[15:]: v for k, v in sam.items() if k.startswith("prompt_encoder.")})
        _load_part(decoder.image_encoder, src / "sam_encoder.safetensors", config.train_sam_encoder != "none")
    else:
        decoder.load_state_dict({k[len("mask_decoder.") :]: v for k, v in heads.items() if k.startswith("mask_decoder.")})
    _load_part(vision_tower(model.qwen), src / "vision.safetensors", config.train_vision == "full")
    model.to(device)
    model.eval()
    return model, processor


# -- decision thresholds calibrated on validation (thresholds.json) ---------------------------------

THRESHOLDS_NAME = "thresholds.json"
DEFAULT_THRESHOLDS: dict[str, Any] = {"image": 0.5, "pixel": 0.5, "calibrated": False}


def save_thresholds(path: str | Path, record: dict[str, Any]) -> Path:
    """Write ``record`` (``{"image", "pixel", "calibrated", ...}``: the thresholds calibrated on
    validation, trainer.evaluation.calibration) to ``path/thresholds.json`` atomically."""
    import os

    missing = [k for k in DEFAULT_THRESHOLDS if k not in record]
    if missing:
        raise ValueError(f"thresholds record lacks {missing}")
    out = Path(path) / THRESHOLDS_NAME
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, out)
    return out


def load_thresholds(path: str | Path) -> dict[str, Any]:
    """The decision thresholds of checkpoint ``path``: its thresholds.json (``image`` on the cls score,
    ``pixel`` on the mask probabilities, ``calibrated`` True, plus the validation figures), or 0.5/0.5
    with ``calibrated: False`` when it has none. ValueError naming the file when it is unreadable."""
    file = Path(path) / THRESHOLDS_NAME
    if not file.is_file():
        return dict(DEFAULT_THRESHOLDS)
    try:
        record = json.loads(file.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{file}: not valid JSON ({e})") from None
    ok = isinstance(record, dict) and all(
        isinstance(record.get(k), (int, float)) and 0.0 <= record[k] <= 1.0 for k in ("image", "pixel"))
    if not ok:
        raise ValueError(f"{file}: needs 'image' and 'pixel' thresholds in [0, 1], got {record!r}")
    return {**DEFAULT_THRESHOLDS, **record}
def _load_part(module: torch.nn.Module, file: Path, expected: bool) -> None:
    """Load the tensors of ``file`` (a part of ``module``'s state: every key must exist in it) when
    ``expected``; a checkpoint whose config says the part trained but lacks the file is refused."""
    if not expected:
        return
    if not file.is_file():
        raise ValueError(f"{file.parent}: its config says this part trained, but {file.name} is missing")
    result = module.load_state_dict(load_file(str(file)), strict=False)
    if result.unexpected_keys:
        raise ValueError(f"{file}: tensors the model does not have: {result.unexpected_keys[:3]}")
