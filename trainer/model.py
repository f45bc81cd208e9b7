"""ForensicsModel: Qwen2.5-VL with ``<cls>`` / ``<mask_1..32>``, a cls head, a mask head and a mask decoder.

Data flow of one forward pass (B samples, T expanded tokens, H hidden width)::

    processor batch ──► Qwen2.5-VL ──► logits (B x T x V, text loss)
                                   └─► hidden states of the chosen layer (B x T x H)
                                         ├─ at <cls>        ──► cls_head  MLP(H→H/2→1) ──► cls_logit (B)
                                         └─ at <mask_1..32> ──► mask_head MLP(H→H→256) ──► 32 prompts
                                                               ──► SAM mask decoder (or conv decoder)
                                                               ──► mask_logits (B x 1 x h x w)

Design choices (see DESIGN.md, Model):

* **New token rows.** Qwen2.5-VL's embedding has 151,936 rows for 151,665 tokens, so the 33 forensic
  tokens (ids 151665..151697) fit without resizing (the matrix is resized only when they do not).
  Their rows are set explicitly to the mean of the existing rows plus small Gaussian noise (seeded),
  and the base matrix stays frozen: a small trainable ``delta`` (33 x H, float32) is added at those
  ids (:class:`DeltaEmbedding`). The same holds for lm_head (:class:`DeltaLMHead`); with tied
  weights (the 3B model) lm_head shares the embedding's base matrix *and* its delta.
* **Positions** are found in the expanded input_ids (after ``<|image_pad|>`` expansion), by id;
  never a fixed offset. If a token occurs more than once in a row, its last occurrence counts (the
  answer comes last).
* **Shift convention: the hidden state AT the token's own position** (``STATE_AT_TOKEN``), not at
  position-1 (the state that predicts the token). Reasons: the token's own trainable embedding then
  shapes its state (with position-1, ``<cls>``'s row could never influence the cls feature), and the
  32 consecutive mask tokens yield 32 different states, each having seen its own distinct row.
  Training (forward on a full conversation) and inference (:meth:`ForensicsModel.score`, tokens
  inserted into a generated answer) both go through :func:`find_forensic_positions`.
* **Hidden layer:** ``"last"`` (final, normed), an int index into HF's ``hidden_states`` (0 = the
  embeddings, L = last) or a list of them averaged. Intermediate layers go through the backbone's
  final RMSNorm first so every choice has the scale of ``"last"``.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

from trainer.sam import PROMPT_DIM, SamMaskDecoder, build_sam, prepare_sam_batch
from trainer.tokens import (
    CLS_TOKEN,
    FORENSIC_TOKENS,
    MASK_TOKENS,
    ForensicTokenIds,
    add_forensic_tokens,
    is_offline_name,
    load_processor,
    load_tokenizer,
)

STATE_AT_TOKEN = "token"
"""The one shift convention: features are the hidden states at the special tokens' own positions."""

HiddenLayer = str | int | list[int]


# ---------------------------------------------------------------------------- configuration


@dataclass
class ForensicsModelConfig:
    """Everything needed to rebuild a ForensicsModel (saved as JSON in checkpoints).

    base_model: "tiny" / "tiny-untied" / a local path or hub id of a Qwen2.5-VL checkpoint.
    sam: "tiny" / "vit_b" / "vit_l" / "vit_h" (random) / path to a segment-anything checkpoint.
    mask_decoder: "sam" (SAM prompt encoder + mask decoder) or "conv" (no SAM: the mask tokens
    attend over upsampled visual features of the first image).
    hidden_layer: "last", an int index into hidden_states, or a list of indices to average.
    new_row_noise: std of the noise added to the mean row, relative to the rows' overall std.
    mask_size: default (H, W) of mask_logits when the caller gives none.
    """

    base_model: str = "tiny"
    sam: str = "tiny"
    mask_decoder: str = "sam"
    hidden_layer: HiddenLayer = "last"
    seed: int = 0
    new_row_noise: float = 0.02
    sam_cache_items: int = 256
    conv_dim: int = 64
    mask_size: tuple[int, int] = (128, 128)
    dtype: str = "float32"
    token_ids: dict[str, int] = field(default_factory=dict)
    state_at: str = STATE_AT_TOKEN

    def to_dict(self) -> dict:
        d = asdict(self)
        d["mask_size"] = list(self.mask_size)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ForensicsModelConfig":
        d = dict(d)
        d["mask_size"] = tuple(d["mask_size"])
        return cls(**d)


# ---------------------------------------------------------------------------- new token rows


class DeltaEmbedding(nn.Module):
    """A frozen ``nn.Embedding`` plus a trainable float32 delta on a few rows (the new tokens).

    forward: ids B x T int64 -> B x T x D in the base dtype; row ``new_ids[k]`` reads
    ``base.weight[new_ids[k]] + delta[k]``.
    """

    def __init__(self, base: nn.Embedding, new_ids: Sequence[int]):
        super().__init__()
        self.base = base
        ids = torch.tensor(list(new_ids), dtype=torch.long)
        self.register_buffer("new_ids", ids, persistent=False)
        lookup = torch.zeros(base.num_embeddings, dtype=torch.long)
        lookup[ids] = torch.arange(1, len(ids) + 1)
        self.register_buffer("lookup", lookup, persistent=False)
        self.delta = nn.Parameter(torch.zeros(len(ids), base.embedding_dim, dtype=torch.float32))

    @property
    def weight(self) -> torch.Tensor:
        return self.base.weight

    @property
    def num_embeddings(self) -> int:
        return self.base.num_embeddings

    @property
    def embedding_dim(self) -> int:
        return self.base.embedding_dim

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        out = self.base(input_ids)
        table = torch.cat([self.delta.new_zeros(1, self.delta.shape[1]), self.delta])
        return out + F.embedding(self.lookup[input_ids], table).to(out.dtype)

    def merged_rows(self) -> torch.Tensor:
        """n_new x D float32: the effective rows of the new tokens."""
        return self.base.weight[self.new_ids].float() + self.delta


class DeltaLMHead(nn.Module):
    """A frozen lm_head plus a trainable delta on the new tokens' output rows.

    forward: B x T x H -> B x T x V logits; column ``new_ids[k]`` gets ``h @ delta[k]`` added
    (in place, so no second V-wide copy of the logits is made). With ``tied_to`` the delta is the
    embedding's own (tied weights share both the base matrix and the delta).
    """

    def __init__(self, base: nn.Linear, new_ids: Sequence[int], tied_to: DeltaEmbedding | None = None):
        super().__init__()
        self.base = base
        self.register_buffer("new_ids", torch.tensor(list(new_ids), dtype=torch.long), persistent=False)
        self.tied = tied_to is not None
        if tied_to is not None:
            self.delta = tied_to.delta
        else:
            self.delta = nn.Parameter(torch.zeros(len(new_ids), base.in_features, dtype=torch.float32))

    @property
    def weight(self) -> torch.Tensor:
        return self.base.weight

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        logits = self.base(hidden)
        extra = (hidden.to(self.delta.dtype) @ self.delta.t()).to(logits.dtype)
        return logits.index_add_(-1, self.new_ids, extra)

    def merged_rows(self) -> torch.Tensor:
        return self.base.weight[self.new_ids].float() + self.delta


def init_new_rows(weight: torch.Tensor, new_ids: Sequence[int], *, noise: float, generator: torch.Generator) -> None:
    """Set ``weight[new_ids]`` to the mean of the rows before ``min(new_ids)`` plus Gaussian noise
    of std ``noise * std(those rows)`` (in place, no grad)."""
    with torch.no_grad():
        first = min(new_ids)
        existing = weight[:first].float()
        mean, std = existing.mean(0), existing.std()
        rnd = torch.randn((len(new_ids), weight.shape[1]), generator=generator)
        weight[list(new_ids)] = (mean + noise * std * rnd).to(weight.dtype)


# ---------------------------------------------------------------------------- positions


@dataclass
class ForensicPositions:
    """Where the forensic tokens stand in expanded input_ids.

    cls: B int64 (0 where absent); has_cls: B bool; masks: B x 32 int64; has_masks: B bool (all
    32 present).
    """

    cls: torch.Tensor
    has_cls: torch.Tensor
    masks: torch.Tensor
    has_masks: torch.Tensor


def find_forensic_positions(input_ids: torch.Tensor, token_ids: ForensicTokenIds) -> ForensicPositions:
    """Positions of ``<cls>`` and ``<mask_1..32>`` in B x T expanded input_ids (last occurrence)."""
    ids = torch.tensor(token_ids.all, device=input_ids.device)
    hits = input_ids[:, None, :] == ids[None, :, None]  # B x 33 x T
    present = hits.any(-1)
    t = input_ids.shape[1]
    last = (t - 1) - hits.flip(-1).int().argmax(-1)
    last = torch.where(present, last, torch.zeros_like(last))
    return ForensicPositions(
        cls=last[:, 0], has_cls=present[:, 0], masks=last[:, 1:], has_masks=present[:, 1:].all(-1)
    )


def first_image_tokens(
    input_ids: torch.Tensor, image_grid_thw: torch.Tensor, *, image_token_id: int, merge_size: int
) -> list[tuple[torch.Tensor, int, int]]:
    """For each row: (positions of its first image's tokens, grid_h, grid_w) in merged-token units.

    Images are counted in order over the batch (as the processor lays out ``image_grid_thw``).
    """
    out = []
    image_index = 0
    for row in input_ids:
        pad = row == image_token_id
        starts = torch.nonzero(pad & ~torch.cat([pad.new_zeros(1), pad[:-1]])).flatten()
        if len(starts) == 0:
            raise ValueError("a row has no image tokens; the conv mask decoder needs one image per sample")
        _, gh, gw = (int(v) for v in image_grid_thw[image_index])
        gh, gw = gh // merge_size, gw // merge_size
        start = int(starts[0])
        out.append((torch.arange(start, start + gh * gw, device=row.device), gh, gw))
        image_index += len(starts)
    return out


# ---------------------------------------------------------------------------- heads


def mlp(dims: Sequence[int]) -> nn.Sequential:
    """Linear layers with GELU between them: dims[0] -> ... -> dims[-1]."""
    layers: list[nn.Module] = []
    for i in range(len(dims) - 1):
        layers.append(nn.Linear(dims[i], dims[i + 1]))
        if i < len(dims) - 2:
            layers.append(nn.GELU())
    return nn.Sequential(*layers)


class ConvMaskDecoder(nn.Module):
    """Ablation without SAM: the 32 prompts attend over the first image's visual token states.

    visual states (g_h x g_w x H) -> 1x1 projection to C -> two stride-2 transposed convs (4x
    upsampling). Prompts (32 x 256) -> C, one cross-attention layer over the (un-upsampled)
    visual tokens, mean over the 32 -> a C-vector whose dot product with every upsampled pixel
    feature is the mask logit, bilinearly resized to the output size.
    """

    def __init__(self, hidden_size: int, dim: int = 64, heads: int = 4):
        super().__init__()
        self.proj = nn.Linear(hidden_size, dim)
        self.query = nn.Linear(PROMPT_DIM, dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm = nn.LayerNorm(dim)
        self.up = nn.Sequential(
            nn.ConvTranspose2d(dim, dim, 2, stride=2), nn.GELU(), nn.ConvTranspose2d(dim, dim, 2, stride=2)
        )
        self.token_mlp = mlp([dim, dim, dim])

    def forward(self, prompts: torch.Tensor, visual: list[torch.Tensor], output_size: tuple[int, int]) -> torch.Tensor:
        """prompts: B x 32 x 256; visual: B tensors g_h x g_w x H -> B x 1 x H_out x W_out logits."""
        out = []
        for i, grid in enumerate(visual):
            gh, gw, _ = grid.shape
            feats = self.proj(grid.reshape(1, gh * gw, -1).float())  # 1 x N x C
            q = self.query(prompts[i : i + 1].float())
            attended, _ = self.attn(q, feats, feats, need_weights=False)
            token = self.token_mlp(self.norm(q + attended).mean(1))  # 1 x C
            up = self.up(feats.transpose(1, 2).reshape(1, -1, gh, gw))  # 1 x C x 4gh x 4gw
            logits = torch.einsum("bc,bchw->bhw", token, up)[:, None]
            out.append(F.interpolate(logits, size=tuple(output_size), mode="bilinear", align_corners=False))
        return torch.cat(out)


# ---------------------------------------------------------------------------- outputs


@dataclass
class ForensicsOutput:
    """One forward pass.

    logits: B x T x V float (None when ``compute_logits=False``); text_loss: scalar or None;
    cls_logit: B float32 (sigmoid -> P(fake)); cls_embedding: B x H float32 (<cls> state, the
    InfoNCE input); mask_prompts: B x 32 x 256; mask_logits: B x 1 x h x w float32 or None
    (no mask inputs); unused_zero: scalar 0 tied to the heads that did not run (add it to the loss
    so every trainable parameter stays in the graph); positions: where the tokens were.
    """

    logits: torch.Tensor | None
    text_loss: torch.Tensor | None
    cls_logit: torch.Tensor
    cls_embedding: torch.Tensor
    mask_prompts: torch.Tensor
    mask_logits: torch.Tensor | None
    unused_zero: torch.Tensor
    positions: ForensicPositions


@dataclass
class ScoreResult:
    """Heads read for one generated answer.

    cls_prob: P(fake) in [0, 1]; mask_prob: H x W float32 in [0, 1]; answer: the text with the
    forensic tokens placed; text_verdict: "fake"/"real"/None parsed from the text; consistent:
    text verdict equals (cls_prob > 0.5), None without a text verdict.
    """

    cls_prob: float
    mask_prob: np.ndarray | None
    answer: str
    text_verdict: str | None
    consistent: bool | None


# ---------------------------------------------------------------------------- the model


class ForensicsModel(nn.Module):
    """Qwen2.5-VL + forensic heads. Build it with :func:`build_forensics_model`."""

    def __init__(
        self,
        backbone: Qwen2_5_VLForConditionalGeneration,
        mask_decoder: nn.Module,
        config: ForensicsModelConfig,
    ):
        super().__init__()
        self.config = config
        self.token_ids = ForensicTokenIds.from_mapping(config.token_ids)
        self.backbone = backbone
        hidden = backbone.config.text_config.hidden_size
        self.hidden_size = hidden
        self._install_new_rows()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed + 1)
            self.cls_head = mlp([hidden, hidden // 2, 1])
            self.mask_head = mlp([hidden, hidden, PROMPT_DIM])
        self.mask_decoder = mask_decoder
        self.freeze_backbone()

    # -- structure -------------------------------------------------------------------------

    @property
    def qwen(self) -> Qwen2_5_VLForConditionalGeneration:
        """The Qwen2_5_VLForConditionalGeneration inside (through a peft wrapper if any)."""
        if hasattr(self.backbone, "get_base_model"):
            return self.backbone.get_base_model()
        return self.backbone

    @property
    def embed_tokens(self) -> DeltaEmbedding:
        return self.qwen.model.language_model.embed_tokens

    @property
    def lm_head(self) -> DeltaLMHead:
        return self.qwen.lm_head

    @property
    def tied(self) -> bool:
        return bool(self.qwen.config.tie_word_embeddings)

    @property
    def is_lora(self) -> bool:
        return hasattr(self.backbone, "peft_config")

    def _install_new_rows(self) -> None:
        qwen = self.backbone
        new_ids = list(self.token_ids.all)
        emb = qwen.model.language_model.embed_tokens
        if max(new_ids) >= emb.num_embeddings:
            qwen.resize_token_embeddings(max(new_ids) + 1, mean_resizing=False)
            emb = qwen.model.language_model.embed_tokens
        gen = torch.Generator().manual_seed(self.config.seed + 2)
        init_new_rows(emb.weight, new_ids, noise=self.config.new_row_noise, generator=gen)
        tied = qwen.config.tie_word_embeddings and qwen.lm_head.weight is emb.weight
        if qwen.config.tie_word_embeddings and not tied:
            raise ValueError("config says tie_word_embeddings but lm_head and embed_tokens differ")
        if not tied:
            init_new_rows(qwen.lm_head.weight, new_ids, noise=self.config.new_row_noise, generator=gen)
        delta_emb = DeltaEmbedding(emb, new_ids)
        qwen.model.language_model.embed_tokens = delta_emb
        qwen.lm_head = DeltaLMHead(qwen.lm_head, new_ids, tied_to=delta_emb if tied else None)

    def freeze_backbone(self) -> None:
        """Stage-1 trainable set: new-row deltas, cls_head, mask_head, the mask decoder (SAM's
        mask decoder only; image and prompt encoders stay frozen) and LoRA weights if any."""
        for p in self.backbone.parameters():
            p.requires_grad_(False)
        for name, p in self.backbone.named_parameters():
            if "lora_" in name:
                p.requires_grad_(True)
        self.embed_tokens.delta.requires_grad_(True)
        self.lm_head.delta.requires_grad_(True)
        for module in (self.cls_head, self.mask_head):
            for p in module.parameters():
                p.requires_grad_(True)
        for p in self.mask_decoder.parameters():
            p.requires_grad_(False)
        for p in self._trainable_decoder_parameters():
            p.requires_grad_(True)

    def _trainable_decoder_parameters(self) -> list[nn.Parameter]:
        """The mask decoder's parameters that reach the single-mask output.

        For SAM that is its mask decoder minus the IoU head and the three multimask hypernetworks
        (``multimask_output=False`` reads mask 0 only), so no trainable parameter goes gradient-less.
        """
        if not isinstance(self.mask_decoder, SamMaskDecoder):
            return list(self.mask_decoder.parameters())
        dec = self.mask_decoder.decoder
        unused = {id(p) for p in dec.iou_prediction_head.parameters()}
        for mlp_i in list(dec.output_hypernetworks_mlps)[1:]:
            unused |= {id(p) for p in mlp_i.parameters()}
        return [p for p in dec.parameters() if id(p) not in unused]

    def enable_lora(
        self,
        *,
        r: int = 16,
        alpha: int = 32,
        dropout: float = 0.05,
        target_modules: Sequence[str] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
    ) -> None:
        """Wrap the language model's linear layers with LoRA (peft); the vision tower stays as is."""
        from peft import LoraConfig, get_peft_model

        pattern = r".*language_model\.layers\.\d+\..*\.(" + "|".join(map(re.escape, target_modules)) + r")"
        lora = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=pattern, bias="none")
        self.backbone = get_peft_model(self.backbone, lora)
        self.freeze_backbone()

    def trainable_parameter_names(self) -> list[str]:
        return [n for n, p in self.named_parameters() if p.requires_grad]

    # -- forward ---------------------------------------------------------------------------

    def _select_layer(self, hidden_states: tuple[torch.Tensor, ...], last: torch.Tensor) -> torch.Tensor:
        spec = self.config.hidden_layer
        if spec == "last":
            return last
        indices = [spec] if isinstance(spec, int) else list(spec)
        n = len(hidden_states)
        norm = self.qwen.model.language_model.norm
        states = [last if i % n == n - 1 else norm(hidden_states[i]) for i in indices]
        return torch.stack(states).mean(0) if len(states) > 1 else states[0]

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        image_grid_thw: torch.Tensor | None = None,
        mm_token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        sam_images: torch.Tensor | None = None,
        sam_input_sizes: torch.Tensor | None = None,
        sam_embeddings: torch.Tensor | None = None,
        sam_keys: list[str] | None = None,
        boxes: torch.Tensor | None = None,
        mask_size: tuple[int, int] | None = None,
        compute_logits: bool = True,
        **_: Any,
    ) -> ForensicsOutput:
        """Run backbone and heads.

        input_ids/attention_mask: B x T int64 (processor output, image pads expanded);
        pixel_values: N x 1176 float32; image_grid_thw: I x 3 int64; mm_token_type_ids: B x T (0
        text, 1 image; derived from input_ids when absent); labels: B x T int64, -100 outside the
        assistant tokens (text_loss is computed when given). SAM decoder inputs: sam_images
        B x 3 x S x S (see :func:`trainer.sam.prepare_sam_batch`) with sam_input_sizes B x 2, or
        precomputed sam_embeddings B x 256 x g x g; sam_keys name images for the embedding cache;
        boxes B x 4 optional box prompts (NaN rows: none). mask_size: (H, W) of mask_logits
        (default ``config.mask_size``). Extra keys (e.g. masks for the loss) are ignored.
        """
        from trainer.losses import text_loss as text_ce

        if mm_token_type_ids is None and image_grid_thw is not None:
            mm_token_type_ids = (input_ids == self.qwen.config.image_token_id).int()
        need_all_states = self.config.hidden_layer != "last"
        out = self.qwen.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            pixel_values=pixel_values,
            image_grid_thw=image_grid_thw,
            mm_token_type_ids=mm_token_type_ids,
            use_cache=False,
            output_hidden_states=need_all_states,
        )
        last = out.last_hidden_state
        logits = self.lm_head(last) if (compute_logits or labels is not None) else None
        loss = text_ce(logits, labels) if labels is not None else None
        feats = self._select_layer(out.hidden_states, last) if need_all_states else last

        pos = find_forensic_positions(input_ids, self.token_ids)
        rows = torch.arange(input_ids.shape[0], device=input_ids.device)
        cls_emb = feats[rows, pos.cls].float()
        cls_logit = self.cls_head(cls_emb.to(self.cls_head[0].weight.dtype)).squeeze(-1).float()
        mask_states = feats[rows[:, None], pos.masks]
        prompts = self.mask_head(mask_states.to(self.mask_head[0].weight.dtype))

        size = tuple(mask_size) if mask_size is not None else tuple(self.config.mask_size)
        mask_logits = None
        unused = cls_logit.new_zeros(())
        if isinstance(self.mask_decoder, SamMaskDecoder):
            if sam_embeddings is None and sam_images is not None:
                sam_embeddings = self.mask_decoder.embed_images(sam_images, sam_keys)
            if sam_embeddings is not None:
                mask_logits = self.mask_decoder(prompts, sam_embeddings, size, sam_input_sizes, boxes)
        elif image_grid_thw is not None:
            merge = self.qwen.config.vision_config.spatial_merge_size
            grids = first_image_tokens(
                input_ids, image_grid_thw, image_token_id=self.qwen.config.image_token_id, merge_size=merge
            )
            visual = [feats[b, p].reshape(gh, gw, -1) for b, (p, gh, gw) in enumerate(grids)]
            mask_logits = self.mask_decoder(prompts, visual, size)
        if mask_logits is None:
            unused = sum(p.sum() for p in self.mask_decoder.parameters() if p.requires_grad) * 0.0
            unused = unused + prompts.sum() * 0.0
        return ForensicsOutput(
            logits=logits,
            text_loss=loss,
            cls_logit=cls_logit,
            cls_embedding=cls_emb,
            mask_prompts=prompts,
            mask_logits=mask_logits,
            unused_zero=unused,
            positions=pos,
        )

    # -- inference ---------------------------------------------------------------------------

    @torch.no_grad()
    def generate_answer(self, processor, image: Any, prompt: str, *, max_new_tokens: int = 256) -> str:
        """Greedy-generate the assistant answer for one image (special tokens stripped)."""
        return self.generate_answers(processor, [image], prompt, max_new_tokens=max_new_tokens)[0]

    @torch.no_grad()
    def generate_answers(
        self, processor, images: Sequence[Any], prompt: str | Sequence[str], *, max_new_tokens: int = 256
    ) -> list[str]:
        """Greedy-generate the answers for several images in one batched call (left padding).

        images: PIL images or H x W x 3 uint8 arrays, any sizes; prompt: one user text for all, or
        one per image. Returns one answer per image, special tokens stripped.
        """
        from trainer.tokens import encode_conversation

        prompts = [prompt] * len(images) if isinstance(prompt, str) else list(prompt)
        batch = encode_conversation(processor, [[{"role": "user", "content": "<image>" + p}] for p in prompts],
                                    [[im] for im in images], add_generation_prompt=True, padding_side="left")
        batch.pop("labels")
        device = next(self.parameters()).device
        batch = {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in batch.items()}
        pad = processor.tokenizer.pad_token_id
        out = self.qwen.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=pad)
        start = batch["input_ids"].shape[1]
        return [processor.tokenizer.decode(row[start:], skip_special_tokens=True) for row in out]

    @torch.no_grad()
    def score(
        self,
        processor,
        image: np.ndarray,
        prompt: str,
        answer: str,
        *,
        mask_size: tuple[int, int] | None = None,
        box: Sequence[float] | None = None,
    ) -> ScoreResult:
        """Read the heads for a generated answer: one forward pass, nothing generated.

        image: H x W x 3 uint8 RGB; prompt: the user text (the image goes first, as in training);
        answer: generated assistant text, with or without forensic tokens. The tokens are put at
        their designated places (:func:`place_forensic_tokens`), the conversation is encoded
        exactly as for training (:func:`trainer.tokens.encode_conversation`), and the heads read
        the states at the tokens' own positions. mask_size defaults to the image's (H, W).
        """
        size = tuple(mask_size) if mask_size is not None else (int(image.shape[0]), int(image.shape[1]))
        return self.score_batch(processor, [image], prompt, [answer], mask_size=size,
                                boxes=[box] if box is not None else None)[0]

    @torch.no_grad()
    def score_batch(
        self,
        processor,
        images: Sequence[np.ndarray],
        prompt: str | Sequence[str],
        answers: Sequence[str],
        *,
        mask_size: tuple[int, int] | None = None,
        boxes: Sequence[Sequence[float] | None] | None = None,
    ) -> list[ScoreResult]:
        """:meth:`score` for several images in one forward pass (rows right-padded, so every
        special token keeps its position); `prompt` is one user text for all or one per image. Masks come at `mask_size` when given, else each at its
        own image's size (the decoder runs at the largest and each mask is resized)."""
        from PIL import Image

        from trainer.tokens import encode_conversation

        was_training = self.training
        self.eval()
        placed = [place_forensic_tokens(a) for a in answers]
        prompts = [prompt] * len(images) if isinstance(prompt, str) else list(prompt)
        batch = encode_conversation(
            processor,
            [[{"role": "user", "content": "<image>" + q}, {"role": "assistant", "content": p}]
             for q, p in zip(prompts, placed)],
            [[Image.fromarray(im)] for im in images],
        )
        sizes_hw = [(int(im.shape[0]), int(im.shape[1])) for im in images]
        size = tuple(mask_size) if mask_size is not None else tuple(max(s[i] for s in sizes_hw) for i in (0, 1))
        extra: dict[str, Any] = {}
        if isinstance(self.mask_decoder, SamMaskDecoder):
            sam_images, sam_sizes = prepare_sam_batch(list(images), self.mask_decoder.image_size)
            extra = {"sam_images": sam_images, "sam_input_sizes": sam_sizes}
            if boxes is not None and any(b is not None for b in boxes):
                rows = []
                for im, b in zip(images, boxes):
                    scale = self.mask_decoder.image_size / max(im.shape[:2])
                    rows.append([v * scale for v in b] if b is not None else [float("nan")] * 4)
                extra["boxes"] = torch.tensor(rows, dtype=torch.float32)
        device = next(self.parameters()).device
        inputs = {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in {**batch, **extra}.items()}
        inputs.pop("labels", None)
        out = self(**inputs, mask_size=size, compute_logits=False)
        self.train(was_training)
        results = []
        for i, (answer, hw) in enumerate(zip(answers, sizes_hw)):
            prob = float(torch.sigmoid(out.cls_logit[i]))
            mask = None
            if out.mask_logits is not None and bool(out.positions.has_masks[i]):
                logits = out.mask_logits[i : i + 1]
                if mask_size is None and tuple(logits.shape[-2:]) != hw:
                    logits = F.interpolate(logits, size=hw, mode="bilinear", align_corners=False)
                mask = torch.sigmoid(logits[0, 0]).cpu().numpy().astype(np.float32)
            verdict = text_verdict(answer)
            consistent = None if verdict is None else (verdict == "fake") == (prob > 0.5)
            results.append(ScoreResult(cls_prob=prob, mask_prob=mask, answer=placed[i], text_verdict=verdict,
                                       consistent=consistent))
        return results


# ---------------------------------------------------------------------------- answer text

_FORENSIC_RE = re.compile("|".join(re.escape(t) for t in FORENSIC_TOKENS))
_RESULT_RE = re.compile(r'("result"\s*:\s*"[^"<]*)')
_VERDICT_RE = re.compile(r"\b(fake|real|forged|authentic|tampered|genuine)\b|(伪造|篡改|真实)", re.IGNORECASE)
_FAKE_WORDS = {"fake", "forged", "tampered", "伪造", "篡改"}


def strip_forensic_tokens(text: str) -> str:
    """``text`` without any ``<cls>`` / ``<mask_i>``."""
    return _FORENSIC_RE.sub("", text)


def _last_verdict(text: str) -> re.Match | None:
    """The last verdict word: answers end with their conclusion ("…; conclusion: real"), while
    words like "Forged region" or "伪造区域" open them."""
    found = None
    for found in _VERDICT_RE.finditer(text):
        pass
    return found


def text_verdict(text: str) -> str | None:
    """"fake" / "real" from the answer's ``"result"`` field, else its last verdict word; None."""
    text = strip_forensic_tokens(text)
    m = _RESULT_RE.search(text)
    v = _VERDICT_RE.search(m.group(1)) if m else _last_verdict(text)
    if not v:
        return None
    word = (v.group(1) or v.group(2)).lower()
    return "fake" if word in _FAKE_WORDS else "real"


def _end_of_mask_value(text: str) -> int | None:
    """Index just past the JSON value of ``"mask"`` (a bracketed list), or None."""
    m = re.search(r'"mask"\s*:\s*', text)
    if not m:
        return None
    i = m.end()
    if i >= len(text) or text[i] != "[":
        return None
    depth = 0
    for j in range(i, len(text)):
        if text[j] == "[":
            depth += 1
        elif text[j] == "]":
            depth -= 1
            if depth == 0:
                return j + 1
    return None


def place_forensic_tokens(answer: str) -> str:
    """Put ``<cls>`` and ``<mask_1..32>`` at their designated places in an answer.

    The places are those of `forgery_synth.conversations` (a test round-trips every template):
    json: ``<cls>`` right after the verdict inside the ``"result"`` string (``"fake<cls>"``), the
    32 mask tokens right after the ``"mask"`` list. explain / pair: the mask tokens right after the
    region, i.e. before the first ``;`` (``；``), and ``<cls>`` after the last verdict word (the
    conclusion). conclusion: ``<cls>`` after the verdict, the mask tokens at the end (after
    ``<cls>``, so they cannot change its state). Existing forensic tokens are removed first, so a
    training answer round-trips unchanged.
    """
    text = strip_forensic_tokens(answer)
    masks = "".join(MASK_TOKENS)
    end = _end_of_mask_value(text)
    if end is None:
        semis = [i for i in (text.find(";"), text.find("；")) if i >= 0]
        end = min(semis) if semis else None
    text = text[:end] + masks + text[end:] if end is not None else text + masks
    m = _RESULT_RE.search(text)
    if m:
        return text[: m.end()] + CLS_TOKEN + text[m.end() :]
    v = _last_verdict(text)
    if v:
        return text[: v.end()] + CLS_TOKEN + text[v.end() :]
    cut = text.index(masks)
    return text[:cut] + CLS_TOKEN + text[cut:]


# ---------------------------------------------------------------------------- builders


def build_tiny_qwen(*, seed: int = 0, tie_word_embeddings: bool = True, vocab_size: int = 151936) -> Qwen2_5_VLForConditionalGeneration:
    """A random Qwen2.5-VL with the real vocabulary size and tiny everything else.

    Text: 2 layers, hidden 64, 4 heads (2 KV), MLP 128, mRoPE sections (2, 3, 3). Vision: depth 2,
    hidden 32, patch 14, merge 2, window 56 px, block 1 full attention, output 64. About 10 M
    parameters, nearly all in the 151,936 x 64 embedding (plus as many again when untied).
    """
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
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2_5_VLForConditionalGeneration(config)
    model.eval()
    return model


def _load_qwen(path: str, dtype: str) -> Qwen2_5_VLForConditionalGeneration:
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(path, dtype=getattr(torch, dtype))
    model.eval()
    return model


BACKBONE_BUILDERS: dict[str, Callable[..., Qwen2_5_VLForConditionalGeneration]] = {
    "tiny": lambda *, seed, dtype: build_tiny_qwen(seed=seed, tie_word_embeddings=True),
    "tiny-untied": lambda *, seed, dtype: build_tiny_qwen(seed=seed, tie_word_embeddings=False),
}
"""In-process backbones: "tiny" is tied like Qwen2.5-VL-3B, "tiny-untied" untied like 7B."""


def build_backbone(base_model: str, *, seed: int = 0, dtype: str = "float32") -> Qwen2_5_VLForConditionalGeneration:
    """A named in-process backbone (:data:`BACKBONE_BUILDERS`) or ``from_pretrained(path or hub id)``."""
    if base_model in BACKBONE_BUILDERS:
        return BACKBONE_BUILDERS[base_model](seed=seed, dtype=dtype)
    return _load_qwen(base_model, dtype)


def _tokenizer_source(base_model: str) -> str:
    return "offline" if base_model in BACKBONE_BUILDERS or is_offline_name(base_model) else base_model


def _build_forensics_model(
    *,
    base_model: str,
    sam: str,
    mask_decoder: str,
    hidden_layer: HiddenLayer,
    seed: int,
    dtype: str,
    new_row_noise: float,
    sam_cache_items: int,
    conv_dim: int,
    mask_size: tuple[int, int] | None,
    processor: Any | None,
    backbone: Qwen2_5_VLForConditionalGeneration | None,
) -> tuple[ForensicsModel, Any]:
    if mask_decoder not in ("sam", "conv"):
        raise ValueError(f"mask_decoder must be 'sam' or 'conv', got {mask_decoder!r}")
    if processor is None:
        source = _tokenizer_source(base_model)
        tokenizer = load_tokenizer(source)
        ids = add_forensic_tokens(tokenizer)
        processor = load_processor(source, tokenizer)
    else:
        ids = add_forensic_tokens(processor.tokenizer)
    if backbone is None:
        backbone = build_backbone(base_model, seed=seed, dtype=dtype)
    if mask_decoder == "sam":
        sam_model, spec = build_sam(sam, seed=seed)
        decoder: nn.Module = SamMaskDecoder(sam_model, spec, cache_items=sam_cache_items)
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
        seed=seed,
        new_row_noise=new_row_noise,
        sam_cache_items=sam_cache_items,
        conv_dim=conv_dim,
        mask_size=tuple(mask_size) if mask_size is not None else default_size,
        dtype=dtype,
        token_ids=ids,
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
    seed: int = 0,
    dtype: str = "float32",
    new_row_noise: float = 0.02,
    sam_cache_items: int = 256,
    conv_dim: int = 64,
    mask_size: tuple[int, int] | None = None,
    processor: Any | None = None,
    backbone: Qwen2_5_VLForConditionalGeneration | None = None,
) -> tuple[ForensicsModel, Any]:
    """Build (model, processor). The model comes in eval mode with the stage-1 trainable set.

    base_model: "tiny" / "tiny-untied" / local path / hub id; sam: "tiny" / vit name / checkpoint
    path. The processor (tokenizer with the forensic tokens added) is built offline for tiny
    backbones; pass ``processor``/``backbone`` to reuse already-loaded ones.
    """
    return _build_forensics_model(
        base_model=base_model,
        sam=sam,
        mask_decoder=mask_decoder,
        hidden_layer=hidden_layer,
        seed=seed,
        dtype=dtype,
        new_row_noise=new_row_noise,
        sam_cache_items=sam_cache_items,
        conv_dim=conv_dim,
        mask_size=mask_size,
        processor=processor,
        backbone=backbone,
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


forensics_model_registry: dict[str, Callable[..., tuple[ForensicsModel, Any]]] = {
    "tiny": build_tiny_forensics_model,
    "tiny-untied": build_tiny_untied_forensics_model,
    "tiny-conv": build_tiny_conv_forensics_model,
}


def config_json(model: ForensicsModel) -> str:
    """The model's config as pretty JSON (what checkpoints store)."""
    return json.dumps(model.config.to_dict(), indent=2, sort_keys=True)
