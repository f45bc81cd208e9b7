"""`forgery audit`: can a model tell the labels apart without looking at the forgery?

What a forensics researcher checks by hand before training on synthetic data, as one function:

- **Trivial features** against the label, grouped cross-validated ROC AUC (folds by source photo,
  so a photo's samples never sit on both sides), one figure per feature set: encoded bytes, size
  (width, height, aspect), JPEG tables, metadata, per-channel mean/std, Laplacian variance, unique
  colours, channel equality, template, prompt, and all of them together. A set above the
  threshold (0.6 by default) is a shortcut.
- **Sentences per label**: every answer sentence outside the label's own slots (verdict, region,
  evidence, difficulty: `conversations.LABEL_SLOTS`) must be said for both labels; one said for one
  label only, more often than chance explains (`SENTENCE_ALPHA`), is a shortcut.
- **Grey sources**: the share of colour images among samples made from greyscale photos, per label.
- **Templates**: the rate of every template per label.
- **Classical detectors** (`detectors.py`): per method, the mean pixel AUC of error-level analysis
  and the noise-residual map against the masks: how visible the forgeries are.

It reads shards (a `build-shards` folder) or a samples directory (`forgery synth` output; there the
template, prompt and sentence checks do not apply), writes ``audit.json`` and ``audit.html`` (tables
and a plot) into the output folder, and reports failures; the CLI exits 1 on any.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from PIL import Image

from forgery_synth.dataset import conversations as conv
from forgery_synth.dataset.audit_report import write_report
from forgery_synth.dataset.detectors import DETECTORS, pixel_auc
from forgery_synth.dataset.tar_shards import iter_tar_samples, sample_log, shard_paths
from forgery_synth.synthesis.loading import decode_rgb

DEFAULT_THRESHOLD = 0.6


SENTENCE_ALPHA = 0.01
"""A sentence said n times among one label's N samples and never among the other label's M is a
shortcut when chance explains its absence less often than this: (1 - n/N) ** M < SENTENCE_ALPHA."""


GREY_TOLERANCE = 0.05
"""The largest allowed difference between the labels' colour shares among grey-source samples."""


DETECTOR_SIDE = 512
"""Detector maps are computed on images whose long side is at most this (speed; AUC barely moves)."""


FEATURE_SETS = ("bytes", "size", "jpeg_tables", "metadata", "channel_stats", "laplacian", "unique_colours",
                "channel_equality", "template", "prompt")


@dataclass
class AuditSample:
    """One sample as the audit sees it: its encoded image, mask, label and conversation."""

    key: str
    label: int  # 1 forged, 0 authentic
    group: str  # source photo sha256
    method: str
    image_bytes: bytes
    mask: np.ndarray | None  # HxW uint8, nonzero = forged
    template: str | None = None
    prompt: str | None = None
    answer: str | None = None
    source_grey: bool | None = None


@dataclass
class AuditReport:
    """What `audit` found; `failures` empty means no shortcut over the thresholds."""

    summary: dict[str, Any]
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures


@dataclass
class Unreadable:
    """A sample (or shard) the audit could not read: where, and why. The audit goes on without it."""

    where: str
    error: str


_BAD_SAMPLE = (OSError, ValueError, KeyError, TypeError, SyntaxError, Image.DecompressionBombError)


def iter_audit_samples(source: Path) -> Iterator[AuditSample | Unreadable]:
    """Samples of a shards folder (every split) or of a samples directory, one at a time; what cannot
    be read comes back as `Unreadable` (a corrupt image, a missing log, a broken shard)."""
    source = Path(source)
    if (source / "index.jsonl").is_file():
        yield from _samples_dir(source)
        return
    paths = shard_paths(source) if source.is_dir() else [source]
    if not paths:
        raise FileNotFoundError(f"{source}: no shards (*.tar) and no index.jsonl")
    for path in paths:
        try:
            for key, members in iter_tar_samples(path):
                try:
                    yield _shard_sample(key, members)
                except _BAD_SAMPLE as exc:
                    yield Unreadable(f"{path}:{key}", f"{type(exc).__name__}: {exc}")
        except (OSError, tarfile.TarError) as exc:  # a broken shard: its readable samples are kept
            yield Unreadable(str(path), f"{type(exc).__name__}: {exc}")


def _shard_sample(key: str, members: dict[str, bytes]) -> AuditSample:
    record = json.loads(members["json"])
    answer = next((m["content"] for m in record["messages"] if m["role"] == "assistant"), "")
    prompt = next((m["content"] for m in record["messages"] if m["role"] == "user"), "")
    return AuditSample(key=key, label=int(record["label"] == "fake"), group=record["source"]["sha256"],
                       method=record["method"], image_bytes=members.get("png") or members["jpg"],
                       mask=_decode_mask(members["mask.png"]), template=record["template"],
                       prompt=prompt.replace(conv.IMAGE_PLACEHOLDER, ""), answer=answer,
                       source_grey=sample_log(record).get("source", {}).get("grey"))


def _samples_dir(root: Path) -> Iterator[AuditSample | Unreadable]:
    for n, line in enumerate((root / "index.jsonl").read_text(encoding="utf-8").splitlines()):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            log = json.loads((root / entry["log"]).read_text(encoding="utf-8"))
            mask = _decode_mask((root / entry["mask"]).read_bytes()) if entry.get("mask") else None
            yield AuditSample(key=str(entry["id"]), label=int(entry["label"] == "fake"), group=log["source"]["sha256"],
                              method=str(entry.get("method") or log.get("method")), mask=mask,
                              image_bytes=(root / entry["image"]).read_bytes(), source_grey=log["source"].get("grey"))
        except _BAD_SAMPLE as exc:
            yield Unreadable(f"{root / 'index.jsonl'}:{n + 1}", f"{type(exc).__name__}: {exc}")


def _decode_mask(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("L"))


def image_features(data: bytes) -> tuple[dict[str, list[float]], np.ndarray]:
    """Trivial feature sets of one encoded image, and the decoded HxWx3 uint8 RGB pixels."""
    im = Image.open(io.BytesIO(data))
    quant = getattr(im, "quantization", None) or {}
    info = dict(im.info)
    rgb = decode_rgb(data)
    h, w = rgb.shape[:2]
    flat = rgb.reshape(-1, 3).astype(np.int64)
    grey = np.asarray(Image.fromarray(rgb).convert("L"), np.float32)
    lap = np.abs(np.diff(grey, 2, axis=0)).mean() + np.abs(np.diff(grey, 2, axis=1)).mean()
    packed = (flat[:, 0] << 16) | (flat[:, 1] << 8) | flat[:, 2]
    equal = (flat[:, 0] == flat[:, 1]) & (flat[:, 1] == flat[:, 2])
    feats = {
        "bytes": [float(len(data)), len(data) / float(h * w)],
        "size": [float(w), float(h), w / float(h)],
        "jpeg_tables": [float(im.format == "JPEG"), float(sum(quant.get(0, []))), float(sum(quant.get(1, [])))],
        "metadata": [float(len(info)), float("exif" in info), float("icc_profile" in info), float(len(info.get("exif", b"")))],
        "channel_stats": [*flat.mean(0).tolist(), *flat.std(0).tolist()],
        "laplacian": [float(lap)],
        "unique_colours": [float(len(np.unique(packed))), len(np.unique(packed)) / float(h * w)],
        "channel_equality": [float(equal.mean()), float(np.abs(flat[:, 0] - flat[:, 1]).max()),
                             float(np.abs(flat[:, 1] - flat[:, 2]).max())],
    }
    return feats, rgb


def _one_hot(values: list[str | None]) -> np.ndarray:
    names = sorted({v for v in values if v is not None})
    return np.array([[float(v == n) for n in names] for v in values]) if names else np.zeros((len(values), 0))


def grouped_auc(x: np.ndarray, y: np.ndarray, groups: list[str], *, folds: int = 5, seed: int = 0) -> float | None:
    """Out-of-fold ROC AUC of a random forest on `x` (N x F) for `y` (N, 0/1), folds by `groups`.

    None when the data cannot support it (one class, fewer than two groups, or no features).
    """
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedGroupKFold

    n_groups = len(set(groups))
    if x.shape[1] == 0 or len(set(y.tolist())) < 2 or n_groups < 2:
        return None
    k = max(2, min(folds, n_groups))
    oof = np.full(len(y), np.nan)
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    for train, test in splitter.split(x, y, groups):
        if len(set(y[train].tolist())) < 2:
            continue
        clf = RandomForestClassifier(n_estimators=200, min_samples_leaf=2, random_state=seed, n_jobs=1)
        clf.fit(x[train], y[train])
        oof[test] = clf.predict_proba(x[test])[:, 1]
    seen = ~np.isnan(oof)
    if len(set(y[seen].tolist())) < 2:
        return None
    return float(roc_auc_score(y[seen], oof[seen]))


_NUMBER = re.compile(r"\d+(\.\d+)?")


_BOX = re.compile(r"\[[^\]]*\]")


def context_sentences(answer: str) -> list[str]:
    """The sentences of an answer outside the label's own slots, numbers and boxes normalised to '#'."""
    text = answer.replace(conv.CLS_TOKEN, "").replace(conv.MASK_RUN, "")
    out = []
    for sentence in re.split(r"[;；。]|\. ", text):
        s = _NUMBER.sub("#", _BOX.sub("[#]", sentence)).strip(" .")
        if s and not s.lower().startswith(conv.LABEL_SLOTS) and not s.startswith("{"):
            out.append(s)
    return out


def audit(source: Path, out: Path, *, threshold: float = DEFAULT_THRESHOLD, folds: int = 5, seed: int = 0,
          detectors: bool = True) -> AuditReport:
    """Audit `source` (shards or a samples directory) and write ``audit.json`` and ``audit.html`` to `out`."""
    if not 0.5 <= threshold <= 1.0:
        raise ValueError(f"--threshold must be in [0.5, 1], got {threshold:g}")
    rows: dict[str, list[list[float]]] = defaultdict(list)
    labels, groups, templates, prompts, methods = [], [], [], [], []
    sentences: dict[str, Counter] = {"real": Counter(), "fake": Counter()}
    has_text = False
    grey: dict[str, list[bool]] = {"real": [], "fake": []}
    grey_groups: set[str] = set()
    colour_of: list[tuple[str, str, bool]] = []  # (group, label, image has colour)
    det: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    unreadable: list[dict[str, str]] = []
    for s in iter_audit_samples(source):
        if isinstance(s, Unreadable):
            unreadable.append({"where": s.where, "error": s.error})
            continue
        try:
            feats, rgb = image_features(s.image_bytes)
        except _BAD_SAMPLE as exc:
            unreadable.append({"where": s.key, "error": f"{type(exc).__name__}: {exc}"})
            continue
        for name, values in feats.items():
            rows[name].append(values)
        name = "fake" if s.label else "real"
        labels.append(s.label)
        groups.append(s.group)
        templates.append(s.template)
        prompts.append(s.prompt)
        methods.append(s.method)
        colour = feats["channel_equality"][0] < 1.0
        colour_of.append((s.group, name, colour))
        if s.source_grey or (s.source_grey is None and not s.label and not colour):
            grey_groups.add(s.group)
        if s.answer is not None:
            has_text = True
            sentences[name].update(set(context_sentences(s.answer)))
        if detectors and s.label and s.mask is not None and s.mask.any():
            small_rgb, small_mask = _shrink(rgb, s.mask)
            for det_name, fn in DETECTORS.items():
                auc = pixel_auc(fn(small_rgb), small_mask)
                if auc is not None:
                    det[s.method][det_name].append(auc)
    if not labels:
        raise ValueError(f"{source}: no samples")
    y = np.array(labels)
    matrices = {name: np.array(rows[name], float) for name in rows}
    if has_text:
        matrices["template"] = _one_hot(templates)
        matrices["prompt"] = _one_hot(prompts)
    matrices["all"] = np.concatenate([matrices[n] for n in sorted(matrices)], axis=1)
    aucs = {name: grouped_auc(m, y, groups, folds=folds, seed=seed) for name, m in matrices.items()}

    for group, name, colour in colour_of:
        if group in grey_groups:
            grey[name].append(colour)
    grey_share = {k: {"n": len(v), "colour_share": round(float(np.mean(v)), 4) if v else None} for k, v in grey.items()}
    n_label = {"real": int((y == 0).sum()), "fake": int((y == 1).sum())}
    one_label = sorted(
        [{"sentence": s, "label": lab, "count": n, "p_chance": round((1 - n / n_label[lab]) ** n_label[other], 6)}
         for lab, other in (("real", "fake"), ("fake", "real"))
         for s, n in sentences[lab].items() if s not in sentences[other]
         and (1 - n / n_label[lab]) ** n_label[other] < SENTENCE_ALPHA], key=lambda d: (-d["count"], d["sentence"]))
    template_rates = {lab: _rates([t for t, yy in zip(templates, labels) if yy == v])
                      for lab, v in (("real", 0), ("fake", 1))} if has_text else {}

    failures = [f"feature set {name!r} reaches grouped AUC {auc:.3f} > {threshold:g}"
                for name, auc in sorted(aucs.items()) if auc is not None and auc > threshold]
    failures += [f"sentence said for {d['label']} only ({d['count']}x): {d['sentence']!r}" for d in one_label]
    shares = [v["colour_share"] for v in grey_share.values()]
    if None not in shares and abs(shares[0] - shares[1]) > GREY_TOLERANCE:
        failures.append(f"colour among grey-source samples: real {shares[0]:.3f} vs fake {shares[1]:.3f} "
                        f"(tolerance {GREY_TOLERANCE})")
    summary = {
        "source": str(source),
        "n": {"real": int((y == 0).sum()), "fake": int((y == 1).sum())},
        "groups": len(set(groups)),
        "threshold": threshold,
        "folds": folds,
        "feature_auc": {k: None if v is None else round(v, 4) for k, v in sorted(aucs.items())},
        "template_rates": template_rates,
        "sentences_one_label": one_label,
        "sentences_checked": {k: len(v) for k, v in sentences.items()} if has_text else None,
        "grey_sources": {"groups": len(grey_groups), **grey_share},
        "methods": dict(sorted(Counter(methods).items())),
        "detectors": {m: {d: {"pixel_auc": round(float(np.mean(v)), 4), "n": len(v)} for d, v in sorted(per.items())}
                      for m, per in sorted(det.items())},
        "unreadable": unreadable,
        "failures": failures,
        "passed": not failures,
    }
    report = AuditReport(summary, failures)
    write_report(report.summary, Path(out))
    return report


def _shrink(rgb: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    h, w = rgb.shape[:2]
    scale = DETECTOR_SIDE / max(h, w)
    if scale >= 1:
        return rgb, mask
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return (np.asarray(Image.fromarray(rgb).resize(size, Image.BILINEAR)),
            np.asarray(Image.fromarray(mask).resize(size, Image.NEAREST)))


def _rates(values: list[str | None]) -> dict[str, float]:
    c = Counter(v for v in values if v is not None)
    total = sum(c.values()) or 1
    return {k: round(n / total, 4) for k, n in sorted(c.items())}
