"""Block masking: hide square blocks of the training images, inside and outside the forged region alike,
with a share of the image that grows over the run (``--block-mask``; the research notes' task design,
"progressively mask forged and non-forged regions").

* **Where.** The image is cut into a grid of about-square cells whose side is ``size`` times the image's
  shorter side (resolution independent; edges at ``linspace(0, H, rows + 1)``, so cells differ by at most
  a pixel). ``k`` cells are drawn uniformly without replacement, ``k`` = share x cells rounded
  stochastically (floor, plus one with the fractional part's probability), so the hidden area is
  unbiased. The draw never sees the mask or the label: both labels see the same world, and the blocks
  are no label hint.
* **How much.** :func:`scheduled_share`: linear from 0 at the run's first micro-batch to ``share`` after
  ``ramp`` of the run, then constant. It is a function of the data position (epoch, global micro-batch
  index) and the run's length, because batches are made in DataLoader workers that do not know the
  optimizer step, and so that a resumed run hides the same blocks.
* **Fill.** Hidden pixels become :data:`FILL_RGB`, Qwen2.5-VL's (CLIP) normalisation mean, within a
  grey level of SAM's ImageNet mean: a fixed neutral colour that both encoders see as about zero.
* **Randomness.** Sample ``i`` (global sample index ``index * batch_size + j``) of ``epoch`` draws from
  ``numpy.random.default_rng([seed, epoch, i, BLOCK_TAG])``; parameters are drawn into a plain dict
  (:func:`draw_blocks`), then applied (:func:`hidden_pixels`, :func:`fill_hidden`).

The losses leave hidden pixels out (``pixel_valid``), and a forged sample whose forged pixels are all
hidden is not evidence of forgery (:func:`evidence_hidden`; see trainer.training.data, make_batch).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BLOCK_TAG = 17
"""Last entry of the block draw's seed (augmentation uses 7, adversarial choices 11 and 13)."""

FILL_RGB = (123, 117, 104)
"""The colour of hidden pixels: 255 x Qwen2.5-VL's image mean (0.481, 0.458, 0.408), rounded."""


@dataclass(frozen=True)
class BlockMaskConfig:
    """share: final share of the image area hidden (0 = off); size: block side / the image's shorter
    side; ramp: fraction of the run over which the share grows from 0 to ``share``.
    epoch_micro_batches: global micro-batches in an epoch; run_epochs: the run's length in epochs
    (total steps / steps per epoch; fractional with --max-steps). The loop sets the last two."""

    share: float = 0.0
    size: float = 0.125
    ramp: float = 1.0
    epoch_micro_batches: int = 1
    run_epochs: float = 1.0


def scheduled_share(cfg: BlockMaskConfig, epoch: int, index: int) -> float:
    """The share of the image hidden in global micro-batch ``index`` of ``epoch``, in [0, cfg.share]:
    ``share * min(1, progress / ramp)``, progress = (epoch + index / epoch_micro_batches) / run_epochs."""
    if cfg.share <= 0:
        return 0.0
    progress = (epoch + index / max(1, cfg.epoch_micro_batches)) / max(cfg.run_epochs, 1e-9)
    return float(cfg.share * min(1.0, max(0.0, progress / cfg.ramp)))


def block_rng(seed: int, epoch: int, sample: int) -> np.random.Generator:
    """The generator of one sample's blocks (``sample``: the epoch's global sample index)."""
    return np.random.default_rng([seed, epoch, sample, BLOCK_TAG])


def _grid(shape_hw: tuple[int, int], size: float) -> tuple[int, int]:
    h, w = shape_hw
    side = max(1, round(size * min(h, w)))
    return max(1, round(h / side)), max(1, round(w / side))


def draw_blocks(shape_hw: tuple[int, int], share: float, size: float, rng: np.random.Generator) -> dict:
    """Which grid cells of an H x W image to hide: ``{"rows", "cols", "cells": sorted flat indices}``.

    Uses only the shape, the share and ``rng`` (never the mask or the label). No cell when share is 0.
    """
    rows, cols = _grid(shape_hw, size)
    n = rows * cols
    exact = share * n
    k = int(np.floor(exact))
    if exact > k and rng.random() < exact - k:
        k += 1
    cells = sorted(int(c) for c in rng.choice(n, size=k, replace=False)) if k else []
    return {"rows": rows, "cols": cols, "cells": cells}


def hidden_pixels(params: dict, shape_hw: tuple[int, int]) -> np.ndarray:
    """The H x W bool map (True = hidden) of the cells in ``params`` (from :func:`draw_blocks`)."""
    h, w = shape_hw
    ys = np.linspace(0, h, params["rows"] + 1).round().astype(int)
    xs = np.linspace(0, w, params["cols"] + 1).round().astype(int)
    hidden = np.zeros((h, w), bool)
    for c in params["cells"]:
        r, q = divmod(c, params["cols"])
        hidden[ys[r]:ys[r + 1], xs[q]:xs[q + 1]] = True
    return hidden


def fill_hidden(image: np.ndarray, hidden: np.ndarray) -> np.ndarray:
    """H x W x 3 uint8 image with the ``hidden`` (H x W bool) pixels set to :data:`FILL_RGB` (a copy)."""
    out = image.copy()
    out[hidden] = FILL_RGB
    return out


def hide_blocks(image: np.ndarray, cfg: BlockMaskConfig, *, seed: int, epoch: int, index: int,
                sample: int) -> tuple[np.ndarray, np.ndarray]:
    """One sample's block masking: (H x W x 3 uint8 image, H x W bool hidden map).

    ``index``: the global micro-batch index (the schedule), ``sample``: the global sample index (the
    draw). Off (share 0) or a scheduled share of 0: the image itself and an all-False map.
    """
    shape = image.shape[:2]
    share = scheduled_share(cfg, epoch, index)
    if share <= 0:
        return image, np.zeros(shape, bool)
    hidden = hidden_pixels(draw_blocks(shape, share, cfg.size, block_rng(seed, epoch, sample)), shape)
    return (fill_hidden(image, hidden) if hidden.any() else image), hidden


def evidence_hidden(mask: np.ndarray, hidden: np.ndarray) -> bool:
    """Whether a forged region exists (``mask``, H x W bool) and every one of its pixels is ``hidden``:
    the image then shows no forgery, so it must not be trained as evidence of one."""
    return bool(mask.any()) and not bool((mask & ~hidden).any())
