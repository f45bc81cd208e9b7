"""The cls logit's reading of the mask (trainer.model.mask_evidence): zero at build time, more for a
map that marks a region than for an empty one once trained, never a gradient into the mask path, and
kept by checkpoints (absent from older ones)."""

from __future__ import annotations

import torch

from trainer.model.config import ForensicsModelConfig
from trainer.model.mask_evidence import MaskEvidence, add_mask_evidence


def test_starts_at_zero_and_reads_the_region():
    head = MaskEvidence()
    region = torch.full((2, 1, 32, 32), -8.0)
    region[0, 0, 8:20, 8:20] = 6.0  # a drawn region vs an empty map
    cls = torch.zeros(2)
    out, zero = add_mask_evidence(head, region, cls)
    assert torch.equal(out, cls) and float(zero) == 0.0  # nothing changes at build time
    with torch.no_grad():
        head.linear.weight.fill_(0.1)
    out, _ = add_mask_evidence(head, region, cls)
    assert out[0] > out[1] + 1.0


def test_the_cls_loss_never_trains_the_mask_path():
    head = MaskEvidence()
    with torch.no_grad():
        head.linear.weight.fill_(0.1)
    logits = torch.randn(2, 1, 16, 16, requires_grad=True)
    out, _ = add_mask_evidence(head, logits, torch.zeros(2))
    out.sum().backward()
    assert logits.grad is None and head.linear.weight.grad is not None


def test_without_a_mask_it_joins_the_graph_through_a_zero():
    head = MaskEvidence()
    out, zero = add_mask_evidence(head, None, torch.zeros(3))
    zero.backward()
    assert torch.equal(out, torch.zeros(3)) and head.linear.weight.grad is not None


def test_new_models_have_it_old_checkpoints_do_not(tiny_model):
    assert tiny_model().mask_evidence is not None
    old = ForensicsModelConfig().to_dict()
    del old["cls_mask_evidence"]
    assert ForensicsModelConfig.from_dict(old).cls_mask_evidence is False
