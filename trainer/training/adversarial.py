"""Adversarial training on the pixel inputs: FGSM or PGD within an L-inf ball of radius ε.

**Where ε is measured.** In [0, 1] RGB intensity of the image the Qwen2.5-VL vision tower sees
(after its resize, before its mean/std normalisation): ε = 2/255 allows every pixel of every
channel to move by two grey levels. The perturbation is applied to ``pixel_values`` (N x 1176,
normalised patches laid out as 3 channels x 2 frames x 14 x 14), so in that normalised space the
radius of channel c is ``ε / std_c``; perturbed pixels are also kept inside the valid [0, 1] range.

The SAM input is left clean: SAM's image encoder is frozen and its embeddings are computed without
gradient (and cached), so no gradient reaches it; the attack works through the LLM's vision path,
which both the text and the heads (the ``<cls>``/``<mask_i>`` states) depend on.

FGSM: one step of size ε along sign(∇). PGD: a uniform random start in the ball, then ``steps``
steps of size ``alpha``, each projected back into the ball. Only the input gradient is computed
(``torch.autograd.grad``), the parameters' ``.grad`` are left untouched. The random start uses a
``torch.Generator`` seeded by the caller; which optimizer steps are adversarial is drawn by
:func:`is_adversarial_step` from (seed, step), so a resumed run makes the same choices.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

CHANNELS = 3


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


def _channel_view(pixel_values: torch.Tensor) -> torch.Tensor:
    """N x 1176 -> N x 3 x 392 (channel is the slowest axis of a Qwen2-VL patch)."""
    return pixel_values.view(pixel_values.shape[0], CHANNELS, -1)


def _bounds(pixel_values: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(per-channel scale 1/std as 1 x 3 x 1, normalised value of intensity 0, of intensity 1)."""
    m = torch.tensor(mean, dtype=pixel_values.dtype, device=pixel_values.device).view(1, CHANNELS, 1)
    s = torch.tensor(std, dtype=pixel_values.dtype, device=pixel_values.device).view(1, CHANNELS, 1)
    return 1.0 / s, (0.0 - m) / s, (1.0 - m) / s


def perturb_pixels(
    pixel_values: torch.Tensor,
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
    cfg: AdversarialConfig,
    *,
    image_mean: tuple[float, ...],
    image_std: tuple[float, ...],
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Adversarial ``pixel_values`` (N x 1176, same dtype) that raise ``loss_fn``.

    loss_fn(pixel_values) -> scalar loss of the current model on the batch with those pixels.
    Returns a detached tensor within ε (in [0, 1] RGB, see the module docstring) of the input.
    """
    if cfg.method not in ("fgsm", "pgd"):
        raise ValueError(f"adversarial method must be fgsm or pgd, got {cfg.method!r}")
    clean = pixel_values.detach()
    inv_std, lo, hi = _bounds(clean, image_mean, image_std)
    radius = cfg.eps * inv_std  # 1 x 3 x 1, normalised units
    x0 = _channel_view(clean)

    def project(x: torch.Tensor) -> torch.Tensor:
        x = torch.max(torch.min(x, x0 + radius), x0 - radius)
        return torch.max(torch.min(x, hi), lo)

    if cfg.method == "fgsm":
        x, step_size, steps = x0.clone(), radius, 1
    else:
        noise = torch.rand(x0.shape, generator=generator, dtype=torch.float32).to(x0.device, x0.dtype)
        x, step_size, steps = project(x0 + (2 * noise - 1) * radius), cfg.alpha * inv_std, cfg.steps
    for _ in range(steps):
        x = x.detach().requires_grad_(True)
        loss = loss_fn(x.view_as(clean))
        (grad,) = torch.autograd.grad(loss, [x])
        x = project(x.detach() + step_size * grad.sign())
    return x.detach().view_as(clean)
