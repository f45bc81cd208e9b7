"""Stage-3 augmentation: anti-forensic post-processing of the whole image, and paraphrased prompts.

Image ops act on the whole image and keep its size, so the mask stays aligned as it is and the
polygons written in the answer stay valid (the frame does not change). Units are those of the
evaluation's robustness perturbations (:mod:`trainer.evaluation.perturb`, which does the pixel work):

* ``jpeg``   recompression at a quality drawn in ``jpeg_quality`` (1-100);
* ``resize`` down-up resampling: shrink by a factor drawn in ``resize_scale`` (<= 1, area
  interpolation), then back to the original size (bilinear);
* ``noise``  additive Gaussian noise, **standard deviation** drawn in ``noise_std`` on the 0-255
  scale (not a variance as IMDL-BenCo's levels).

With probability ``prob`` a sample is augmented; each op then applies independently with
probability 1/2 (at least one op). The instruction augmentation swaps the user prompt for another
paraphrase of the same template and language (``forgery_synth.dataset.conversations.PROMPTS``), keeping
the ``<image>`` placeholders. Apart from it, and in every stage, a share of the json samples is asked
with the inference prompt itself (``inference_prompt_share``, :func:`ask_inference_prompt`). Everything is drawn from the caller's ``numpy.random.Generator``
(the data pipeline seeds one per sample from (seed, epoch, index)), so it is deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from forgery_synth.dataset.conversations import IMAGE_PLACEHOLDER, PROMPTS
from forgery_synth.dataset.prompts import INFERENCE_PROMPT
from trainer.evaluation.perturb import Perturbation, apply_perturbation


@dataclass(frozen=True)
class AugmentConfig:
    """prob: share of samples augmented; ranges as in the module docstring; prompt_prob: share of
    samples whose prompt is paraphrased; inference_prompt_share: share of json samples asked with
    the inference prompt (:func:`ask_inference_prompt`)."""

    prob: float = 0.0
    jpeg_quality: tuple[int, int] = (60, 95)
    resize_scale: tuple[float, float] = (0.5, 0.9)
    noise_std: tuple[float, float] = (1.0, 8.0)
    prompt_prob: float = 0.0
    inference_prompt_share: float = 0.0


def augment_image(image: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator) -> tuple[np.ndarray, list[dict]]:
    """Maybe degrade ``image`` (H x W x 3 uint8); returns (H x W x 3 uint8, the ops applied).

    The output always has the input's size; the mask needs no change.
    """
    if cfg.prob <= 0 or rng.random() >= cfg.prob:
        return image, []
    h, w = image.shape[:2]
    chosen = [name for name in ("jpeg", "resize", "noise") if rng.random() < 0.5]
    if not chosen:
        chosen = [("jpeg", "resize", "noise")[int(rng.integers(3))]]
    ops: list[dict] = []
    out = image
    for name in chosen:
        if name == "jpeg":
            q = int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1))
            out = apply_perturbation(out, Perturbation("jpeg", q))
            ops.append({"op": "jpeg", "quality": q})
        elif name == "resize":
            f = float(rng.uniform(*cfg.resize_scale))
            small = apply_perturbation(out, Perturbation("resize", f))
            out = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
            ops.append({"op": "resize", "scale": round(f, 4)})
        else:
            std = float(rng.uniform(*cfg.noise_std))
            seed = int(rng.integers(2**31))
            out = apply_perturbation(out, Perturbation("noise", std), seed=seed)
            ops.append({"op": "noise", "std_0_255": round(std, 4)})
    assert out.shape == image.shape and out.dtype == np.uint8
    return out, ops


def paraphrase_prompt(messages: list[dict], template: str, lang: str, cfg: AugmentConfig,
                      rng: np.random.Generator) -> list[dict]:
    """The messages with the user prompt replaced by another paraphrase (with ``prompt_prob``).

    The ``<image>`` placeholders stay in front, the assistant turn is untouched; messages of an
    unknown template/language come back unchanged.
    """
    options = PROMPTS.get(template, {}).get(lang)
    if not options or cfg.prompt_prob <= 0 or rng.random() >= cfg.prompt_prob:
        return messages
    out = []
    for m in messages:
        if m["role"] == "user":
            n_images = m["content"].count(IMAGE_PLACEHOLDER)
            current = m["content"].replace(IMAGE_PLACEHOLDER, "")
            others = [p for p in options if p != current] or options
            m = {**m, "content": IMAGE_PLACEHOLDER * n_images + others[int(rng.integers(len(others)))]}
        out.append(m)
    return out


def ask_inference_prompt(messages: list[dict], template: str, share: float, rng: np.random.Generator) -> list[dict]:
    """The messages of a json-template sample asked with predict's prompt (:data:`INFERENCE_PROMPT`)
    instead of their own paraphrase, with probability ``share`` (one draw from ``rng``).

    Why: the forensic tokens' states see the prompt, and inference always asks the one prompt; on few
    samples a model can tell them apart by their paraphrase instead of their pixels. Other templates
    (answers in another format) come back unchanged, and so does the answer.
    """
    if template != "json" or share <= 0 or rng.random() >= share:
        return messages
    return [{**m, "content": IMAGE_PLACEHOLDER * m["content"].count(IMAGE_PLACEHOLDER) + INFERENCE_PROMPT}
            if m["role"] == "user" else m for m in messages]
