"""Fixtures for the model tests: tiny models, fixed samples, processor batches.

The cached offline processor (``tiny_processor``) lives in tests/conftest.py: the training tests use it too.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from trainer.model.build_model import build_forensics_model
from trainer.model.forensics_model import ForensicsModel
from trainer.model.sam_decoder import prepare_sam_batch
from trainer.model.tokens import MASK_TOKENS, encode_conversation

PROMPT = "Please analyse whether this image is authentic; answer in JSON."


def _json_answer(label: str, polygon: list[list[int]] | None = None) -> str:
    """The seed's json answer with the forensic tokens at their designated places."""
    poly = "[]" if polygon is None else str(polygon)
    return '{"result": "' + label + '<cls>", "mask": ' + poly + "".join(MASK_TOKENS) + "}"


def _make_sample(seed: int, size: tuple[int, int] = (56, 56), fake: bool = True) -> tuple[np.ndarray, np.ndarray]:
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


def _masks_tensor(masks: list[np.ndarray]) -> torch.Tensor:
    """N x 1 x H x W float tensor from a list of H x W masks."""
    return torch.from_numpy(np.stack(masks)).float()[:, None]


@pytest.fixture(scope="session")
def prompt() -> str:
    """The user prompt that ``batch_for`` puts before every answer."""
    return PROMPT


@pytest.fixture(scope="session")
def tiny_model(tiny_processor):
    """Makes a fresh tiny ForensicsModel (tiny Qwen2.5-VL + tiny SAM unless overridden): ``tiny_model(**kw)``."""

    def make(**kw) -> ForensicsModel:
        base = kw.pop("base_model", "tiny")
        sam = kw.pop("sam", "tiny")
        model, _ = build_forensics_model(base, sam, processor=tiny_processor(), **kw)
        return model

    return make


@pytest.fixture(scope="session")
def json_answer():
    """Makes the seed's json answer with the forensic tokens in place: ``json_answer(label, polygon=None)``."""
    return _json_answer


@pytest.fixture(scope="session")
def make_sample():
    """Makes a fixed (image, mask) pair: ``make_sample(seed, size=(56, 56), fake=True)``."""
    return _make_sample


@pytest.fixture(scope="session")
def batch_for(tiny_processor):
    """Makes a processor batch (+labels) and SAM inputs for (image, answer) pairs: ``batch_for(images, answers)``."""

    def make(images: list[np.ndarray], answers: list[str], sam_size: int = 128) -> dict:
        convs = [[{"role": "user", "content": "<image>" + PROMPT}, {"role": "assistant", "content": a}]
                 for a in answers]
        batch = encode_conversation(tiny_processor(), convs, [[Image.fromarray(im)] for im in images])
        sam_images, sizes = prepare_sam_batch(images, sam_size)
        batch["sam_images"], batch["sam_input_sizes"] = sam_images, sizes
        return batch

    return make


@pytest.fixture(scope="session")
def masks_tensor():
    """Makes the N x 1 x H x W float mask target from a list of masks: ``masks_tensor(masks)``."""
    return _masks_tensor
