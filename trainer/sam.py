"""SAM: building it (tiny in-process, or a real checkpoint), preparing images, and the SAM mask path.

``build_sam("tiny")`` builds a small SAM from segment-anything's own modules (ImageEncoderViT,
PromptEncoder, MaskDecoder, TwoWayTransformer): 128x128 input, patch 16 -> an 8x8 embedding grid,
a 2-block 32-wide ViT, the real 256-wide prompt space (so the LLM side is the same as with a
real SAM) and a lighter two-way transformer (MLP 256 instead of 2048). It runs in milliseconds on a
CPU. ``build_sam(PATH)`` loads a real segment-anything checkpoint (``.pth`` through
``torch.load(weights_only=True)``, or ``.safetensors``) and reads its architecture from the
tensor shapes: vit_b / vit_l / vit_h are recognised by name, anything else (e.g. a saved tiny SAM)
is rebuilt from the shapes alone.

:class:`SamMaskDecoder` is the model's mask path: frozen image encoder (embeddings cached per
image), frozen prompt encoder (optional box prompt), trainable mask decoder taking the 32 sparse
prompt embeddings that ``mask_head`` makes from the ``<mask_i>`` states.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer
from torch import nn

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


def _build_sam(*, spec: SamSpec, seed: int = 0) -> Sam:
    """A randomly initialised SAM of architecture ``spec`` (RNG forked: caller's state untouched)."""
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
                out_chans=PROMPT_DIM,
            ),
            prompt_encoder=PromptEncoder(
                embed_dim=PROMPT_DIM,
                image_embedding_size=(spec.embedding_size, spec.embedding_size),
                input_image_size=(spec.image_size, spec.image_size),
                mask_in_chans=16,
            ),
            mask_decoder=MaskDecoder(
                num_multimask_outputs=3,
                transformer=TwoWayTransformer(
                    depth=2, embedding_dim=PROMPT_DIM, mlp_dim=spec.decoder_mlp_dim, num_heads=8
                ),
                transformer_dim=PROMPT_DIM,
                iou_head_depth=3,
                iou_head_hidden_dim=256,
            ),
            pixel_mean=list(PIXEL_MEAN),
            pixel_std=list(PIXEL_STD),
        )
    sam.eval()
    return sam


def spec_from_state_dict(state_dict: dict[str, torch.Tensor]) -> SamSpec:
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
    spec = SamSpec(
        encoder_embed_dim=embed_dim,
        encoder_depth=depth,
        encoder_num_heads=embed_dim // head_dim,
        encoder_global_attn_indexes=tuple(global_idx),
        image_size=grid * patch,
        patch_size=patch,
        window_size=window or 14,
        decoder_mlp_dim=mlp_dim,
    )
    for name, known in SAM_SPECS.items():
        if {**known.to_dict(), "name": ""} == {**spec.to_dict(), "name": ""}:
            return known
    return spec


def detect_sam_variant(state_dict: dict[str, torch.Tensor]) -> str:
    """``"vit_b"``, ``"vit_l"``, ``"vit_h"``, ``"tiny"`` or ``"custom"``, from the shapes."""
    return spec_from_state_dict(state_dict).name


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    if "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    return state


def build_sam(name_or_path: str | Path, *, seed: int = 0) -> tuple[Sam, SamSpec]:
    """``"tiny"`` (or vit_b/vit_l/vit_h, randomly initialised) or a checkpoint path -> (Sam, spec).

    The Sam comes in eval mode on the CPU, float32.
    """
    if isinstance(name_or_path, str) and name_or_path in SAM_SPECS:
        spec = SAM_SPECS[name_or_path]
        return _build_sam(spec=spec, seed=seed), spec
    path = Path(name_or_path)
    if not path.is_file():
        raise FileNotFoundError(f"SAM checkpoint not found: {path} (or use one of {sorted(SAM_SPECS)})")
    state = _read_state_dict(path)
    spec = spec_from_state_dict(state)
    sam = _build_sam(spec=spec, seed=seed)
    sam.load_state_dict(state)
    return sam, spec


def prepare_sam_image(image: np.ndarray, image_size: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """SAM preprocessing for one image.

    ``image``: H x W x 3 uint8 RGB. Resizes the longest side to ``image_size`` (bilinear,
    antialiased), normalises with SAM's pixel mean/std and pads bottom/right with zeros.
    Returns (3 x S x S float32, (h, w) the resized size before padding).
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected H x W x 3 uint8, got {image.shape} {image.dtype}")
    h0, w0 = image.shape[:2]
    scale = image_size / max(h0, w0)
    h, w = max(1, int(h0 * scale + 0.5)), max(1, int(w0 * scale + 0.5))
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float()
    x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=True)[0]
    mean = torch.tensor(PIXEL_MEAN).view(3, 1, 1)
    std = torch.tensor(PIXEL_STD).view(3, 1, 1)
    x = (x - mean) / std
    x = F.pad(x, (0, image_size - w, 0, image_size - h))
    return x.contiguous(), (h, w)


def prepare_sam_batch(images: list[np.ndarray], image_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`prepare_sam_image` over a list -> (B x 3 x S x S float32, B x 2 int64 resized sizes)."""
    prepared = [prepare_sam_image(im, image_size) for im in images]
    return torch.stack([p[0] for p in prepared]), torch.tensor([p[1] for p in prepared], dtype=torch.long)


@dataclass
class EmbeddingCache:
    """Bounded LRU cache of frozen SAM image embeddings (kept on the CPU).

    Keyed by a caller-given key (e.g. the sample key) or, without one, by the SHA-1 of the
    prepared image tensor. ``max_items`` bounds memory: one vit_h embedding is 4 MiB in float32.
    """

    max_items: int = 256
    _store: OrderedDict = field(default_factory=OrderedDict, repr=False)
    hits: int = 0
    misses: int = 0

    @staticmethod
    def key_of(image: torch.Tensor) -> str:
        return hashlib.sha1(image.detach().cpu().contiguous().numpy().tobytes()).hexdigest()

    def get(self, key: str) -> torch.Tensor | None:
        value = self._store.get(key)
        if value is None:
            self.misses += 1
            return None
        self._store.move_to_end(key)
        self.hits += 1
        return value

    def put(self, key: str, value: torch.Tensor) -> None:
        if self.max_items <= 0:
            return
        self._store[key] = value.detach().to("cpu")
        self._store.move_to_end(key)
        while len(self._store) > self.max_items:
            self._store.popitem(last=False)

    def __len__(self) -> int:
        return len(self._store)

    def clear(self) -> None:
        self._store.clear()


class SamMaskDecoder(nn.Module):
    """Mask path over SAM: 32 sparse prompts (+ optional box) -> one mask per image.

    The image encoder and prompt encoder are frozen (``requires_grad=False``, always in eval
    mode); the mask decoder trains. With ``train_image_encoder=False`` (the default) image
    embeddings are computed without grad and cached per image.
    """

    def __init__(self, sam: Sam, spec: SamSpec, *, cache_items: int = 256, train_image_encoder: bool = False):
        super().__init__()
        self.spec = spec
        self.image_encoder = sam.image_encoder
        self.prompt_encoder = sam.prompt_encoder
        self.decoder = sam.mask_decoder
        self.train_image_encoder = train_image_encoder
        for p in self.image_encoder.parameters():
            p.requires_grad_(train_image_encoder)
        for p in self.prompt_encoder.parameters():
            p.requires_grad_(False)
        self.cache = EmbeddingCache(max_items=cache_items if not train_image_encoder else 0)

    @property
    def image_size(self) -> int:
        return self.spec.image_size

    def train(self, mode: bool = True) -> "SamMaskDecoder":
        super().train(mode)
        self.prompt_encoder.eval()
        if not self.train_image_encoder:
            self.image_encoder.eval()
        return self

    def embed_images(self, sam_images: torch.Tensor, keys: list[str] | None = None) -> torch.Tensor:
        """B x 3 x S x S normalised images -> B x 256 x g x g embeddings (cached when frozen)."""
        if self.train_image_encoder:
            return self.image_encoder(sam_images)
        keys = keys if keys is not None else [EmbeddingCache.key_of(im) for im in sam_images]
        out: list[torch.Tensor | None] = [self.cache.get(k) for k in keys]
        todo = [i for i, e in enumerate(out) if e is None]
        if todo:
            with torch.no_grad():
                fresh = self.image_encoder(sam_images[todo])
            for i, emb in zip(todo, fresh):
                out[i] = emb
                self.cache.put(keys[i], emb)
        device = sam_images.device
        return torch.stack([e.to(device) for e in out])  # type: ignore[union-attr]

    def forward(
        self,
        prompts: torch.Tensor,
        image_embeddings: torch.Tensor,
        output_size: tuple[int, int],
        input_sizes: torch.Tensor | None = None,
        boxes: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Decode one mask per image.

        prompts: B x P x 256 float (the mask_head outputs); image_embeddings: B x 256 x g x g;
        output_size: (H, W) of the returned logits; input_sizes: B x 2 (h, w) of the image inside
        the padded S x S SAM frame (None: the whole frame); boxes: B x 4 (x1, y1, x2, y2) in SAM
        frame pixels, rows with NaN mean "no box". Returns B x 1 x H x W float32 logits.
        """
        dense_pe = self.prompt_encoder.get_dense_pe()
        s = self.spec.image_size
        masks = []
        # SAM's decoder repeats the image embedding once per prompt set: run it per image.
        for i in range(prompts.shape[0]):
            box = None
            if boxes is not None and not torch.isnan(boxes[i]).any():
                box = boxes[i : i + 1].to(prompts.dtype)
            sparse, dense = self.prompt_encoder(points=None, boxes=box, masks=None)
            sparse = torch.cat([sparse.to(prompts.dtype), prompts[i : i + 1]], dim=1)
            low_res, _ = self.decoder(
                image_embeddings=image_embeddings[i : i + 1],
                image_pe=dense_pe,
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=False,
            )
            frame = F.interpolate(low_res, size=(s, s), mode="bilinear", align_corners=False)
            if input_sizes is not None:
                h, w = int(input_sizes[i, 0]), int(input_sizes[i, 1])
                frame = frame[..., :h, :w]
            masks.append(F.interpolate(frame, size=tuple(output_size), mode="bilinear", align_corners=False))
        return torch.cat(masks, dim=0).float()
