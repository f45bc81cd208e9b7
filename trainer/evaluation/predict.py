"""`forgery predict`: verdict, score, regions and explanation for images, from a checkpoint.

Inference per image (``ForensicsModel.generate_answer`` then ``ForensicsModel.score``):
    1. greedy-generate the answer to the training prompt ``PROMPT`` (deterministic decoding:
       ``do_sample=False``, model in eval mode, torch seeded);
    2. put ``<cls>`` and ``<mask_1..32>`` at their designated places in the answer and run one
       forward pass to read the cls head (score = sigmoid of its logit) and the mask decoder
       (HxW probabilities at the image's own size).

A "batch" is a group of images handed over together; the model helper's inference API takes one
image at a time, so images inside a batch run one after the other.

The verdict is the cls head's (`verdict`: "fake" when score > threshold, the threshold read by
`verdict_threshold` only): it is the number eval's image metrics and thresholds are about, and it
exists even when the generated text says nothing readable. The text's own verdict (the one text
reader, `forgery_synth.dataset.answer_tokens.text_verdict`) is reported beside it; when the two
differ, ``disagreement`` says so in words. The thresholds are the checkpoint's, calibrated on
validation, unless ``--threshold`` is given (:func:`decision_thresholds`).

Output per image (one JSON line; see ``predict_images``): ``image``, ``verdict``, ``verdict_from``
("cls score > threshold"), ``score``, ``threshold``, ``pixel_threshold`` (the mask's), ``text_verdict``,
``consistent`` (text verdict == verdict; None when the text has none), ``disagreement`` (None or a
sentence), ``json_valid``, ``regions`` (``{"text": polygons read from the answer, "mask": polygons
traced from the predicted mask}``, each polygon a flat ``[x1, y1, x2, y2, ...]`` list in image pixels;
both empty unless the verdict is "fake"), ``explanation`` (the answer text without special tokens, or
``NO_EXPLANATION``; "no language model" for the LLM-free control), ``mask`` and ``overlay`` (paths of
``<name>.mask.png``, probabilities as 0–255 grey levels, and ``<name>.overlay.png``; written for a
"fake" verdict only, else None). Files go to ``--out``, by default a new folder beside the inputs
(`default_out`), never inside them.
A file that cannot be read gives ``{"image", "error"}`` and the run goes on.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from PIL import Image

from trainer.evaluation.answers import parse_answer
from trainer.evaluation.predictors import ModelOutput
from trainer.evaluation.report import overlay
from trainer.evaluation.samples import IMAGE_EXTS, EvalSample, load_image
from trainer.model.tokens import frame_size

from forgery_synth.dataset.prompts import INFERENCE_PROMPT as PROMPT  # noqa: E402  (the one inference prompt)

NO_EXPLANATION = "no explanation generated"
"""The explanation of an image whose generated answer is empty."""


@dataclass
class PredictOptions:
    """Options of inference.

    Attributes:
        threshold: verdict threshold on the score in [0, 1] (positive is strictly greater).
        pixel_threshold: mask threshold in [0, 1] (None: ``threshold``); see :func:`decision_thresholds`.
        device: "auto" (CUDA when available), "cpu", "cuda" or "cuda:N".
        batch_size: images handed to the model together.
        max_new_tokens: longest generated answer.
        prompt: the user prompt (default ``PROMPT``).
        use_text_box: give the mask decoder the bounding box of the answer's polygons as a box
            prompt (SAM decoder only).
        seed: torch seed set before each image (decoding is greedy; the seed only pins anything
            random a backbone may still do).
    """

    threshold: float = 0.5
    pixel_threshold: float | None = None
    device: str = "auto"
    batch_size: int = 2
    max_new_tokens: int = 256
    prompt: str = PROMPT
    use_text_box: bool = False
    seed: int = 0


    @property
    def mask_threshold(self) -> float:
        return self.threshold if self.pixel_threshold is None else self.pixel_threshold


def decision_thresholds(checkpoint: Path, explicit: float | None = None) -> dict[str, Any]:
    """The thresholds ``forgery predict`` decides with: ``explicit`` (``--threshold``) for the verdict and
    the mask alike when given, else the checkpoint's calibrated on validation
    (trainer.model.checkpoint.load_thresholds: 0.5 / 0.5 when it has none). ``{"image", "pixel",
    "calibrated", "source"}``, source "--threshold", "checkpoint" or "default". ValueError: unreadable file."""
    from trainer.model.checkpoint import load_thresholds

    if explicit is not None:
        return {"image": explicit, "pixel": explicit, "calibrated": False, "source": "--threshold"}
    th = load_thresholds(checkpoint)
    return {"image": float(th["image"]), "pixel": float(th["pixel"]), "calibrated": bool(th["calibrated"]),
            "source": "checkpoint" if th["calibrated"] else "default"}
def verdict_threshold(opt: PredictOptions) -> float:
    """The cls threshold of the verdict (and of the mask's regions): the one place predict reads it."""
    return opt.threshold


def verdict(score: float, threshold: float) -> str:
    """The verdict of a cls score in [0, 1]: "fake" when strictly above `threshold`, else "real"."""
    return "fake" if score > threshold else "real"


def disagreement(text_verdict: str | None, score: float, threshold: float) -> str | None:
    """A sentence naming the disagreement of the answer's verdict and the score's, or None."""
    head = verdict(score, threshold)
    if text_verdict is None or text_verdict == head:
        return None
    sign = ">" if head == "fake" else "<="
    return (f"the answer says {text_verdict}, the cls score {score:.3f} {sign} {threshold:g} says {head}; "
            f"the verdict is the score's")


def default_out(inputs: Sequence[Path]) -> Path:
    """A new folder beside the inputs, never inside them: ``<P>-predictions`` (then ``-2``, ``-3`` ...)
    next to P, the deepest folder holding every input (a folder input, or a file's parent).

    Raises:
        ValueError: the inputs share only the filesystem root (give --out).
    """
    roots = [str(p.resolve() if p.is_dir() else p.resolve().parent) for p in inputs]
    base = Path(os.path.commonpath(roots))
    if base.parent == base:
        raise ValueError("the inputs share no folder but the filesystem root: give --out DIR")
    cand, n = base.parent / f"{base.name}-predictions", 2
    while cand.exists():
        cand, n = base.parent / f"{base.name}-predictions-{n}", n + 1
    return cand


def resolve_device(name: str) -> torch.device:
    """"auto" -> cuda when available else cpu; otherwise ``torch.device(name)``.

    Raises:
        ValueError: a CUDA device asked for on a machine without one, or a bad name.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as e:
        raise ValueError(f"bad device {name!r}: {e}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but CUDA is not available")
    return dev


def mask_polygons(prob: np.ndarray, threshold: float) -> list[list[int]]:
    """Polygons (flat int lists, largest region first) of the pixels of ``prob`` (HxW float in
    [0, 1]) above ``threshold``."""
    from forgery_synth.synthesis.polygons import mask_to_polygons

    return mask_to_polygons((prob > threshold).astype(np.uint8))


class ModelPredictor:
    """Runs a ForensicsModel on images; usable by ``forgery eval`` (it implements ``Predictor``)."""

    supports_perturbation = True

    def __init__(self, model: Any, processor: Any, opt: PredictOptions | None = None) -> None:
        """Wrap a built or loaded model and its processor (the model is put in eval mode)."""
        self.model = model
        self.processor = processor
        self.opt = opt or PredictOptions()
        self.model.eval()

    @torch.no_grad()
    def run(self, image: np.ndarray) -> ModelOutput:
        """Predict one image (HxWx3 uint8 RGB); see :meth:`run_batch`."""
        return self.run_batch([image])[0]

    @torch.no_grad()
    def run_batch(self, images: Sequence[np.ndarray]) -> list[ModelOutput]:
        """Predict several images: one batched generate call, then one batched forward for the heads
        per distinct image size (so each mask is decoded at its own image's size, whatever the batch).

        Args:
            images: HxWx3 uint8 RGB each, any sizes.

        Returns:
            Per image: score = P(fake) in [0, 1] from the cls head, mask HxW float32 in [0, 1]
            (None when the model gave none), text = the answer without special tokens, and in
            ``extra``: ``text_polygons``, ``mask_polygons``, ``consistent``.
        """
        from forgery_synth.dataset.answer_tokens import strip_forensic_tokens

        torch.manual_seed(self.opt.seed)
        if self.model.config.language_model == "none":  # the LLM-free control: no answer text to read
            return self._run_llm_free(images)
        answers = self.model.generate_answers(self.processor, [Image.fromarray(im) for im in images], self.opt.prompt,
                                              max_new_tokens=self.opt.max_new_tokens)
        texts = [strip_forensic_tokens(a).strip() for a in answers]
        parsed = [parse_answer(t) for t in texts]
        # The answer's polygons are in the frame the model saw; map them to the image's pixels.
        polygons = []
        for image, p in zip(images, parsed):
            h, w = image.shape[:2]
            fh, fw = frame_size(self.processor, h, w)
            polygons.append([[(x * w / fw, y * h / fh) for x, y in poly] for poly in p.polygons])
        boxes = [None] * len(images)
        if self.opt.use_text_box:
            for i, polys in enumerate(polygons):
                if polys:
                    xs = [x for poly in polys for x, _ in poly]
                    ys = [y for poly in polys for _, y in poly]
                    boxes[i] = [min(xs), min(ys), max(xs), max(ys)]
        # One heads pass per image size: score_batch decodes a whole call's masks at one size (the
        # largest) and resizes, so an image's mask would otherwise depend on the images batched with it.
        results: list[Any] = [None] * len(images)
        by_size: dict[tuple[int, ...], list[int]] = {}
        for i, image in enumerate(images):
            by_size.setdefault(image.shape[:2], []).append(i)
        for idx in by_size.values():
            scored = self.model.score_batch(self.processor, [images[i] for i in idx], self.opt.prompt,
                                            [texts[i] for i in idx], boxes=[boxes[i] for i in idx])
            for i, res in zip(idx, scored):
                results[i] = res
        outs = []
        for image, text, p, polys, res in zip(images, texts, parsed, polygons, results):
            score = float(res.cls_prob)
            mask = None if res.mask_prob is None else np.asarray(res.mask_prob, dtype=np.float32)
            if mask is not None and mask.shape != image.shape[:2]:
                from trainer.evaluation.perturb import resize_probabilities

                mask = resize_probabilities(mask, image.shape[0], image.shape[1])
            threshold = verdict_threshold(self.opt)
            consistent = None if p.verdict is None else p.verdict == verdict(score, threshold)
            extra = {
                "text_polygons": [[round(v, 2) for pt in poly for v in pt] for poly in polys],
                "mask_polygons": mask_polygons(mask, self.opt.mask_threshold) if mask is not None else [],
                "consistent": consistent,
            }
            outs.append(ModelOutput(score=score, mask=mask, text=text, score_source="cls", extra=extra))
        return outs

    def _run_llm_free(self, images: Sequence[np.ndarray]) -> list[ModelOutput]:
        """:meth:`run_batch` of an LLM-free model (trainer.model.llm_free): the heads only, per image size;
        no text (eval's text figures are n/a), the template answer and "no language model" in ``extra``."""
        from trainer.model.llm_free import NO_LANGUAGE_MODEL

        outs: list[Any] = [None] * len(images)
        by_size: dict[tuple[int, ...], list[int]] = {}
        for i, image in enumerate(images):
            by_size.setdefault(image.shape[:2], []).append(i)
        for idx in by_size.values():
            for i, res in zip(idx, self.model.score_batch(self.processor, [images[i] for i in idx], self.opt.prompt,
                                                          [""] * len(idx))):
                mask = None if res.mask_prob is None else np.asarray(res.mask_prob, dtype=np.float32)
                extra = {"text_polygons": [], "consistent": None, "answer": res.answer, "explanation": NO_LANGUAGE_MODEL,
                         "mask_polygons": mask_polygons(mask, self.opt.threshold) if mask is not None else []}
                outs[i] = ModelOutput(score=float(res.cls_prob), mask=mask, text=None, score_source="cls", extra=extra)
        return outs

    def __call__(self, samples: Sequence[EvalSample], images: Sequence[np.ndarray]) -> list[ModelOutput | str]:
        """``Predictor`` protocol: one output (or error string) per image, in order.

        Images go through the model `batch_size` at a time; if a batch fails, its images are
        retried one by one so only the bad one reports an error.
        """
        outs: list[ModelOutput | str] = []
        size = max(1, self.opt.batch_size)
        for start in range(0, len(images), size):
            chunk = list(images[start : start + size])
            try:
                outs.extend(self.run_batch(chunk))
                continue
            except Exception:  # noqa: BLE001 - find the bad image below
                pass
            for img in chunk:
                try:
                    outs.append(self.run(img))
                except Exception as e:  # noqa: BLE001 - one bad image must not end the run
                    outs.append(f"inference failed: {type(e).__name__}: {e}")
        return outs


def load_predictor(checkpoint: Path, opt: PredictOptions | None = None) -> ModelPredictor:
    """Load a checkpoint written by ``trainer.model.checkpoint.save_checkpoint`` onto the chosen device.

    Raises:
        OSError: missing or unreadable checkpoint; ValueError: invalid checkpoint or device.
    """
    from trainer.model.checkpoint import CONFIG_NAME, load_checkpoint

    o = opt or PredictOptions()
    device = resolve_device(o.device)
    ckpt = Path(checkpoint)
    if not ckpt.exists():
        raise FileNotFoundError(f"{ckpt} does not exist")
    if not (ckpt / CONFIG_NAME).is_file():
        raise ValueError(f"{ckpt} is not a checkpoint folder (no {CONFIG_NAME})")
    try:
        model, processor = load_checkpoint(ckpt, device=device)
    except KeyError as e:
        raise ValueError(f"incomplete checkpoint: missing {e}") from None
    model.to(device)
    return ModelPredictor(model, processor, o)


def collect_images(inputs: Sequence[Path]) -> tuple[list[Path], list[Path]]:
    """Image files named or found (recursively, sorted) under folders; and inputs that do not exist.

    Files given by name are kept whatever their extension (so a bad file gets its error line);
    inside folders only known image extensions are taken.
    """
    paths: list[Path] = []
    missing: list[Path] = []
    for p in inputs:
        if p.is_dir():
            paths.extend(sorted(q for q in p.rglob("*") if q.is_file() and q.suffix.lower() in IMAGE_EXTS
                                and not any(part.startswith(".") for part in q.relative_to(p).parts)))
        elif p.is_file():
            paths.append(p)
        else:
            missing.append(p)
    seen: set[Path] = set()
    unique = [p for p in paths if not (p.resolve() in seen or seen.add(p.resolve()))]  # type: ignore[func-returns-value]
    return unique, missing


def _out_stem(path: Path, out: Path | None, used: set[Path]) -> Path:
    base = (out if out is not None else path.parent) / re.sub(r"[^\w.-]+", "_", path.stem)
    cand, n = base, 1
    while cand in used:
        cand = base.with_name(f"{base.name}_{n}")
        n += 1
    used.add(cand)
    return cand


def predict_images(paths: Sequence[Path], predictor: ModelPredictor, out: Path | None,
                   opt: PredictOptions | None = None) -> Iterator[dict[str, Any]]:
    """Predict each image and write its ``<name>.mask.png`` and ``<name>.overlay.png``.

    Args:
        paths: image files.
        predictor: a loaded model.
        out: folder for the mask and overlay files, made when the first is written (None:
            `default_out`, beside the inputs). Name clashes get ``_1``, ``_2`` ... suffixes.
        opt: threshold etc. (default: the predictor's).

    Yields:
        One JSON-able dict per image, in order (see the module docstring); ``{"image", "error"}``
        for files that cannot be read or run.
    """
    o = opt or predictor.opt
    out = default_out(paths) if out is None else out
    used: set[Path] = set()
    bs = max(1, o.batch_size)
    for i in range(0, len(paths), bs):
        chunk = list(paths[i:i + bs])
        images: list[np.ndarray | None] = []
        errors: dict[int, str] = {}
        for j, p in enumerate(chunk):
            try:
                images.append(load_image(p))
            except Exception as e:  # noqa: BLE001 - per-file error
                images.append(None)
                errors[j] = f"cannot read image: {type(e).__name__}: {e}"
        good = [(j, im) for j, im in enumerate(images) if im is not None]
        outs = predictor([EvalSample(id=chunk[j].stem, ref=str(chunk[j]), label=None, method=None, dataset="")
                          for j, _ in good], [im for _, im in good])
        results: dict[int, ModelOutput | str] = {j: r for (j, _), r in zip(good, outs)}
        for j, p in enumerate(chunk):
            if j in errors:
                yield {"image": str(p), "error": errors[j]}
                continue
            r = results[j]
            if isinstance(r, str):
                yield {"image": str(p), "error": r}
                continue
            img = images[j]
            assert img is not None
            yield _write_outputs(p, img, r, o, _out_stem(p, out, used))


def _write_outputs(path: Path, image: np.ndarray, r: ModelOutput, o: PredictOptions, stem: Path) -> dict[str, Any]:
    threshold = verdict_threshold(o)
    score = float(r.score) if r.score is not None else None
    said = None if score is None else verdict(score, threshold)
    line: dict[str, Any] = {"image": str(path), "verdict": said, "verdict_from": "cls score > threshold",
                            "score": score, "threshold": threshold, "pixel_threshold": o.mask_threshold}
    parsed = parse_answer(r.text) if r.text is not None else None
    line["text_verdict"] = parsed.verdict if parsed else None
    line["consistent"] = r.extra.get("consistent")
    line["disagreement"] = None if score is None else disagreement(line["text_verdict"], score, threshold)
    line["json_valid"] = parsed.json_valid if parsed else None
    forged = said == "fake"
    line["regions"] = {"text": r.extra.get("text_polygons", []) if forged else [],
                       "mask": r.extra.get("mask_polygons", []) if forged else []}
    line["explanation"] = (r.text or "").strip() or r.extra.get("explanation") or NO_EXPLANATION
    line["mask"] = line["overlay"] = None
    if forged and r.mask is not None:
        stem.parent.mkdir(parents=True, exist_ok=True)
        mask_path = stem.with_name(stem.name + ".mask.png")
        ov_path = stem.with_name(stem.name + ".overlay.png")
        _save_png(mask_path, np.rint(np.clip(r.mask, 0, 1) * 255).astype(np.uint8))
        _save_png(ov_path, overlay(image, r.mask, None, o.mask_threshold))
        line["mask"], line["overlay"] = str(mask_path), str(ov_path)
    return line


def _save_png(path: Path, array: np.ndarray) -> None:
    """Write atomically: a temporary name beside `path`, then rename."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    Image.fromarray(array).save(tmp, format="PNG")
    os.replace(tmp, path)
