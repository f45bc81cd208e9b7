"""Losses of the forensics model (ARCHITECTURE.md, Model, training, evaluation).

text cross-entropy on assistant tokens (labels -100 elsewhere) + mask (BCE on every sample with a
mask target, authentic images included with their empty mask; Dice only on targets with
foreground; boundary-aware BCE on the edge band) + cls (sigmoid focal loss) + supervised InfoNCE
on the ``<cls>`` embeddings (real vs fake; a memory queue adds negatives/positives when batches
are small). :func:`total_loss` weights the parts with :class:`LossWeights` and keeps every head in
the autograd graph on every step (a zero weight multiplies, it never skips), so DDP never waits
for a gradient that does not come.

Shapes: logits B x T x V, labels B x T int64; mask logits/targets B x 1 x H x W (targets float in
{0, 1}); cls logits/targets B; embeddings B x D. ``pixel_weight`` B x 1 x H x W float in {0, 1}: a
pixel of weight 0 (hidden by block masking) counts in no pixel loss, as if it were not in the image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from trainer.training.config import LossWeights


def _zero_like_graph(t: torch.Tensor) -> torch.Tensor:
    """A float32 zero that depends on ``t`` (keeps ``t``'s producers in the graph)."""
    return t.float().sum() * 0.0


def text_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy: logits[:, t] predicts labels[:, t+1]; -100 labels ignored.

    Mean over labelled tokens (float32); exactly 0 (in the graph) when no token is labelled.
    """
    # Shift the labels, not the logits: slicing B x T x V logits would copy them (twice with backward).
    shift_labels = F.pad(labels.to(logits.device), (0, 1), value=-100)[:, 1:]
    valid = shift_labels != -100
    if not bool(valid.any()):
        return _zero_like_graph(logits)
    flat = logits.float().reshape(-1, logits.shape[-1])
    return F.cross_entropy(flat, shift_labels.reshape(-1), ignore_index=-100)


def labelled_text_loss(lm_head: torch.nn.Module, hidden: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """`text_loss` without the full B x T x V logits: `lm_head` runs on the hidden states (B x T x H)
    of the positions whose next token is labelled only. Equal to ``text_loss(lm_head(hidden), labels)``."""
    shift_labels = F.pad(labels.to(hidden.device), (0, 1), value=-100)[:, 1:]
    valid = shift_labels != -100
    if not bool(valid.any()):
        return _zero_like_graph(hidden) + 0.0 * lm_head(hidden[:, :1]).sum()  # lm_head stays in the graph
    return F.cross_entropy(lm_head(hidden[valid]).float(), shift_labels[valid])


def _masked_mean(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """sum(values * weights) / sum(weights), 0 in the graph when all weights are 0."""
    total = weights.sum()
    if float(total) == 0.0:
        return _zero_like_graph(values)
    return (values * weights).sum() / total


def _pixel_weights(pixel_weight: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor | None:
    """B x (H*W) float weights of ``like`` (B x 1 x H x W), or None (every pixel counts)."""
    return None if pixel_weight is None else pixel_weight.to(like.device).float().expand_as(like).flatten(1)


def mask_bce(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None,
             pixel_weight: torch.Tensor | None = None) -> torch.Tensor:
    """Pixel BCE, mean over (visible) pixels then over valid samples (empty targets included; a
    sample with no visible pixel is skipped)."""
    per_pixel = F.binary_cross_entropy_with_logits(logits.float(), target.float(), reduction="none")
    valid = torch.ones(per_pixel.shape[0], device=per_pixel.device) if valid is None else valid.float()
    w = _pixel_weights(pixel_weight, per_pixel)
    if w is None:
        per_sample = per_pixel.flatten(1).mean(1)
    else:
        visible = w.sum(1)
        per_sample = (per_pixel.flatten(1) * w).sum(1) / visible.clamp(min=1e-6)
        valid = valid * (visible > 0).float()
    return _masked_mean(per_sample, valid)


def dice_loss(
    logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None, eps: float = 1.0,
    pixel_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """1 - soft Dice, averaged over valid samples whose (visible) target has foreground (others skipped).

    Dice = (2 * sum(p * t) + eps) / (sum(p) + sum(t) + eps), p = sigmoid(logits), sums over visible pixels.
    """
    p = torch.sigmoid(logits.float()).flatten(1)
    t = target.float().flatten(1)
    w = _pixel_weights(pixel_weight, logits)
    if w is not None:
        p, t = p * w, t * w
    dice = (2 * (p * t).sum(1) + eps) / (p.sum(1) + t.sum(1) + eps)
    has_fg = (t.sum(1) > 0).float()
    weights = has_fg if valid is None else has_fg * valid.float()
    return _masked_mean(1 - dice, weights)


def edge_band(target: torch.Tensor, width: int = 3) -> torch.Tensor:
    """B x 1 x H x W {0, 1} band of pixels within ``width`` of the mask boundary (both sides).

    Computed as dilation minus erosion with a (2*width+1) square; empty or full masks have none.
    """
    t = target.float()
    k = 2 * width + 1
    dilated = F.max_pool2d(t, k, stride=1, padding=width)
    eroded = -F.max_pool2d(-t, k, stride=1, padding=width)
    # Pixels outside the image count as "same as the border" (no band along the frame).
    return (dilated - eroded).clamp(0, 1)


def boundary_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    valid: torch.Tensor | None = None,
    *,
    edge: torch.Tensor | None = None,
    width: int = 3,
    pixel_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """BCE restricted to the edge band: mean over band pixels, then over valid samples with a band.

    ``edge``: B x 1 x H x W given band (e.g. from ``.edge.png``, nonzero = band); else
    :func:`edge_band` of the target. With ``pixel_weight`` only the band's visible pixels count.
    """
    band = (edge.float() > 0).float() if edge is not None else edge_band(target, width)
    if pixel_weight is not None:
        band = band * pixel_weight.to(band.device).float()
    per_pixel = F.binary_cross_entropy_with_logits(logits.float(), target.float(), reduction="none")
    band_px = band.flatten(1).sum(1)
    per_sample = (per_pixel * band).flatten(1).sum(1) / band_px.clamp(min=1)
    weights = (band_px > 0).float()
    if valid is not None:
        weights = weights * valid.float()
    return _masked_mean(per_sample, weights)


def focal_loss(
    logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None, *, alpha: float = 0.5, gamma: float = 2.0
) -> torch.Tensor:
    """Sigmoid focal loss (Lin et al.), mean over valid samples.

    FL = -a_t (1 - p_t)^gamma log(p_t), a_t = alpha for positives (fake = 1), 1 - alpha for
    negatives; alpha < 0 disables the weighting. The default 0.5 weighs both classes alike
    (the sampler already balances them), and is half the unweighted loss.
    """
    x, y = logits.float(), target.float()
    ce = F.binary_cross_entropy_with_logits(x, y, reduction="none")
    p = torch.sigmoid(x)
    p_t = p * y + (1 - p) * (1 - y)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * y + (1 - alpha) * (1 - y)) * loss
    valid = torch.ones_like(loss) if valid is None else valid.float()
    return _masked_mean(loss, valid)


# -- chance values: the loss of the best constant predictor on the same batch ---------------------


def cls_chance(target: torch.Tensor, valid: torch.Tensor | None = None, *, alpha: float = 0.5,
               gamma: float = 2.0) -> float:
    """:func:`focal_loss` of the constant score p = 0.5 on these targets (B in {0, 1}; ``valid`` B bool):
    mean over valid samples of a_t 0.5^gamma ln 2 (0 when none is valid). With the default alpha 0.5
    that is 0.0866 whatever the classes. Why p = 0.5 and not the batch's class prior: at the default
    ``--batch-size 1`` a micro-batch holds one class, whose "best constant" would be the label itself;
    the balanced sampler makes the run's prior 0.5, where p = 0.5 is the best constant (alpha 0.5)."""
    y = target.detach().float()
    a_t = (alpha * y + (1 - alpha) * (1 - y)) if alpha >= 0 else torch.ones_like(y)
    per = a_t * (0.5**gamma) * math.log(2.0)
    w = torch.ones_like(y) if valid is None else valid.detach().float().to(y.device)
    return float((per * w).sum() / w.sum()) if float(w.sum()) > 0 else 0.0


def _binary_entropy(f: float) -> float:
    return 0.0 if f <= 0.0 or f >= 1.0 else -(f * math.log(f) + (1 - f) * math.log(1 - f))


def _visible(target: torch.Tensor, valid: torch.Tensor | None,
             pixel_weight: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per sample (B): visible foreground pixels, visible pixels, and the sample's weight in the loss (valid)."""
    t = target.detach().float().flatten(1)
    w = torch.ones_like(t) if pixel_weight is None else pixel_weight.detach().to(t.device).float().expand_as(
        target).flatten(1)
    v = torch.ones(t.shape[0], device=t.device) if valid is None else valid.detach().float().to(t.device)
    return (t * w).sum(1), w.sum(1), v


def mask_bce_chance(target: torch.Tensor, valid: torch.Tensor | None = None,
                    pixel_weight: torch.Tensor | None = None) -> float:
    """:func:`mask_bce` of the best constant map: H(F), the binary entropy (nats) of F, the foreground
    share of the visible pixels averaged over the samples :func:`mask_bce` averages (the constant
    probability F minimises -F ln c - (1 - F) ln(1 - c)). 0 for an all-authentic batch."""
    fg, px, v = _visible(target, valid, pixel_weight)
    v = v * (px > 0).float()
    if float(v.sum()) == 0.0:
        return 0.0
    return _binary_entropy(float((fg / px.clamp(min=1e-6) * v).sum() / v.sum()))


def mask_dice_chance(target: torch.Tensor, valid: torch.Tensor | None = None, eps: float = 1.0,
                     pixel_weight: torch.Tensor | None = None) -> float:
    """:func:`dice_loss` of the best constant map, all-forged (p = 1) or all-authentic (p = 0), whichever
    is lower on the batch: per forged sample 1 - (2 T + eps) / (N + T + eps) for p = 1 (about
    1 - 2f / (1 + f), f = T / N its forged share of N visible pixels), 1 - eps / (T + eps) for p = 0,
    averaged over the samples :func:`dice_loss` averages. 0 when no sample has foreground."""
    fg, px, v = _visible(target, valid, pixel_weight)
    v = v * (fg > 0).float()
    if float(v.sum()) == 0.0:
        return 0.0
    ones = 1 - (2 * fg + eps) / (px + fg + eps)
    zeros = 1 - eps / (fg + eps)
    return min(float((ones * v).sum() / v.sum()), float((zeros * v).sum() / v.sum()))


def text_chance(vocab_size: int) -> float:
    """ln(vocabulary size): the cross-entropy of the uniform guess over the vocabulary, a reference
    for the text term (not the best constant: that would be the answers' unigram entropy)."""
    return math.log(vocab_size)


@dataclass
class EmbeddingQueue:
    """FIFO memory of past (L2-normalised, detached) ``<cls>`` embeddings and their labels."""

    size: int = 256
    embeddings: torch.Tensor | None = field(default=None, repr=False)
    labels: torch.Tensor | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return 0 if self.labels is None else int(self.labels.shape[0])

    def push(self, embeddings: torch.Tensor, labels: torch.Tensor) -> None:
        """Append B x D embeddings (normalised here) with B labels; keep the newest ``size``."""
        if self.size <= 0:
            return
        e = F.normalize(embeddings.detach().float(), dim=-1)
        y = labels.detach().long()
        if self.embeddings is not None:
            e = torch.cat([self.embeddings.to(e.device), e])
            y = torch.cat([self.labels.to(y.device), y])
        self.embeddings, self.labels = e[-self.size :], y[-self.size :]


def info_nce(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    *,
    valid: torch.Tensor | None = None,
    queue: EmbeddingQueue | None = None,
    temperature: float = 0.1,
) -> torch.Tensor:
    """Supervised InfoNCE (SupCon) on L2-normalised embeddings, real vs fake.

    For anchor i (a valid batch sample), candidates are the other valid batch samples and the
    queue; positives share i's label. loss_i = -mean_{p in P(i)} log softmax_j(s_ij / T)[p],
    s = cosine similarity. Averaged over anchors with at least one positive; 0 (in the graph)
    when none has. The queue is read, not written: call ``queue.push`` after the step.
    """
    z = F.normalize(embeddings.float(), dim=-1)
    y = labels.long()
    keep = torch.ones_like(y, dtype=torch.bool) if valid is None else valid.bool()
    cand_z, cand_y = z[keep], y[keep]
    if queue is not None and len(queue) > 0:
        cand_z = torch.cat([cand_z, queue.embeddings.to(z.device)])
        cand_y = torch.cat([cand_y, queue.labels.to(y.device)])
    anchors_z, anchors_y = z[keep], y[keep]
    if anchors_z.shape[0] == 0 or cand_z.shape[0] < 2:
        return _zero_like_graph(embeddings)
    sim = anchors_z @ cand_z.t() / temperature  # A x C
    self_mask = torch.zeros_like(sim, dtype=torch.bool)
    idx = torch.arange(anchors_z.shape[0], device=sim.device)
    self_mask[idx, idx] = True  # anchor a is candidate a (the batch comes first)
    sim = sim.masked_fill(self_mask, float("-inf"))
    log_prob = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    pos = (anchors_y[:, None] == cand_y[None, :]) & ~self_mask
    n_pos = pos.sum(1)
    per_anchor = -(log_prob.masked_fill(~pos, 0.0)).sum(1) / n_pos.clamp(min=1)
    has = (n_pos > 0).float()
    return _masked_mean(per_anchor, has) + _zero_like_graph(embeddings)


@dataclass
class LossBreakdown:
    """total: the scalar to backpropagate; parts: each term's unweighted value (floats); chance: the
    value of cls, mask_bce and mask_dice for the best constant predictor on the same samples."""

    total: torch.Tensor
    parts: dict[str, float]
    chance: dict[str, float] = field(default_factory=dict)


def total_loss(
    outputs,
    *,
    cls_target: torch.Tensor,
    mask_target: torch.Tensor | None = None,
    mask_valid: torch.Tensor | None = None,
    edge: torch.Tensor | None = None,
    weights: LossWeights | None = None,
    queue: EmbeddingQueue | None = None,
    pixel_valid: torch.Tensor | None = None,
    evidence_weight: torch.Tensor | None = None,
) -> LossBreakdown:
    """Weighted sum of all parts for one :class:`trainer.model.outputs.ForensicsOutput`.

    cls_target: B in {0 real, 1 fake}; mask_target: B x 1 x H x W in {0, 1} at mask_logits' size
    (authentic images: all zeros); mask_valid: B bool, samples that have a mask target (default
    all); edge: optional given edge band. cls terms only count samples whose ``<cls>`` was found,
    mask terms only samples whose 32 mask tokens were found. Pushes the batch into ``queue``
    after computing the contrastive term. Block masking (trainer.training.block_masking):
    pixel_valid B x 1 x H x W in {0, 1}, pixels of weight 0 count in no mask term; evidence_weight
    B in {0, 1}, samples of weight 0 count in neither the cls nor the contrastive term (nor the queue;
    their text labels are -100 already), their mask terms still count.
    """
    w = weights or LossWeights()
    pos = outputs.positions
    cls_valid = pos.has_cls
    if evidence_weight is not None:
        cls_valid = cls_valid & (evidence_weight.to(cls_valid.device) > 0)
    parts: dict[str, torch.Tensor] = {}
    parts["text"] = outputs.text_loss if outputs.text_loss is not None else _zero_like_graph(outputs.cls_logit)
    parts["cls"] = focal_loss(outputs.cls_logit, cls_target, cls_valid, alpha=w.focal_alpha, gamma=w.focal_gamma)
    chance = {"cls": cls_chance(cls_target, cls_valid, alpha=w.focal_alpha, gamma=w.focal_gamma)}
    parts["contrastive"] = info_nce(
        outputs.cls_embedding, cls_target, valid=cls_valid, queue=queue, temperature=w.temperature
    )
    if outputs.mask_logits is not None and mask_target is not None:
        valid = pos.has_masks if mask_valid is None else pos.has_masks & mask_valid.bool()
        logits = outputs.mask_logits
        if mask_target.shape[-2:] != logits.shape[-2:]:
            raise ValueError(f"mask target {tuple(mask_target.shape)} vs logits {tuple(logits.shape)}")
        parts["mask_bce"] = mask_bce(logits, mask_target, valid, pixel_weight=pixel_valid)
        parts["mask_dice"] = dice_loss(logits, mask_target, valid, pixel_weight=pixel_valid)
        chance["mask_bce"] = mask_bce_chance(mask_target, valid, pixel_weight=pixel_valid)
        chance["mask_dice"] = mask_dice_chance(mask_target, valid, pixel_weight=pixel_valid)
        parts["mask_boundary"] = boundary_loss(logits, mask_target, valid, edge=edge, width=w.boundary_width,
                                               pixel_weight=pixel_valid)
    else:
        keep = _zero_like_graph(outputs.mask_logits) if outputs.mask_logits is not None else _zero_like_graph(outputs.mask_prompts)
        parts["mask_bce"] = parts["mask_dice"] = parts["mask_boundary"] = keep
    total = (
        w.text * parts["text"]
        + w.cls * parts["cls"]
        + w.contrastive * parts["contrastive"]
        + w.mask_bce * parts["mask_bce"]
        + w.mask_dice * parts["mask_dice"]
        + w.mask_boundary * parts["mask_boundary"]
        + outputs.unused_zero
        + _zero_like_graph(outputs.mask_prompts)
        + _zero_like_graph(outputs.cls_logit)
    )
    if queue is not None:
        queue.push(outputs.cls_embedding[cls_valid], cls_target[cls_valid])
    return LossBreakdown(total=total, parts={k: float(v.detach()) for k, v in parts.items()}, chance=chance)
