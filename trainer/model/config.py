"""The forensics model's configuration: which layer, which decoder, head sizes; JSON in every checkpoint."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from forgery_synth.dataset.answer_tokens import DEFAULT_CLS_POSITION, DEFAULT_MASK_POSITION, LEGACY_LAYOUT

STATE_AT_TOKEN = "token"
"""The one shift convention: features are the hidden states at the special tokens' own positions."""


HiddenLayer = str | int | list[int]

TRAIN_VISION = ("none", "lora", "full")
"""--train-vision: the Qwen vision tower and merger frozen, with LoRA, or trained in full."""
SAM_ENCODER_MODES = ("none", "lora")
"""--train-sam-encoder: SAM's image encoder frozen (embeddings cacheable) or with LoRA."""
LANGUAGE_MODELS = ("qwen", "none")
"""--language-model: the Qwen LLM reads image and answer, or none (the LLM-free control)."""
WEIGHT_DTYPES = ("auto", "bfloat16", "float16", "float32")
"""``--dtype`` choices: the dtype of the frozen backbone and SAM image-encoder weights (trainable tensors are
float32 whatever it is; "auto": trainer.model.build_model.resolve_dtype)."""


@dataclass
class ForensicsModelConfig:
    """Everything needed to rebuild a ForensicsModel (saved as JSON in checkpoints).

    base_model: "tiny" / "tiny-untied" / a local path or hub id of a Qwen2.5-VL checkpoint.
    sam: "tiny" / "vit_b" / "vit_l" / "vit_h" (random) / path to a segment-anything checkpoint.
    mask_decoder: "sam" (SAM prompt encoder + mask decoder) or "conv" (no SAM: the mask tokens
    attend over upsampled visual features of the first image).
    hidden_layer: "last", an int index into hidden_states, or a list of indices to average.
    cls_position: where ``<cls>`` stands in answers, in training and inference alike
    (`forgery_synth.dataset.answer_tokens.CLS_POSITIONS`); checkpoints written before the option
    existed were trained after-verdict.
    mask_position: where ``<mask_1..32>`` stand (`answer_tokens.MASK_POSITIONS`), likewise;
    checkpoints written before the option existed were trained after-region.
    new_row_noise: std of the noise added to the mean row, relative to the rows' overall std.
    mask_size: default (H, W) of mask_logits when the caller gives none.
    expert: the expert view the expert head reads ("none", "noise", "srm", "ela", "classical", "prnu";
    trainer.model.expert_views), its evidence added to the mask and cls logits.
    train_vision: what of the Qwen vision tower and merger trains (``TRAIN_VISION``): "none" (frozen),
    "lora" (peft LoRA on the blocks' qkv/proj/gate/up/down and the merger MLP, in the backbone's one
    adapter), "full" (every vision parameter; checkpoints then hold ``vision.safetensors``).
    train_sam_encoder: "none" or "lora" (LoRA on SAM's image-encoder blocks, ``SAM_ENCODER_MODES``;
    embeddings then computed live, never cached). language_model: "qwen" or "none" (the LLM-free
    control: cls and mask heads read the vision tower's merged features; no text).
    cls_mask_evidence: the cls logit also reads the mask decoder's map (trainer.model.mask_evidence);
    checkpoints written before it existed have none.
    """

    base_model: str = "tiny"
    sam: str = "tiny"
    mask_decoder: str = "sam"
    hidden_layer: HiddenLayer = "last"
    cls_position: str = DEFAULT_CLS_POSITION
    mask_position: str = DEFAULT_MASK_POSITION
    seed: int = 0
    new_row_noise: float = 0.02
    sam_cache_items: int = 256
    conv_dim: int = 64
    mask_size: tuple[int, int] = (128, 128)
    dtype: str = "float32"
    token_ids: dict[str, int] = field(default_factory=dict)
    state_at: str = STATE_AT_TOKEN
    expert: str = "none"
    train_vision: str = "none"
    train_sam_encoder: str = "none"
    language_model: str = "qwen"
    cls_mask_evidence: bool = True

    def to_dict(self) -> dict:
        d = asdict(self)
        d["mask_size"] = list(self.mask_size)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ForensicsModelConfig":
        d = dict(d)
        d["mask_size"] = tuple(d["mask_size"])
        d.setdefault("cls_position", LEGACY_LAYOUT[0])
        d.setdefault("mask_position", LEGACY_LAYOUT[1])
        d.setdefault("cls_mask_evidence", False)
        return cls(**d)
