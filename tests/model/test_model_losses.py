"""Each loss against hand-computed values (empty mask, full mask, perfect prediction)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from trainer.model.positions import ForensicPositions
from trainer.training.config import LossWeights
from trainer.training.losses import (
    EmbeddingQueue,
    boundary_loss,
    dice_loss,
    edge_band,
    focal_loss,
    info_nce,
    mask_bce,
    text_loss,
    total_loss,
)

LN2 = math.log(2)


def test_text_loss_shifted_and_assistant_only():
    logits = torch.zeros(1, 3, 2)
    logits[0, 1] = torch.tensor([math.log(3), 0.0])
    labels = torch.tensor([[-100, 1, 0]])  # logits[:, 0] predicts 1, logits[:, 1] predicts 0
    expected = (LN2 + math.log(4 / 3)) / 2
    assert text_loss(logits, labels).item() == pytest.approx(expected, rel=1e-6)


def test_text_loss_without_labels_is_zero_in_graph():
    logits = torch.randn(2, 4, 5, requires_grad=True)
    loss = text_loss(logits, torch.full((2, 4), -100))
    assert loss.item() == 0.0
    loss.backward()
    assert logits.grad is not None and logits.grad.abs().sum() == 0


def test_mask_bce_empty_full_perfect():
    zeros = torch.zeros(2, 1, 4, 4)
    assert mask_bce(zeros, torch.zeros(2, 1, 4, 4)).item() == pytest.approx(LN2)  # authentic: pays BCE
    assert mask_bce(zeros, torch.ones(2, 1, 4, 4)).item() == pytest.approx(LN2)
    target = torch.zeros(1, 1, 4, 4)
    target[..., :2, :] = 1
    perfect = (target * 2 - 1) * 30
    assert mask_bce(perfect, target).item() < 1e-12
    assert mask_bce(zeros, torch.zeros(2, 1, 4, 4), torch.tensor([False, False])).item() == 0.0


def test_dice_empty_full_perfect():
    bad = torch.full((1, 1, 4, 4), 30.0)
    assert dice_loss(bad, torch.zeros(1, 1, 4, 4)).item() == 0.0  # no foreground: Dice skipped
    full = torch.ones(1, 1, 4, 4)
    assert dice_loss(torch.full((1, 1, 4, 4), 30.0), full).item() == pytest.approx(0.0, abs=1e-9)
    # p = 0.5 on 16 pixels of a full mask: 1 - (2*8 + 1) / (8 + 16 + 1)
    assert dice_loss(torch.zeros(1, 1, 4, 4), full).item() == pytest.approx(1 - 17 / 25)
    # mixed batch: only the sample with foreground counts
    logits = torch.zeros(2, 1, 4, 4)
    target = torch.stack([torch.zeros(1, 4, 4), torch.ones(1, 4, 4)])
    assert dice_loss(logits, target).item() == pytest.approx(1 - 17 / 25)


def test_edge_band_and_boundary_loss():
    target = torch.zeros(1, 1, 8, 8)
    target[..., 2:6, 2:6] = 1
    band = edge_band(target, width=1)
    expected = torch.zeros(8, 8)
    expected[1:7, 1:7] = 1
    expected[3:5, 3:5] = 0  # interior farther than 1 px from the edge
    assert torch.equal(band[0, 0], expected)
    assert edge_band(torch.zeros(1, 1, 8, 8)).sum() == 0 and edge_band(torch.ones(1, 1, 8, 8)).sum() == 0
    assert boundary_loss(torch.zeros(1, 1, 8, 8), target, width=1).item() == pytest.approx(LN2)
    perfect = (target * 2 - 1) * 30
    assert boundary_loss(perfect, target, width=1).item() < 1e-12
    # a wrong prediction off the band costs nothing here
    off_band = perfect.clone()
    off_band[..., 0, 0] = 30
    assert boundary_loss(off_band, target, width=1).item() < 1e-12
    # given edge mask wins over the computed band; empty masks have no band -> 0
    edge = torch.zeros(1, 1, 8, 8)
    edge[..., 0, 0] = 1
    assert boundary_loss(off_band, target, edge=edge).item() == pytest.approx(30.0, rel=1e-6)
    assert boundary_loss(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8)).item() == 0.0


def test_focal_loss_hand_values():
    logit, y = torch.tensor([0.0]), torch.tensor([1.0])
    assert focal_loss(logit, y, alpha=0.5, gamma=2.0).item() == pytest.approx(0.5 * 0.25 * LN2)
    assert focal_loss(logit, torch.tensor([0.0]), alpha=0.25, gamma=2.0).item() == pytest.approx(0.75 * 0.25 * LN2)
    assert focal_loss(logit, y, alpha=-1, gamma=0.0).item() == pytest.approx(LN2)  # plain BCE
    assert focal_loss(torch.tensor([30.0, -30.0]), torch.tensor([1.0, 0.0])).item() < 1e-12
    x = torch.tensor([2.0])
    p = 1 / (1 + math.exp(-2.0))
    assert focal_loss(x, torch.tensor([0.0]), alpha=0.5, gamma=2.0).item() == pytest.approx(0.5 * p**2 * -math.log(1 - p), rel=1e-6)


def test_info_nce_hand_value_and_queue():
    z = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 3.0]])
    y = torch.tensor([1, 1, 0])
    # anchors 0 and 1: positive sim 1, negative sim 0 (T = 1); anchor 2 has no positive
    expected = math.log(math.e + 1) - 1
    assert info_nce(z, y, temperature=1.0).item() == pytest.approx(expected, rel=1e-6)
    queue = EmbeddingQueue(size=2)
    queue.push(torch.tensor([[0.0, 1.0], [0.0, 1.0], [0.0, 5.0]]), torch.tensor([0, 0, 0]))
    assert len(queue) == 2
    # with two queued "real" embeddings: anchors 0,1 see 1 positive, 3 negatives (sims 0)
    a01 = math.log(math.e + 3) - 1
    # anchor 2 (real): positives are the two queue items (sim 1), negatives anchors 0,1 (sim 0)
    a2 = -(1 - math.log(2 * math.e + 2))
    got = info_nce(z, y, temperature=1.0, queue=queue).item()
    assert got == pytest.approx((2 * a01 + a2) / 3, rel=1e-6)
    assert info_nce(z[:1], y[:1]).item() == 0.0  # one sample, no pairs


def _fake_outputs(b=2, with_mask=True):
    leaf = lambda *s: torch.zeros(*s, requires_grad=True)  # noqa: E731
    return SimpleNamespace(
        text_loss=None,
        cls_logit=leaf(b),
        cls_embedding=leaf(b, 4),
        mask_prompts=leaf(b, 32, 256),
        mask_logits=leaf(b, 1, 8, 8) if with_mask else None,
        unused_zero=torch.zeros(()),
        positions=ForensicPositions(
            cls=torch.zeros(b, dtype=torch.long),
            has_cls=torch.ones(b, dtype=torch.bool),
            masks=torch.zeros(b, 32, dtype=torch.long),
            has_masks=torch.ones(b, dtype=torch.bool),
        ),
    )


def test_total_loss_zero_weights_keep_every_head_in_graph():
    out = _fake_outputs()
    zero = LossWeights(text=0, cls=0, mask_bce=0, mask_dice=0, mask_boundary=0, contrastive=0)
    loss = total_loss(out, cls_target=torch.tensor([1.0, 0.0]), mask_target=torch.zeros(2, 1, 8, 8), weights=zero)
    assert loss.total.item() == 0.0
    loss.total.backward()
    for t in (out.cls_logit, out.cls_embedding, out.mask_prompts, out.mask_logits):
        assert t.grad is not None


def test_total_loss_parts_and_weights():
    out = _fake_outputs()
    target = torch.zeros(2, 1, 8, 8)
    target[1, :, 2:6, 2:6] = 1
    w = LossWeights(contrastive=0.0)
    queue = EmbeddingQueue(size=8)
    loss = total_loss(out, cls_target=torch.tensor([0.0, 1.0]), mask_target=target, weights=w, queue=queue)
    assert loss.parts["cls"] == pytest.approx(0.5 * 0.25 * LN2)
    assert loss.parts["mask_bce"] == pytest.approx(LN2)
    assert loss.parts["mask_dice"] == pytest.approx(1 - (2 * 8 + 1) / (32 + 16 + 1))
    assert loss.parts["mask_boundary"] == pytest.approx(LN2)
    expected = loss.parts["cls"] + loss.parts["mask_bce"] + loss.parts["mask_dice"] + loss.parts["mask_boundary"]
    assert loss.total.item() == pytest.approx(expected, rel=1e-6)
    assert len(queue) == 2
    # without mask logits the total still backpropagates into the prompts
    out2 = _fake_outputs(with_mask=False)
    total_loss(out2, cls_target=torch.tensor([0.0, 1.0])).total.backward()
    assert out2.mask_prompts.grad is not None


def test_labelled_text_loss_equals_the_full_logits_loss():
    import torch

    from trainer.training.losses import labelled_text_loss, text_loss

    torch.manual_seed(0)
    head = torch.nn.Linear(8, 50, bias=False)
    hidden = torch.randn(2, 7, 8, requires_grad=True)
    labels = torch.full((2, 7), -100)
    labels[0, 3:6] = torch.tensor([4, 9, 1])
    labels[1, 5:] = torch.tensor([7, 2])
    full = text_loss(head(hidden), labels)
    part = labelled_text_loss(head, hidden, labels)
    assert torch.allclose(full, part, atol=1e-6)
    g_full = torch.autograd.grad(full, hidden)[0]
    g_part = torch.autograd.grad(labelled_text_loss(head, hidden, labels), hidden)[0]
    assert torch.allclose(g_full, g_part, atol=1e-6)
    none = labelled_text_loss(head, hidden, torch.full((2, 7), -100))
    assert none.item() == 0.0 and none.requires_grad
