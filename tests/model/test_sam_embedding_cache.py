"""trainer.model.sam_decoder with embeddings from the disk cache: cached rows skip the encoder, the
image hash and the encoder fingerprint tell images and encoders apart."""

from __future__ import annotations

import numpy as np
import torch

from trainer.model.sam_decoder import (
    SamMaskDecoder,
    build_sam,
    encoder_fingerprint,
    prepare_sam_batch,
    sam_image_hash,
)


def _decoder(**kw) -> SamMaskDecoder:
    sam, spec = build_sam("tiny")
    return SamMaskDecoder(sam, spec, **kw)


def _images(n: int) -> torch.Tensor:
    rng = np.random.default_rng(0)
    x, _ = prepare_sam_batch([rng.integers(0, 256, (40, 56, 3), dtype=np.uint8) for _ in range(n)], 128)
    return x


def test_cached_rows_are_used_and_only_the_others_are_encoded():
    dec = _decoder()
    x = _images(3)
    with torch.no_grad():
        want = dec.image_encoder(x)
    seen: list[int] = []
    dec.image_encoder.register_forward_hook(lambda m, i, o: seen.append(int(i[0].shape[0])))
    cached = torch.zeros(3, 256, 8, 8, dtype=torch.float16)
    cached[0], cached[2] = want[0].half(), want[2].half()
    out = dec.embed_images(x, ["a", "b", "c"], cached, torch.tensor([True, False, True]))
    assert seen == [1] and out.dtype == torch.float32
    assert torch.equal(out[0], want[0].half().float()) and torch.equal(out[2], want[2].half().float())
    torch.testing.assert_close(out[1], want[1], atol=1e-5, rtol=1e-5)  # encoded alone: float32 as it comes
    torch.testing.assert_close(out, want, atol=2e-3, rtol=2e-3)


def test_a_training_encoder_ignores_cached_rows():
    dec = _decoder(train_image_encoder=True)
    x = _images(2)
    out = dec.embed_images(x, ["a", "b"], torch.zeros(2, 256, 8, 8), torch.tensor([True, True]))
    assert out.requires_grad and out.abs().sum() > 0


def test_image_hash_sees_one_changed_pixel_and_the_shape():
    image = np.zeros((8, 12, 3), np.uint8)
    other = image.copy()
    other[3, 4, 1] = 1
    assert sam_image_hash(image) == sam_image_hash(image.copy()) != sam_image_hash(other)
    assert sam_image_hash(image) != sam_image_hash(image.reshape(12, 8, 3))


def test_encoder_fingerprint_follows_the_weights_not_the_object():
    a, b, c = (build_sam("tiny", seed=s)[0].image_encoder for s in (0, 0, 1))
    assert encoder_fingerprint(a) == encoder_fingerprint(b) != encoder_fingerprint(c)
