"""Segment-anything models: architectures, building them, and loading checkpoints by their shapes.

Shared by the synthesis engine (object regions for `--method inpaint --sam-checkpoint`) and the
trainer (the mask decoder). ``build_sam("tiny")`` builds a small SAM from segment-anything's own
modules (ImageEncoderViT, PromptEncoder, MaskDecoder, TwoWayTransformer): 128x128 input, patch
16 -> an 8x8 embedding grid, a 2-block 32-wide ViT, the real 256-wide prompt space and a lighter
two-way transformer (MLP 256 instead of 2048); it runs in milliseconds on a CPU.
``build_sam(PATH)`` loads a real checkpoint (``.pth`` through ``torch.load(weights_only=True)``,
or ``.safetensors``) and reads its architecture from the tensor shapes: vit_b / vit_l / vit_h are
recognised by name, anything else (e.g. a saved tiny SAM) is rebuilt from the shapes alone.

torch and segment_anything are imported inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from segment_anything.modeling import Sam

PROMPT_DIM = 256
"""SAM's prompt/embedding width (fixed by every released SAM checkpoint)."""

PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)


@dataclass(frozen=True)
class SamSpec:
    """Architecture of one SAM (the fields ``_build_sam`` needs)."""

    encoder_embed_dim: int
    encoder_depth: int
    encoder_num_heads: int
    encoder_global_attn_indexes: tuple[int, ...]
    image_size: int = 1024
    patch_size: int = 16
    window_size: int = 14
    decoder_mlp_dim: int = 2048
    prompt_dim: int = PROMPT_DIM
    name: str = "custom"

    @property
    def embedding_size(self) -> int:
        """Side of the square image-embedding grid (image_size / patch_size)."""
        return self.image_size // self.patch_size

    def to_dict(self) -> dict:
        d = asdict(self)
        d["encoder_global_attn_indexes"] = list(self.encoder_global_attn_indexes)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "SamSpec":
        return cls(**{**d, "encoder_global_attn_indexes": tuple(d["encoder_global_attn_indexes"])})


SAM_SPECS: dict[str, SamSpec] = {
    "vit_h": SamSpec(1280, 32, 16, (7, 15, 23, 31), name="vit_h"),
    "vit_l": SamSpec(1024, 24, 16, (5, 11, 17, 23), name="vit_l"),
    "vit_b": SamSpec(768, 12, 12, (2, 5, 8, 11), name="vit_b"),
    "tiny": SamSpec(32, 2, 2, (1,), image_size=128, patch_size=16, window_size=4, decoder_mlp_dim=256, name="tiny"),
}


def _build_sam(*, spec: SamSpec, seed: int = 0) -> "Sam":
    """A randomly initialised SAM of architecture ``spec`` (RNG forked: caller's state untouched)."""
    import torch
    from segment_anything.modeling import (
        ImageEncoderViT,
        MaskDecoder,
        PromptEncoder,
        Sam,
        TwoWayTransformer,
    )
    from torch import nn

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        sam = Sam(
            image_encoder=ImageEncoderViT(
                depth=spec.encoder_depth,
                embed_dim=spec.encoder_embed_dim,
                img_size=spec.image_size,
                mlp_ratio=4,
                norm_layer=partial(nn.LayerNorm, eps=1e-6),
                num_heads=spec.encoder_num_heads,
                patch_size=spec.patch_size,
                qkv_bias=True,
                use_rel_pos=True,
                global_attn_indexes=spec.encoder_global_attn_indexes,
                window_size=spec.window_size,
                out_chans=spec.prompt_dim,
            ),
            prompt_encoder=PromptEncoder(
                embed_dim=spec.prompt_dim,
                image_embedding_size=(spec.embedding_size, spec.embedding_size),
                input_image_size=(spec.image_size, spec.image_size),
                mask_in_chans=16,
            ),
            mask_decoder=MaskDecoder(
                num_multimask_outputs=3,
                transformer=TwoWayTransformer(
                    depth=2, embedding_dim=spec.prompt_dim, mlp_dim=spec.decoder_mlp_dim, num_heads=8
                ),
                transformer_dim=spec.prompt_dim,
                iou_head_depth=3,
                iou_head_hidden_dim=256,
            ),
            pixel_mean=list(PIXEL_MEAN),
            pixel_std=list(PIXEL_STD),
        )
    sam.eval()
    return sam


def spec_from_state_dict(state_dict: dict) -> SamSpec:
    """Read a SAM architecture from checkpoint tensor shapes (vit_b/l/h named when they match)."""
    proj = state_dict["image_encoder.patch_embed.proj.weight"]  # D x 3 x p x p
    embed_dim, patch = int(proj.shape[0]), int(proj.shape[-1])
    grid = int(state_dict["image_encoder.pos_embed"].shape[1])  # 1 x g x g x D
    depth = 1 + max(int(k.split(".")[2]) for k in state_dict if k.startswith("image_encoder.blocks."))
    head_dim = int(state_dict["image_encoder.blocks.0.attn.rel_pos_h"].shape[1])
    global_idx, window = [], 0
    for i in range(depth):
        span = int(state_dict[f"image_encoder.blocks.{i}.attn.rel_pos_h"].shape[0])
        if span == 2 * grid - 1:
            global_idx.append(i)
        else:
            window = (span + 1) // 2
    mlp_dim = int(state_dict["mask_decoder.transformer.layers.0.mlp.lin1.weight"].shape[0])
    prompt_dim = int(state_dict["mask_decoder.iou_token.weight"].shape[1])
    spec = SamSpec(
        encoder_embed_dim=embed_dim,
        encoder_depth=depth,
        encoder_num_heads=embed_dim // head_dim,
        encoder_global_attn_indexes=tuple(global_idx),
        image_size=grid * patch,
        patch_size=patch,
        window_size=window or 14,
        decoder_mlp_dim=mlp_dim,
        prompt_dim=prompt_dim,
    )
    for name, known in SAM_SPECS.items():
        if {**known.to_dict(), "name": ""} == {**spec.to_dict(), "name": ""}:
            return known
    return spec


def detect_sam_variant(state_dict: dict) -> str:
    """``"vit_b"``, ``"vit_l"``, ``"vit_h"``, ``"tiny"`` or ``"custom"``, from the shapes."""
    return spec_from_state_dict(state_dict).name


def read_state_dict(path: Path) -> dict:
    """A checkpoint's tensors: ``.safetensors``, or ``torch.load(weights_only=True)`` (no pickled code
    runs); a ``{"model": state_dict}`` wrapper is unwrapped."""
    import torch

    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds a {type(state).__name__}, not a state dict")
    if "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    return state


def build_sam(name_or_path: str | Path, *, seed: int = 0) -> tuple["Sam", SamSpec]:
    """``"tiny"`` (or vit_b/vit_l/vit_h, randomly initialised) or a checkpoint path -> (Sam, spec).

    The Sam comes in eval mode on the CPU, float32.
    """
    if isinstance(name_or_path, str) and name_or_path in SAM_SPECS:
        spec = SAM_SPECS[name_or_path]
        return _build_sam(spec=spec, seed=seed), spec
    path = Path(name_or_path)
    if not path.is_file():
        raise FileNotFoundError(f"SAM checkpoint not found: {path} (or use one of {sorted(SAM_SPECS)})")
    state = read_state_dict(path)
    try:
        spec = spec_from_state_dict(state)
    except (KeyError, ValueError, IndexError) as e:
        raise ValueError(f"{path} is not a segment-anything checkpoint (missing {e})") from None
    sam = _build_sam(spec=spec, seed=seed)
    sam.load_state_dict(state)
    return sam, spec
