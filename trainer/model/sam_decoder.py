"""SAM in the model: preparing images, the embedding cache, and the SAM mask path.

Building SAMs (``build_sam("tiny")``, ``build_sam(PATH)`` by checkpoint shapes, with
``weights_only=True``) lives in :mod:`forgery_synth.models.sam`, shared with the synthesis engine;
its names are re-exported here.

:class:`SamMaskDecoder` is the model's mask path: frozen image encoder (embeddings cached per
image), frozen prompt encoder (optional box prompt), trainable mask decoder taking the 32 sparse
prompt embeddings that ``mask_head`` makes from the ``<mask_i>`` states. Embeddings written once to
disk (``forgery cache-embeddings``, trainer.training.sam_cache) come in as ``cached`` rows: the encoder
runs only for the others. :func:`sam_image_hash` and :func:`encoder_fingerprint` say which image and
which encoder an embedding belongs to.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from segment_anything.modeling import Sam
from torch import nn

from forgery_synth.models.sam import (  # noqa: F401  (re-exported: the trainer's SAM API)
    PIXEL_MEAN,
    PIXEL_STD,
    PROMPT_DIM,
    SAM_SPECS,
    SamSpec,
    _build_sam,
    build_sam,
    detect_sam_variant,
    spec_from_state_dict,
)
from trainer.model.adapters import add_sam_encoder_lora


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


def sam_image_hash(image: np.ndarray) -> str:
    """SHA-1 (hex) of the exact H x W x 3 uint8 image handed to :func:`prepare_sam_image`, shape included:
    the encoder's input is a function of these bytes and the SAM's image size, so a changed image
    (augmentation, hidden blocks) never matches an embedding made from the original."""
    h = hashlib.sha1(f"{image.shape}{image.dtype}".encode())
    h.update(np.ascontiguousarray(image).tobytes())
    return h.hexdigest()


def encoder_fingerprint(encoder: nn.Module) -> str:
    """SHA-256 (hex) of an image encoder's weights (names, dtypes, shapes, bytes, in name order): two
    encoders with the same fingerprint give the same embeddings, whatever checkpoint file they came from."""
    h = hashlib.sha256()
    for name, t in sorted(encoder.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


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

    The prompt encoder is frozen (``requires_grad=False``, always in eval mode); the mask decoder
    trains. ``encoder_mode`` says what of the image encoder trains: "none" (frozen: embeddings computed
    without grad and cached per image), "lora" (LoRA on its blocks' linears, :func:`add_sam_encoder_lora`,
    seeded from ``seed``) or "full"; when it trains, embeddings are computed live with grad, never
    cached. ``train_image_encoder=True`` is ``encoder_mode="full"``.
    """

    def __init__(self, sam: Sam, spec: SamSpec, *, cache_items: int = 256, train_image_encoder: bool = False,
                 encoder_mode: str | None = None, seed: int = 0):
        super().__init__()
        mode = encoder_mode or ("full" if train_image_encoder else "none")
        if mode not in ("none", "lora", "full"):
            raise ValueError(f"SAM encoder mode must be none, lora or full, got {mode!r}")
        self.spec = spec
        self.image_encoder = sam.image_encoder
        self.prompt_encoder = sam.prompt_encoder
        self.decoder = sam.mask_decoder
        if mode == "lora":
            add_sam_encoder_lora(self.image_encoder, seed=seed)
        self.encoder_mode = mode
        self.train_image_encoder = mode != "none"
        for name, p in self.image_encoder.named_parameters():
            p.requires_grad_(mode == "full" or (mode == "lora" and "lora_" in name))
        for p in self.prompt_encoder.parameters():
            p.requires_grad_(False)
        self.cache = EmbeddingCache(max_items=cache_items if not self.train_image_encoder else 0)

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The parameters that train: the mask decoder's that reach the single-mask output (not the IoU
        head nor the three multimask hypernetworks: ``multimask_output=False`` reads mask 0 only, so no
        trainable parameter goes gradient-less), and the image encoder's per ``encoder_mode`` (its LoRA
        tensors, or all of it)."""
        dec = self.decoder
        unused = {id(p) for p in dec.iou_prediction_head.parameters()}
        for mlp_i in list(dec.output_hypernetworks_mlps)[1:]:
            unused |= {id(p) for p in mlp_i.parameters()}
        params = [p for p in dec.parameters() if id(p) not in unused]
        return params + [p for n, p in self.image_encoder.named_parameters()
                         if self.encoder_mode == "full" or (self.encoder_mode == "lora" and "lora_" in n)]

    @property
    def image_size(self) -> int:
        return self.spec.image_size

    @property
    def encoder_dtype(self) -> torch.dtype:
        """The image encoder's weight dtype (the run's ``--dtype`` when frozen); its input is cast to it."""
        return next(self.image_encoder.parameters()).dtype

    def train(self, mode: bool = True) -> "SamMaskDecoder":
        super().train(mode)
        self.prompt_encoder.eval()
        if not self.train_image_encoder:
            self.image_encoder.eval()
        return self

    def embed_images(self, sam_images: torch.Tensor, keys: list[str] | None = None,
                     cached: torch.Tensor | None = None, cached_rows: torch.Tensor | None = None) -> torch.Tensor:
        """B x 3 x S x S normalised images -> B x 256 x g x g embeddings (cached when frozen).

        ``cached`` B x 256 x g x g (any float dtype, e.g. float16 from the disk cache) with ``cached_rows``
        B bool: rows taken as they are (cast to float32), the encoder runs for the others only. A
        trainable encoder ignores them (its embeddings change as it trains)."""
        if self.train_image_encoder:
            return self.image_encoder(sam_images.to(self.encoder_dtype))
        keys = keys if keys is not None else [EmbeddingCache.key_of(im) for im in sam_images]
        out: list[torch.Tensor | None] = [None] * len(keys)
        rows = cached_rows.tolist() if cached is not None and cached_rows is not None else [False] * len(keys)
        for i, k in enumerate(keys):
            out[i] = cached[i].float() if rows[i] else self.cache.get(k)  # type: ignore[index]
        todo = [i for i, e in enumerate(out) if e is None]
        if todo:
            with torch.no_grad():
                fresh = self.image_encoder(sam_images[todo].to(self.encoder_dtype))
            for i, emb in zip(todo, fresh):
                out[i] = emb
                self.cache.put(keys[i], emb)
        device = sam_images.device
        return torch.stack([e.to(device, torch.float32) for e in out])  # type: ignore[union-attr]

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
