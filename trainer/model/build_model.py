"""Builders: a registry of backbones (tiny ones built in-process, or a local path / hub id) over one private builder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Collection

import torch
from torch import nn
from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

from forgery_synth.dataset.answer_tokens import DEFAULT_CLS_POSITION, DEFAULT_MASK_POSITION, check_cls_position, check_mask_position
from trainer.model.config import LANGUAGE_MODELS, SAM_ENCODER_MODES, TRAIN_VISION, WEIGHT_DTYPES, ForensicsModelConfig, HiddenLayer
from trainer.model.expert_views import check_expert
from trainer.model.forensics_model import ForensicsModel
from trainer.model.heads import ConvMaskDecoder
from trainer.model.hub import ModelNotAvailable, downloads_allowed, load_pretrained, missing_model_message
from trainer.model.sam_decoder import (
    SamMaskDecoder,
    build_sam,
)
from trainer.model.tokens import (
    add_forensic_tokens,
    is_offline_name,
    load_processor,
    load_tokenizer,
)


def build_tiny_qwen(*, seed: int = 0, tie_word_embeddings: bool = True, vocab_size: int = 151936) -> Qwen2_5_VLForConditionalGeneration:
    """A random Qwen2.5-VL with the real vocabulary size and tiny everything else.

    Text: 2 layers, hidden 64, 4 heads (2 KV), MLP 128, mRoPE sections (2, 3, 3). Vision: depth 2,
    hidden 32, patch 14, merge 2, window 56 px, block 1 full attention, output 64. About 10 M
    parameters, nearly all in the 151,936 x 64 embedding (plus as many again when untied).
    """
    config = tiny_qwen_config(tie_word_embeddings=tie_word_embeddings, vocab_size=vocab_size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2_5_VLForConditionalGeneration(config)
    model.eval()
    return model


def tiny_qwen_config(*, tie_word_embeddings: bool = True, vocab_size: int = 151936) -> Qwen2_5_VLConfig:
    """The config of :func:`build_tiny_qwen` (2 text layers)."""
    config = Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=vocab_size,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=4096,
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [2, 3, 3]},
            tie_word_embeddings=tie_word_embeddings,
        ),
        vision_config=dict(
            depth=2,
            hidden_size=32,
            intermediate_size=64,
            num_heads=2,
            patch_size=14,
            spatial_merge_size=2,
            temporal_patch_size=2,
            window_size=56,
            out_hidden_size=64,
            fullatt_block_indexes=[1],
        ),
        tie_word_embeddings=tie_word_embeddings,
    )
    config._attn_implementation = "sdpa"
    return config


def _load_qwen(path: str, dtype: str) -> Qwen2_5_VLForConditionalGeneration:
    try:
        model = load_pretrained(Qwen2_5_VLForConditionalGeneration.from_pretrained, path, "--base-model",
                                dtype=getattr(torch, dtype))
    except ModelNotAvailable:
        if downloads_allowed():
            raise
        raise ModelNotAvailable(missing_model_message(path, "--base-model")) from None
    model.eval()
    return model


BACKBONE_BUILDERS: dict[str, Callable[..., Qwen2_5_VLForConditionalGeneration]] = {
    "tiny": lambda *, seed, dtype: build_tiny_qwen(seed=seed, tie_word_embeddings=True).to(getattr(torch, dtype)),
    "tiny-untied": lambda *, seed, dtype: build_tiny_qwen(seed=seed, tie_word_embeddings=False).to(getattr(torch, dtype)),
}
"""In-process backbones: "tiny" is tied like Qwen2.5-VL-3B, "tiny-untied" untied like 7B."""

def resolve_dtype(dtype: str | None, base_model: str) -> str:
    """The weight dtype ``dtype`` means for ``base_model`` (the one reader of "auto"): an explicit dtype as
    given; "auto"/None: float32 for the in-process test backbones (tiny), else bfloat16 (real checkpoints
    are released in bf16; on the CPU it halves memory), except float32 on a CUDA GPU without bf16."""
    if dtype not in (None, "auto"):
        if dtype not in WEIGHT_DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(WEIGHT_DTYPES)}, got {dtype!r}")
        return dtype
    if base_model in BACKBONE_BUILDERS:
        return "float32"
    if torch.cuda.is_available() and not torch.cuda.is_bf16_supported():
        return "float32"
    return "bfloat16"


def resolve_model_path(name: str, builtin: Collection[str]) -> str:
    """``name`` as a run stores it: a relative path that exists -> absolute (so later stages, predict, eval
    and export find it from any working directory); built-in names (``builtin``) and hub ids unchanged."""
    if name in builtin or not Path(name).exists():
        return name
    return str(Path(name).resolve())


def backbone_layers(base_model: str) -> int:
    """The number of decoder layers of ``base_model``, from its config alone (nothing loaded): the
    in-process builders' config, or config.json of a folder / cached hub id."""
    if base_model in BACKBONE_BUILDERS:
        return tiny_qwen_config().text_config.num_hidden_layers
    try:
        config = load_pretrained(Qwen2_5_VLConfig.from_pretrained, base_model, "--base-model")
    except ModelNotAvailable:
        if downloads_allowed():
            raise
        raise ModelNotAvailable(missing_model_message(base_model, "--base-model")) from None
    return int(config.text_config.num_hidden_layers)


def check_hidden_layer(spec: HiddenLayer, num_layers: int) -> None:
    """ValueError naming the valid range when ``spec`` (an index or indices into hidden_states, which
    holds ``num_layers + 1`` entries: 0 the embeddings, ``num_layers`` the last) is out of it."""
    if spec == "last":
        return
    indices = [spec] if isinstance(spec, int) else list(spec)
    bad = [i for i in indices if not -(num_layers + 1) <= int(i) <= num_layers]
    if bad:
        raise ValueError(f"--hidden-layer {','.join(map(str, bad))}: the backbone has {num_layers} layers, so an index "
                         f"is in 0..{num_layers} (0 = the embeddings, {num_layers} = the last) or -{num_layers + 1}..-1")


def build_backbone(base_model: str, *, seed: int = 0, dtype: str = "float32") -> Qwen2_5_VLForConditionalGeneration:
    """A named in-process backbone (:data:`BACKBONE_BUILDERS`) or ``from_pretrained(path or hub id)``
    (local files only unless downloads are allowed: trainer.model.hub), its weights in ``dtype``."""
    if base_model in BACKBONE_BUILDERS:
        return BACKBONE_BUILDERS[base_model](seed=seed, dtype=dtype)
    return _load_qwen(base_model, dtype)


def check_encoder_options(mask_decoder: str, train_vision: str, train_sam_encoder: str, language_model: str) -> None:
    """ValueError naming the first value outside TRAIN_VISION / SAM_ENCODER_MODES / LANGUAGE_MODELS, or a
    SAM encoder option or an LLM-free model without SAM (the conv decoder)."""
    for name, value, allowed in (("train_vision", train_vision, TRAIN_VISION),
                                 ("train_sam_encoder", train_sam_encoder, SAM_ENCODER_MODES),
                                 ("language_model", language_model, LANGUAGE_MODELS)):
        if value not in allowed:
            raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
    if train_sam_encoder != "none" and mask_decoder != "sam":
        raise ValueError(f"train_sam_encoder {train_sam_encoder!r} needs the SAM mask decoder, not {mask_decoder!r}")
    if language_model == "none" and mask_decoder != "sam":
        raise ValueError("the LLM-free model (language_model 'none') needs the SAM mask decoder: the conv decoder "
                         "reads the language model's image states")


def _tokenizer_source(base_model: str) -> str:
    return "offline" if base_model in BACKBONE_BUILDERS or is_offline_name(base_model) else base_model


def _build_forensics_model(
    *,
    base_model: str,
    sam: str,
    mask_decoder: str,
    hidden_layer: HiddenLayer,
    cls_position: str,
    mask_position: str,
    seed: int,
    dtype: str,
    new_row_noise: float,
    sam_cache_items: int,
    conv_dim: int,
    mask_size: tuple[int, int] | None,
    processor: Any | None,
    backbone: Qwen2_5_VLForConditionalGeneration | None,
    expert: str,
    train_vision: str = "none",
    train_sam_encoder: str = "none",
    language_model: str = "qwen",
) -> tuple[ForensicsModel, Any]:
    if mask_decoder not in ("sam", "conv"):
        raise ValueError(f"mask_decoder must be 'sam' or 'conv', got {mask_decoder!r}")
    check_expert(expert)
    check_encoder_options(mask_decoder, train_vision, train_sam_encoder, language_model)
    dtype = resolve_dtype(dtype, base_model)
    if processor is None:
        source = _tokenizer_source(base_model)
        try:
            tokenizer = load_tokenizer(source)
            ids = add_forensic_tokens(tokenizer)
            processor = load_processor(source, tokenizer)
        except ModelNotAvailable:
            if downloads_allowed():
                raise
            raise ModelNotAvailable(missing_model_message(base_model, "--base-model")) from None
    else:
        ids = add_forensic_tokens(processor.tokenizer)
    if backbone is None:
        backbone = build_backbone(base_model, seed=seed, dtype=dtype)
    check_hidden_layer(hidden_layer, backbone.config.text_config.num_hidden_layers)
    if mask_decoder == "sam":
        sam_model, spec = build_sam(sam, seed=seed)
        sam_model.image_encoder.to(getattr(torch, dtype))  # frozen: in the run's dtype (its mask decoder stays fp32)
        decoder: nn.Module = SamMaskDecoder(sam_model, spec, cache_items=sam_cache_items,
                                            encoder_mode=train_sam_encoder, seed=seed + 5)
        default_size = (spec.image_size, spec.image_size)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + 3)
            decoder = ConvMaskDecoder(backbone.config.text_config.hidden_size, conv_dim)
        default_size = (4 * 28, 4 * 28)
    config = ForensicsModelConfig(
        base_model=base_model,
        sam=sam,
        mask_decoder=mask_decoder,
        hidden_layer=hidden_layer,
        cls_position=check_cls_position(cls_position),
        mask_position=check_mask_position(mask_position),
        seed=seed,
        new_row_noise=new_row_noise,
        sam_cache_items=sam_cache_items,
        conv_dim=conv_dim,
        mask_size=tuple(mask_size) if mask_size is not None else default_size,
        dtype=dtype,
        token_ids=ids,
        expert=expert,
        train_vision=train_vision,
        train_sam_encoder=train_sam_encoder,
        language_model=language_model,
    )
    model = ForensicsModel(backbone, decoder, config)
    model.eval()
    return model, processor


def build_forensics_model(
    base_model: str = "tiny",
    sam: str = "tiny",
    *,
    mask_decoder: str = "sam",
    hidden_layer: HiddenLayer = "last",
    cls_position: str = DEFAULT_CLS_POSITION,
    mask_position: str = DEFAULT_MASK_POSITION,
    seed: int = 0,
    dtype: str = "float32",
    new_row_noise: float = 0.02,
    sam_cache_items: int = 256,
    conv_dim: int = 64,
    mask_size: tuple[int, int] | None = None,
    processor: Any | None = None,
    backbone: Qwen2_5_VLForConditionalGeneration | None = None,
    expert: str = "none",
    train_vision: str = "none",
    train_sam_encoder: str = "none",
    language_model: str = "qwen",
) -> tuple[ForensicsModel, Any]:
    """Build (model, processor). The model comes in eval mode with the stage-1 trainable set.

    base_model: "tiny" / "tiny-untied" / local path / hub id; sam: "tiny" / vit name / checkpoint
    path; dtype: the frozen backbone and SAM image-encoder weights (:data:`trainer.model.config.WEIGHT_DTYPES`;
    "auto": :func:`resolve_dtype`; trainable tensors stay float32); cls_position / mask_position: where
    ``<cls>`` / ``<mask_1..32>`` stand in answers (`answer_tokens.CLS_POSITIONS`, `MASK_POSITIONS`); expert: the
    view the expert head reads (trainer.model.expert_views.EXPERTS; "none": no expert head);
    train_vision / train_sam_encoder / language_model: see :class:`ForensicsModelConfig`. The
    processor (tokenizer with the forensic tokens added) is built offline for tiny backbones; pass
    ``processor``/``backbone`` to reuse already-loaded ones.
    """
    return _build_forensics_model(
        base_model=base_model,
        sam=sam,
        mask_decoder=mask_decoder,
        hidden_layer=hidden_layer,
        cls_position=cls_position,
        mask_position=mask_position,
        seed=seed,
        dtype=dtype,
        new_row_noise=new_row_noise,
        sam_cache_items=sam_cache_items,
        conv_dim=conv_dim,
        mask_size=mask_size,
        processor=processor,
        backbone=backbone,
        expert=expert,
        train_vision=train_vision,
        train_sam_encoder=train_sam_encoder,
        language_model=language_model,
    )


def build_tiny_forensics_model(**kw: Any) -> tuple[ForensicsModel, Any]:
    """Tiny tied backbone + tiny SAM (tests, demo)."""
    return build_forensics_model("tiny", kw.pop("sam", "tiny"), **kw)


def build_tiny_untied_forensics_model(**kw: Any) -> tuple[ForensicsModel, Any]:
    """Tiny untied backbone (like the 7B model) + tiny SAM."""
    return build_forensics_model("tiny-untied", kw.pop("sam", "tiny"), **kw)


def build_tiny_conv_forensics_model(**kw: Any) -> tuple[ForensicsModel, Any]:
    """Tiny backbone with the conv mask decoder (no SAM)."""
    return build_forensics_model("tiny", "tiny", mask_decoder="conv", **kw)


def config_json(model: ForensicsModel) -> str:
    """The model's config as pretty JSON (what checkpoints store)."""
    return json.dumps(model.config.to_dict(), indent=2, sort_keys=True)


forensics_model_registry: dict[str, Callable[..., tuple[ForensicsModel, Any]]] = {
    "tiny": build_tiny_forensics_model,
    "tiny-untied": build_tiny_untied_forensics_model,
    "tiny-conv": build_tiny_conv_forensics_model,
}
