"""Chance values of the loss terms: each equals its loss function evaluated on the best constant
predictor, and no other constant does better (so a loss at its chance value has learned nothing)."""

from __future__ import annotations

import math

import pytest
import torch

from trainer.training.losses import (
    cls_chance,
    dice_loss,
    focal_loss,
    mask_bce,
    mask_bce_chance,
    mask_dice_chance,
    text_chance,
    text_loss,
)


def _const(shape: tuple[int, ...], p: float) -> torch.Tensor:
    """Logits of the constant probability ``p`` (p = 0 or 1: +-100, sigmoid exact in float32)."""
    if p <= 0.0 or p >= 1.0:
        return torch.full(shape, 100.0 if p >= 1.0 else -100.0)
    return torch.full(shape, math.log(p / (1 - p)))


def _masks() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Targets B=4 x 1 x 16 x 16: two forged (shares 0.25 and 0.0625), one authentic, one invalid; pixel weights."""
    t = torch.zeros(4, 1, 16, 16)
    t[0, 0, :8, :8] = 1
    t[1, 0, :4, :4] = 1
    t[3, 0] = 1  # not valid: must not count
    valid = torch.tensor([True, True, True, False])
    weight = torch.ones(4, 1, 16, 16)
    weight[0, 0, 12:, :] = 0  # hidden rows (block masking)
    return t, valid, weight


@pytest.mark.parametrize("alpha, gamma", [(0.5, 2.0), (0.25, 2.0), (0.5, 0.0)])
def test_cls_chance_is_the_focal_loss_of_p_one_half(alpha, gamma):
    y = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0])
    valid = torch.tensor([True, True, True, False, True])
    want = float(focal_loss(_const((5,), 0.5), y, valid, alpha=alpha, gamma=gamma))
    assert cls_chance(y, valid, alpha=alpha, gamma=gamma) == pytest.approx(want, rel=1e-6)
    assert cls_chance(torch.tensor([0.0, 1.0])) == pytest.approx(0.5 * 0.25 * math.log(2))  # issue 23's 0.0866


def test_cls_chance_is_the_best_constant_on_a_balanced_batch():
    y = torch.tensor([1.0, 0.0, 1.0, 0.0])
    chance = cls_chance(y)
    for p in (0.05, 0.3, 0.45, 0.55, 0.7, 0.95):
        assert float(focal_loss(_const((4,), p), y)) > chance


def test_mask_bce_chance_is_the_bce_of_the_mean_forged_share():
    t, valid, weight = _masks()
    chance = mask_bce_chance(t, valid, pixel_weight=weight)
    share = (64 / 192 + 16 / 256 + 0.0) / 3  # visible foreground / visible pixels, per valid sample, averaged
    assert chance == pytest.approx(-(share * math.log(share) + (1 - share) * math.log(1 - share)), rel=1e-6)
    assert float(mask_bce(_const(t.shape, share), t, valid, pixel_weight=weight)) == pytest.approx(chance, rel=1e-5)
    for p in (share / 2, share * 1.5, 0.5):
        assert float(mask_bce(_const(t.shape, p), t, valid, pixel_weight=weight)) > chance
    assert mask_bce_chance(torch.zeros(2, 1, 8, 8)) == 0.0  # all authentic: the all-0 map is exact


def test_mask_dice_chance_is_the_dice_loss_of_the_better_constant_map():
    t, valid, weight = _masks()
    chance = mask_dice_chance(t, valid, pixel_weight=weight)
    ones = float(dice_loss(_const(t.shape, 1.0), t, valid, pixel_weight=weight))
    zeros = float(dice_loss(_const(t.shape, 0.0), t, valid, pixel_weight=weight))
    assert chance == pytest.approx(min(ones, zeros), rel=1e-5)
    f = (64 / 192, 16 / 256)
    assert chance == pytest.approx(sum(1 - 2 * x / (1 + x) for x in f) / 2, abs=0.01)  # the 1 - 2f/(1+f) rule
    for p in (0.3, 0.6, 0.9):
        assert float(dice_loss(_const(t.shape, p), t, valid, pixel_weight=weight)) > chance - 1e-6


def test_text_chance_is_the_cross_entropy_of_the_uniform_guess():
    labels = torch.tensor([[-100, 3, 7, 1]])
    assert float(text_loss(torch.zeros(1, 4, 11), labels)) == pytest.approx(text_chance(11), rel=1e-6)


def test_the_progress_line_shows_each_term_beside_its_chance_value():
    import time

    from trainer.training.loop import TERMS, progress_line

    record = {"loss": 1.0, **dict.fromkeys(TERMS, 0.05), "cls_chance": 0.0866, "mask_bce_chance": 0.12,
              "text_chance": 11.93}
    line = progress_line(1, 5, 10, time.perf_counter(), 0, record)
    assert "cls 0.05 (chance 0.0866)" in line and "mask_bce 0.05 (chance 0.12)" in line
    assert "text 0.05 (chance 11.9)" in line and "mask_dice 0.05," in line  # no chance value: none shown
