"""Did the run learn? Each watched loss term at the end of training against its chance value.

A term's chance value is its loss for the best constant predictor on the same samples
(trainer.training.losses: ``cls_chance``, ``mask_bce_chance``, ``mask_dice_chance``), logged beside it
in ``RUN/metrics.jsonl``. At the end of a run, :func:`learning_summary` compares the mean loss of the
last 10% of the logged steps (at least 5) with the mean chance value there: a loss above 95% of its
chance value has not left chance (the head learned nothing a constant does not know). The summary
goes to ``RUN/learning.json`` and into the run's checkpoints ``best/`` and ``last/`` (written
atomically), where ``forgery eval`` reads it (:func:`load_learning`) for metrics.json and report.html.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

LEARNING_FILE = "learning.json"
WATCHED = {"cls": "the cls head", "mask_bce": "the mask head and decoder", "mask_dice": "the mask head and decoder"}
"""The terms judged, and what learns through each."""
WINDOW_SHARE, MIN_WINDOW, TOLERANCE = 0.1, 5, 0.05
"""The window: the last 10% of the logged steps, at least 5; "at chance": loss >= (1 - 5%) x chance."""


def learning_summary(records: list[dict[str, Any]], head_lr: float) -> dict[str, Any]:
    """The summary of a run's ``records`` (metrics.jsonl lines; skipped steps left out).

    Returns ``{"steps", "window", "rule", "terms": {term: {"first", "last", "chance", "ratio",
    "at_chance"}}, "messages": [...]}``: ``first``/``last`` the term's mean over the first/last window,
    ``chance`` its mean chance value over the last window, ``ratio`` last / chance. A term without a
    positive chance value (e.g. Dice on a run without forged masks) is left out; with fewer than 5
    logged steps nothing is judged (``"messages"`` says so).
    """
    rows = [r for r in records if not r.get("skipped")]
    window = min(len(rows), max(MIN_WINDOW, math.ceil(WINDOW_SHARE * len(rows))))
    out: dict[str, Any] = {"steps": len(rows), "window": window, "terms": {}, "messages": [],
                           "rule": f"mean loss of the last {WINDOW_SHARE:.0%} of the logged steps (at least "
                                   f"{MIN_WINDOW}) >= {1 - TOLERANCE:.2f} x its mean chance value: at chance"}
    if len(rows) < MIN_WINDOW:
        out["messages"].append(f"{len(rows)} logged step(s): too few to judge whether the losses left chance")
        return out

    def mean(part: list[dict[str, Any]], key: str) -> float | None:
        vals = [r[key] for r in part if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
        return sum(vals) / len(vals) if vals else None

    head, tail = rows[:window], rows[-window:]
    for term, what in WATCHED.items():
        last, chance = mean(tail, term), mean(tail, f"{term}_chance")
        if last is None or not chance:
            continue
        ratio = last / chance
        at_chance = ratio >= 1 - TOLERANCE
        out["terms"][term] = {"first": mean(head, term), "last": last, "chance": chance, "ratio": ratio,
                              "at_chance": at_chance}
        if at_chance:
            where = "at" if ratio <= 1 + TOLERANCE else "above"
            out["messages"].append(f"{term} loss stayed {where} its chance value ({last:.4g} vs chance {chance:.4g}): "
                                   f"{what} did not learn; try --head-lr {3 * head_lr:.3g} (this run: {head_lr:.3g})")
    return out


def write_learning(summary: dict[str, Any], folder: str | Path) -> Path:
    """Write ``summary`` to ``folder/learning.json`` atomically (a temporary name, then a rename)."""
    path = Path(folder) / LEARNING_FILE
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(summary, indent=2) + "\n")
    os.replace(tmp, path)
    return path


def load_learning(checkpoint: str | Path) -> dict[str, Any] | None:
    """The learning summary a checkpoint holds (None when it has none: written before, or not by a run).
    ValueError naming the file when it is not a JSON object."""
    path = Path(checkpoint) / LEARNING_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict) or "terms" not in data:
        raise ValueError(f"{path}: not a learning summary (no 'terms')")
    return data


def checkpoint_eval_options(checkpoint: str | Path) -> dict[str, Any]:
    """What an evaluation of ``checkpoint`` reports beside its fixed-threshold figures, as keyword
    arguments of trainer.evaluation.evaluate.EvalOptions: ``calibrated`` (its thresholds.json, or
    0.5/0.5 with ``calibrated: False``) and ``learning`` (its learning.json, or None). The one reader
    for ``forgery eval``, the demo, ``forgery ablate`` and the benchmarks. ValueError: unreadable."""
    from trainer.model.checkpoint import load_thresholds

    return {"calibrated": load_thresholds(checkpoint), "learning": load_learning(checkpoint)}
