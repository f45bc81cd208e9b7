"""ForensicsModel: Qwen2.5-VL with ``<cls>`` / ``<mask_1..32>``, a cls head, a mask head and a mask decoder.

Data flow of one forward pass (B samples, T expanded tokens, H hidden width)::

    processor batch ──► Qwen2.5-VL ──► logits (B x T x V, text loss)
                                   └─► hidden states of the chosen layer (B x T x H)
                                         ├─ at <cls>        ──► cls_head  MLP(H→H/2→1) ──► cls_logit (B)
                                         └─ at <mask_1..32> ──► mask_head MLP(H→H→256) ──► 32 prompts
                                                               ──► SAM mask decoder (or conv decoder)
                                                               ──► mask_logits (B x 1 x h x w)
    expert view (optional, B x K x h x w) ──► expert head ──► + mask_logits, + cls_logit (expert_head.py)
    ``language_model: none`` (the LLM-free control, llm_free.py): no LLM; the heads read pooled vision features

Design choices (ARCHITECTURE.md, Model):

* **New token rows** (:mod:`trainer.model.rows`): the 33 forensic tokens (ids 151665..151697) fit in
  Qwen2.5-VL's spare embedding rows (resized only when they do not), set to the mean row plus seeded
  noise; the base matrix stays frozen and a trainable ``delta`` (33 x H, float32) is added at those ids
  (:class:`DeltaEmbedding`, :class:`DeltaLMHead`; with tied weights lm_head shares base and delta).
* **Positions** are found in the expanded input_ids (after ``<|image_pad|>`` expansion), by id, never
  a fixed offset; a token found twice in a row counts at its last occurrence (the answer comes last).
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

from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import Qwen2_5_VLForConditionalGeneration

from forgery_synth.dataset.answer_tokens import forensic_prefix, place_forensic_tokens, text_verdict
from trainer.model.adapters import LLM_LORA_TARGETS, vision_tower, wrap_backbone_lora
from trainer.model.config import ForensicsModelConfig
from trainer.model.expert_head import add_expert, build_expert_head
from trainer.model.expert_views import expert_batch
from trainer.model.heads import mlp
from trainer.model.llm_free import first_images, llm_free_answers, llm_free_heads, llm_free_scores
from trainer.model.outputs import ForensicsOutput, ScoreResult
from trainer.model.mask_evidence import MaskEvidence, add_mask_evidence
from trainer.model.positions import find_forensic_positions, first_image_tokens
from trainer.model.rows import DeltaEmbedding, DeltaLMHead, init_new_rows
from trainer.model.sam_decoder import (
    PROMPT_DIM,
    SamMaskDecoder,
    prepare_sam_batch,
)
from trainer.model.tokens import (
    ForensicTokenIds,
)


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
            # the LLM-free control's 32 learned mask queries (llm_free.py); None when the LLM reads the image
            self.mask_queries = nn.Parameter(0.02 * torch.randn(32, hidden)) if config.language_model == "none" else None
        self.mask_decoder = mask_decoder
        self.expert_head = build_expert_head(config.expert, seed=config.seed + 4)
        self.mask_evidence = MaskEvidence() if config.cls_mask_evidence else None  # mask_evidence.py
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
        """Stage-1 trainable set: new-row deltas, cls_head, mask_head, the expert head if any, the mask
        decoder (SAM's mask decoder; its prompt encoder stays frozen), LoRA weights if any (LLM, vision
        tower, SAM image encoder), and with ``train_vision`` "full" every vision-tower parameter."""
        for p in self.backbone.parameters():
            p.requires_grad_(False)
        for name, p in self.backbone.named_parameters():
            if "lora_" in name:
                p.requires_grad_(True)
        if self.config.train_vision == "full":
            for p in vision_tower(self.qwen).parameters():
                p.requires_grad_(True)
        llm = self.config.language_model != "none"  # the LLM-free control reads no token row
        self.embed_tokens.delta.requires_grad_(llm)
        self.lm_head.delta.requires_grad_(llm)
        for module in (self.cls_head, self.mask_head, self.expert_head, self.mask_evidence):
            for p in (module.parameters() if module is not None else ()):
                p.requires_grad_(True)
        if self.mask_queries is not None:
            self.mask_queries.requires_grad_(True)
        for p in self.mask_decoder.parameters():
            p.requires_grad_(False)
        if isinstance(self.mask_decoder, SamMaskDecoder):  # its single-mask path and what its encoder trains
            for p in self.mask_decoder.trainable_parameters():
                p.requires_grad_(True)
        else:
            for p in self.mask_decoder.parameters():
                p.requires_grad_(True)

    def enable_lora(self, *, r: int = 16, alpha: int = 32, dropout: float = 0.05,
                    target_modules: Sequence[str] = LLM_LORA_TARGETS, language: bool = True) -> None:
        """Wrap the backbone's linear layers with LoRA (peft, one adapter): the language model's
        (``language``) and, with ``train_vision`` "lora", the vision tower's and merger's. An adapter
        already there (stage 1's vision LoRA) is widened, its trained tensors kept exactly
        (:func:`trainer.model.adapters.wrap_backbone_lora`)."""
        self.backbone = wrap_backbone_lora(self.backbone, language=language, vision=self.config.train_vision == "lora",
                                           r=r, alpha=alpha, dropout=dropout, llm_targets=target_modules)
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
        states = [last if i in (n - 1, -1) else norm(hidden_states[i]) for i in indices]
        return torch.stack(states).mean(0) if len(states) > 1 else states[0]

    def _llm_heads(self, input_ids, attention_mask, pixel_values, image_grid_thw, mm_token_type_ids, labels,
                   compute_logits):
        """The LLM's pass and the heads at the forensic tokens: (logits, text loss, B x T x H states, cls
        embedding, cls logit, prompts, positions)."""
        from trainer.training.losses import labelled_text_loss
        from trainer.training.losses import text_loss as text_ce

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
        if labels is not None and not compute_logits:
            # Training: the vocabulary projection only where a label is predicted (the answer's
            # tokens), not at every image and prompt position: the same loss, a fraction of the work.
            logits, loss = None, labelled_text_loss(self.lm_head, last, labels)
        else:
            logits = self.lm_head(last) if (compute_logits or labels is not None) else None
            loss = text_ce(logits, labels) if labels is not None else None
        feats = self._select_layer(out.hidden_states, last) if need_all_states else last

        pos = find_forensic_positions(input_ids, self.token_ids)
        rows = torch.arange(input_ids.shape[0], device=input_ids.device)
        cls_emb = feats[rows, pos.cls].float()
        cls_logit = self.cls_head(cls_emb.to(self.cls_head[0].weight.dtype)).squeeze(-1).float()
        mask_states = feats[rows[:, None], pos.masks]
        prompts = self.mask_head(mask_states.to(self.mask_head[0].weight.dtype))
        return logits, loss, feats, cls_emb, cls_logit, prompts, pos

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        image_grid_thw: torch.Tensor | None = None,
        mm_token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        sam_images: torch.Tensor | None = None,
        sam_input_sizes: torch.Tensor | None = None,
        sam_embeddings: torch.Tensor | None = None,
        sam_keys: list[str] | None = None,
        sam_cached: torch.Tensor | None = None,
        boxes: torch.Tensor | None = None,
        expert_images: torch.Tensor | None = None,
        mask_size: tuple[int, int] | None = None,
        compute_logits: bool = True,
        **_: Any,
    ) -> ForensicsOutput:
        """Run backbone and heads.

        input_ids/attention_mask: B x T int64 (processor output, image pads expanded);
        pixel_values: N x 1176 float32; image_grid_thw: I x 3 int64; mm_token_type_ids: B x T (0
        text, 1 image; derived from input_ids when absent); labels: B x T int64, -100 outside the
        assistant tokens (text_loss is computed when given). SAM decoder inputs: sam_images
        B x 3 x S x S (see :func:`trainer.model.sam_decoder.prepare_sam_batch`) with sam_input_sizes B x 2, or
        precomputed sam_embeddings B x 256 x g x g (with sam_cached B bool: only those rows are precomputed, the
        encoder makes the others from sam_images); sam_keys name images for the embedding cache;
        boxes B x 4 optional box prompts (NaN rows: none). expert_images: B x K x H x W float32 at
        the mask frame (:func:`trainer.model.expert_views.expert_batch`), required when the config
        has an expert. mask_size: (H, W) of mask_logits (default ``config.mask_size``). Extra keys
        (e.g. masks for the loss) are ignored.
        """
        if self.config.language_model == "none":  # the LLM-free control (llm_free.py): no language model runs
            rows = first_images(input_ids, self.qwen.config.image_token_id) if input_ids is not None else None
            cls_emb, cls_logit, prompts, pos = llm_free_heads(self, pixel_values, image_grid_thw, rows)
            logits = loss = feats = None
        else:
            logits, loss, feats, cls_emb, cls_logit, prompts, pos = self._llm_heads(
                input_ids, attention_mask, pixel_values, image_grid_thw, mm_token_type_ids, labels, compute_logits)

        size = tuple(mask_size) if mask_size is not None else tuple(self.config.mask_size)
        mask_logits = None
        unused = cls_logit.new_zeros(())
        if isinstance(self.mask_decoder, SamMaskDecoder):
            if sam_images is not None and (sam_embeddings is None or sam_cached is not None):
                sam_embeddings = self.mask_decoder.embed_images(sam_images, sam_keys, sam_embeddings, sam_cached)
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
        mask_logits, cls_logit, expert_zero = add_expert(self.expert_head, expert_images, mask_logits, cls_logit, size)
        cls_logit, evidence_zero = add_mask_evidence(self.mask_evidence, mask_logits, cls_logit)
        unused = unused + expert_zero + evidence_zero
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
        one per image. The answer starts with the tokens the layout puts before any text (given, not
        generated: :func:`forensic_prefix`), as in training. Returns one answer each, special tokens stripped.
        """
        from trainer.model.generation import generation_settings
        from trainer.model.tokens import encode_conversation

        if self.config.language_model == "none":  # nothing to generate: a template from the cls verdict
            return llm_free_answers(self, processor, images)
        prompts = [prompt] * len(images) if isinstance(prompt, str) else list(prompt)
        batch = encode_conversation(processor, [[{"role": "user", "content": "<image>" + p}] for p in prompts],
                                    [[im] for im in images], add_generation_prompt=True, padding_side="left",
                                    answer_prefix=forensic_prefix(self.config.cls_position, self.config.mask_position))
        batch.pop("labels")
        device = next(self.parameters()).device
        batch = {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in batch.items()}
        pad = processor.tokenizer.pad_token_id
        out = self.qwen.generate(**batch, **generation_settings(max_new_tokens), pad_token_id=pad)
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
        exactly as for training (:func:`trainer.model.tokens.encode_conversation`), and the heads read
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
        fingerprints: Sequence[np.ndarray | None] | None = None,
    ) -> list[ScoreResult]:
        """:meth:`score` for several images in one forward pass (rows right-padded, so every
        special token keeps its position); `prompt` is one user text for all or one per image. Masks come at `mask_size` when given, else each at its
        own image's size (the decoder runs at the largest and each mask is resized). `fingerprints`: the
        "prnu" expert view's camera fingerprint per image (None: unknown, a zero view)."""
        from PIL import Image

        from trainer.model.tokens import encode_conversation

        if self.config.language_model == "none":  # the answer is no reading of the model's: no text verdict
            return llm_free_scores(self, processor, images, mask_size=mask_size, boxes=boxes, fingerprints=fingerprints)
        was_training = self.training
        self.eval()
        placed = [place_forensic_tokens(a, self.config.cls_position, self.config.mask_position) for a in answers]
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
        if self.expert_head is not None:  # the training pipeline's view, at this call's mask frame
            extra["expert_images"] = expert_batch(list(images), self.config.expert, size, fingerprints)
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
