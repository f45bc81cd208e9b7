"""Shared helpers for the model tests: a cached offline processor, tiny models, fixed samples."""

from __future__ import annotations

import functools

import numpy as np
import torch
from PIL import Image

from trainer.model.build_model import build_forensics_model
from trainer.model.forensics_model import ForensicsModel
from trainer.model.sam_decoder import prepare_sam_batch
from trainer.model.tokens import (
    MASK_TOKENS,
    add_forensic_tokens,
    build_offline_tokenizer,
    build_processor,
    encode_conversation,
)

PROMPT = "Please analyse whether this image is authentic; answer in JSON."


@functools.lru_cache(maxsize=1)
def tiny_processor():
    """The offline processor with the forensic tokens (built once per test session: ~3 s)."""
    tokenizer = build_offline_tokenizer()
    add_forensic_tokens(tokenizer)
    return build_processor(tokenizer)


def tiny_model(**kw) -> ForensicsModel:
    """A fresh tiny ForensicsModel (tiny Qwen2.5-VL + tiny SAM unless overridden)."""
    base = kw.pop("base_model", "tiny")
    sam = kw.pop("sam", "tiny")
    model, _ = build_forensics_model(base, sam, processor=tiny_processor(), **kw)
    return model


def json_answer(label: str, polygon: list[list[int]] | None = None) -> str:
    """The seed's json answer with the forensic tokens at their designated places."""
    poly = "[]" if polygon is None else str(polygon)
    return '{"result": "' + label + '<cls>", "mask": ' + poly + "".join(MASK_TOKENS) + "}"


def sample(seed: int, size: tuple[int, int] = (56, 56), fake: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(H x W x 3 uint8 image, H x W uint8 {0,1} mask): a fake has a bright square pasted in."""
    rng = np.random.default_rng(seed)
    h, w = size
    image = (rng.normal(100, 20, (h, w, 3))).clip(0, 255).astype(np.uint8)
    mask = np.zeros((h, w), np.uint8)
    if fake:
        s = h // 2
        y, x = int(rng.integers(0, h - s)), int(rng.integers(0, w - s))
        image[y : y + s, x : x + s] = 230
        mask[y : y + s, x : x + s] = 1
    return image, mask


def batch_for(images: list[np.ndarray], answers: list[str], sam_size: int = 128) -> dict:
    """Processor batch (+labels) and SAM inputs for (image, answer) pairs."""
    convs = [[{"role": "user", "content": "<image>" + PROMPT}, {"role": "assistant", "content": a}] for a in answers]
    batch = encode_conversation(tiny_processor(), convs, [[Image.fromarray(im)] for im in images])
    sam_images, sizes = prepare_sam_batch(images, sam_size)
    batch["sam_images"], batch["sam_input_sizes"] = sam_images, sizes
    return batch


def masks_tensor(masks: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(masks)).float()[:, None]
