"""The overfit check: 8 fixed samples, stage-1 trainable set, cls accuracy 1.0 and mask IoU > 0.8, with
`<cls>` before the verdict (so the accuracy comes from the images); and what each cls position can learn
when only the verdict text differs."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from forgery_synth.dataset.answer_tokens import place_cls
from trainer.training.config import LossWeights
from trainer.training.losses import EmbeddingQueue, total_loss

MAX_STEPS = 400


def _iou(logits: torch.Tensor, target: torch.Tensor) -> float:
    pred = logits > 0
    truth = target > 0.5
    return float((pred & truth).sum()) / max(1.0, float((pred | truth).sum()))


@pytest.mark.slow
def test_overfit_eight_samples(batch_for, json_answer, make_sample, masks_tensor, tiny_model):
    model = tiny_model(seed=0, cls_position="before-verdict")
    data = [make_sample(100 + i, (56, 56), fake=i % 2 == 0) for i in range(8)]
    images, masks = [d[0] for d in data], [d[1] for d in data]
    labels = torch.tensor([1.0 if i % 2 == 0 else 0.0 for i in range(8)])
    answers = [place_cls(json_answer("fake" if y else "real", [[0, 0, 1, 1]] if y else None), "before-verdict")
               for y in labels.tolist()]
    batch = batch_for(images, answers)
    batch.pop("labels")  # the heads are under test; the text loss (152k-way logits) is skipped for speed
    target = masks_tensor(masks)
    weights = LossWeights(text=0.0, contrastive=0.1)
    queue = EmbeddingQueue(size=32)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=2e-3, weight_decay=0.0)
    model.train()
    start = time.perf_counter()
    acc = iou = 0.0
    for step in range(1, MAX_STEPS + 1):
        out = model(**batch, mask_size=(56, 56), compute_logits=False)
        loss = total_loss(out, cls_target=labels, mask_target=target, weights=weights, queue=queue)
        opt.zero_grad()
        loss.total.backward()
        opt.step()
        if step % 25 == 0:
            acc = float(((out.cls_logit > 0).float() == labels).float().mean())
            fakes = [i for i in range(8) if labels[i] == 1]
            iou = float(np.mean([_iou(out.mask_logits[i, 0].detach(), target[i, 0]) for i in fakes]))
            reals_clean = all(float((out.mask_logits[i] > 0).float().mean()) < 0.05 for i in range(8) if labels[i] == 0)
            if acc == 1.0 and iou > 0.8 and reals_clean:
                break
    elapsed = time.perf_counter() - start
    print(f"overfit: {step} steps, {elapsed:.1f} s, cls acc {acc:.2f}, mask IoU {iou:.3f}")
    model.eval()
    with torch.no_grad():
        out = model(**batch, mask_size=(56, 56), compute_logits=False)
    assert float(((out.cls_logit > 0).float() == labels).float().mean()) == 1.0
    fakes = [i for i in range(8) if labels[i] == 1]
    assert np.mean([_iou(out.mask_logits[i, 0], target[i, 0]) for i in fakes]) > 0.8
    for i in range(8):
        if labels[i] == 0:  # authentic images: (almost) no predicted pixel
            assert float((out.mask_logits[i] > 0).float().mean()) < 0.05


def _train_cls_on_one_image(position: str, batch_for, json_answer, make_sample, tiny_model, steps: int):
    """Eight samples of ONE image whose answers differ only in the verdict word; the cls head trains
    (teacher forcing, as in training). Returns the cls logits of each step (at most `steps` x 8; it
    stops early once every sample is right)."""
    model = tiny_model(seed=0, cls_position=position)
    image, _ = make_sample(7, (56, 56), fake=True)
    labels = torch.tensor([1.0 if i % 2 == 0 else 0.0 for i in range(8)])
    answers = [place_cls(json_answer("fake" if y else "real"), position) for y in labels.tolist()]
    batch = batch_for([image] * 8, answers)
    batch.pop("labels")
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=2e-3, weight_decay=0.0)
    weights = LossWeights(text=0.0, mask_bce=0.0, mask_dice=0.0, mask_boundary=0.0, contrastive=0.0)
    target = torch.zeros(8, 1, 56, 56)
    model.train()
    history = []
    for _ in range(steps):
        out = model(**batch, mask_size=(56, 56), compute_logits=False)
        loss = total_loss(out, cls_target=labels, mask_target=target, weights=weights, queue=None)
        opt.zero_grad()
        loss.total.backward()
        opt.step()
        history.append(out.cls_logit.detach().clone())
        if bool(((history[-1] > 0).float() == labels).all()):
            break
    return labels, torch.stack(history)


@pytest.mark.slow
def test_after_verdict_cls_learns_the_verdict_word_before_verdict_cls_cannot(batch_for, json_answer, make_sample,
                                                                             tiny_model):
    """The image is fixed and only the verdict text varies: after the verdict word, `<cls>` reaches
    accuracy 1.0 (it reads the text, so a teacher-forced cls accuracy proves nothing about images);
    before it, all eight states are the same, so the head stays at chance (accuracy 0.5) however long it trains."""
    labels, after = _train_cls_on_one_image("after-verdict", batch_for, json_answer, make_sample, tiny_model, 60)
    acc_after = ((after[-1] > 0).float() == labels).float().mean()
    assert float(acc_after) == 1.0
    labels, before = _train_cls_on_one_image("before-verdict", batch_for, json_answer, make_sample, tiny_model,
                                             len(after))
    assert len(before) == len(after)  # trained as long, and never got every sample right
    assert float((before - before[:, :1]).abs().max()) < 1e-5  # one logit for all eight samples, at every step
    assert float(((before[-1] > 0).float() == labels).float().mean()) == 0.5
