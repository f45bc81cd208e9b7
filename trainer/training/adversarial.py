"""Adversarial training on the pixel inputs: FGSM or PGD within an L-inf ball of radius ε.

**What is perturbed.** The image, once: one perturbation per pixel and channel of the RGB image
the Qwen2.5-VL vision tower sees (after the processor's resize, before its mean/std normalisation).
The processor lays that image out as ``pixel_values`` N x (3 · T · p · p), for Qwen2.5-VL
N x 1176 = 3 channels x T=2 temporal copies x 14 x 14: each row is one p x p patch (the patches tile
the image, a pixel lies in exactly one row) and a still image is repeated in both temporal copies
(see :func:`decode_pixel_values`, the inverse). The perturbation is shared by the T copies, so the
attacked ``pixel_values`` are again the processor's layout of one RGB image; its gradient is the
sum of the copies' gradients. Inputs whose temporal copies differ (videos) are refused.

**Units.** ε and the PGD step α are [0, 1] RGB intensities: ε = 2/255 lets every pixel of every
channel move by two grey levels. The projection onto the ε ball and the clamp of the perturbed
image to the valid [0, 1] range are done in RGB units; the result is normalised back with the
processor's ``image_mean``/``image_std`` (so in normalised units the radius of channel c is ε / std_c).

The SAM input is left clean: SAM's image encoder is frozen and its embeddings are computed without
gradient (and cached), so no gradient reaches it; the attack works through the LLM's vision path,
which both the text and the heads (the ``<cls>``/``<mask_i>`` states) depend on.

FGSM: one step of size ε along sign(∇). PGD: a uniform random start in the ball, then ``steps``
steps of size ``alpha``, each projected back into the ball and [0, 1]. Only the input gradient is
computed (``torch.autograd.grad``), the parameters' ``.grad`` are left untouched. The random start
uses a ``torch.Generator`` seeded by the caller; which optimizer steps are adversarial is drawn by
:func:`is_adversarial_step` from (seed, step), so a resumed run makes the same choices.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

CHANNELS = 3
TEMPORAL_PATCH_SIZE = 2
"""Qwen2-VL's default temporal_patch_size (the processor's ``image_processor.temporal_patch_size``)."""


@dataclass(frozen=True)
class AdversarialConfig:
    """share: fraction of micro-batches trained on adversarial inputs; eps/alpha in [0, 1] RGB."""

    share: float = 0.0
    method: str = "pgd"
    eps: float = 2.0 / 255
    alpha: float = 0.5 / 255
    steps: int = 3


def is_adversarial_step(cfg: AdversarialConfig, seed: int, step: int, micro: int) -> bool:
    """Whether micro-batch ``micro`` of optimizer step ``step`` is adversarial (deterministic)."""
    if cfg.share <= 0:
        return False
    return bool(np.random.default_rng([seed, step, micro, 11]).random() < cfg.share)


def patch_view(pixel_values: torch.Tensor, temporal_patch_size: int = TEMPORAL_PATCH_SIZE) -> torch.Tensor:
    """N x (3·T·p·p) -> N x 3 x T x p x p: a Qwen2-VL patch row is (channel, temporal copy, y, x)."""
    n, dim = pixel_values.shape
    p = math.isqrt(dim // (CHANNELS * temporal_patch_size)) if dim % (CHANNELS * temporal_patch_size) == 0 else 0
    if p == 0 or CHANNELS * temporal_patch_size * p * p != dim:
        raise ValueError(f"pixel_values rows of {dim} values are not 3 channels x {temporal_patch_size} "
                         "temporal copies x p x p (a Qwen2-VL processor's layout)")
    return pixel_values.reshape(n, CHANNELS, temporal_patch_size, p, p)


def _still_frame(patches: torch.Tensor) -> torch.Tensor:
    """N x 3 x T x p x p -> N x 3 x 1 x p x p, the one image a still's T identical copies hold."""
    first = patches[:, :, :1]
    if not torch.equal(patches, first.expand_as(patches)):
        raise ValueError("pixel_values hold different temporal copies (a video?); the attack is for still images")
    return first


def _channel_stats(mean: tuple[float, ...], std: tuple[float, ...], like: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """image_mean, image_std as 1 x 3 x 1 x 1 x 1 tensors (broadcast over N x 3 x T x p x p)."""
    return tuple(torch.tensor(v, dtype=like.dtype, device=like.device).view(1, CHANNELS, 1, 1, 1) for v in (mean, std))


def decode_pixel_values(
    pixel_values: torch.Tensor,
    image_grid_thw: torch.Tensor,
    *,
    image_mean: tuple[float, ...],
    image_std: tuple[float, ...],
    merge_size: int,
    temporal_patch_size: int = TEMPORAL_PATCH_SIZE,
) -> list[np.ndarray]:
    """The images a Qwen2-VL processor's ``pixel_values`` (N x 3·T·p·p) hold, un-normalised.

    Inverts the processor's patchify (rows in merge-window order: grid_h/m, grid_w/m, m, m) and its
    mean/std normalisation; takes temporal copy 0 (a still image's copies are identical).
    image_grid_thw: I x 3 (t, grid_h, grid_w) with t = 1. Returns I arrays, each
    (grid_h·p) x (grid_w·p) x 3 float32 RGB in the processor's [0, 1] scale.
    """
    patches = patch_view(pixel_values.detach().float(), temporal_patch_size)[:, :, 0]  # N x 3 x p x p
    p = patches.shape[-1]
    mean, std = (torch.tensor(v, dtype=torch.float32, device=patches.device).view(1, CHANNELS, 1, 1)
                 for v in (image_mean, image_std))
    rgb = patches * std + mean
    images, start = [], 0
    for t, gh, gw in (tuple(int(v) for v in row) for row in image_grid_thw):
        if t != 1:
            raise ValueError(f"decode_pixel_values is for still images; image_grid_thw has t={t}")
        rows = rgb[start : start + gh * gw]
        start += gh * gw
        grid = rows.reshape(gh // merge_size, gw // merge_size, merge_size, merge_size, CHANNELS, p, p)
        image = grid.permute(0, 2, 5, 1, 3, 6, 4).reshape(gh * p, gw * p, CHANNELS)  # H x W x 3
        images.append(image.cpu().numpy())
    if start != rgb.shape[0]:
        raise ValueError(f"image_grid_thw covers {start} patches, pixel_values has {rgb.shape[0]}")
    return images


def perturb_pixels(
    pixel_values: torch.Tensor,
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
    cfg: AdversarialConfig,
    *,
    image_mean: tuple[float, ...],
    image_std: tuple[float, ...],
    generator: torch.Generator | None = None,
    temporal_patch_size: int = TEMPORAL_PATCH_SIZE,
) -> torch.Tensor:
    """Adversarial ``pixel_values`` (N x 3·T·p·p, same dtype and layout) that raise ``loss_fn``.

    loss_fn(pixel_values) -> scalar loss of the current model on the batch with those pixels.
    Perturbs the still image the rows hold once (shared by its T temporal copies); returns a detached
    tensor whose image is within ε of the clean one and in [0, 1], both in RGB units (see the module
    docstring). Raises ValueError for an unknown method or rows that are not still-image patches.
    """
    if cfg.method not in ("fgsm", "pgd"):
        raise ValueError(f"adversarial method must be fgsm or pgd, got {cfg.method!r}")
    clean = pixel_values.detach()
    patches = patch_view(clean.float(), temporal_patch_size)  # N x 3 x T x p x p, normalised
    mean, std = _channel_stats(image_mean, image_std, patches)
    rgb = _still_frame(patches) * std + mean  # N x 3 x 1 x p x p, the clean image in [0, 1] RGB
    low, high = torch.clamp(-rgb, min=-cfg.eps), torch.clamp(1.0 - rgb, max=cfg.eps)  # bounds of the change

    def project(delta: torch.Tensor) -> torch.Tensor:
        """Into the ε ball and so that rgb + delta stays in [0, 1] (RGB units)."""
        return torch.max(torch.min(delta, high), low)

    def attacked(delta: torch.Tensor) -> torch.Tensor:
        """The clean rows plus the one image change, normalised and shared by the T copies."""
        return (patches + (delta / std).expand_as(patches)).reshape(clean.shape).to(clean.dtype)

    if cfg.method == "fgsm":
        delta, step_size, steps = torch.zeros_like(rgb), cfg.eps, 1
    else:
        noise = torch.rand(rgb.shape, generator=generator, dtype=torch.float32).to(rgb.device)
        delta, step_size, steps = project((2 * noise - 1) * cfg.eps), cfg.alpha, cfg.steps
    for _ in range(steps):
        delta = delta.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(loss_fn(attacked(delta)), [delta])
        delta = project(delta.detach() + step_size * grad.sign())
    return attacked(delta).detach()
