"""Sections of report.html that stand on their own: the figures at the calibrated thresholds and the
losses against chance, the classical baselines beside the model, a few generated answers; the cell
formatting and the small tables they share with trainer.evaluation.report."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:
    from trainer.evaluation.metrics import EvalRecord

ANSWERS_SHOWN = 6  # generated answers quoted in the report, forged and authentic alternating


def _fmt(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.3f}"
    return html.escape(str(v))


def _table(rows: list[tuple[str, Any]], title: str, undefined: dict[str, str] | None = None) -> str:
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{_fmt(v)}</td></tr>" for k, v in rows)
    notes = ""
    if undefined:
        notes = "<ul class='notes'>" + "".join(
            f"<li>{html.escape(k)}: {html.escape(str(v))}</li>" for k, v in undefined.items()) + "</ul>"
    return f"<section><h3>{html.escape(title)}</h3><table>{body}</table>{notes}</section>"


def calibration_section(metrics: dict[str, Any]) -> str:
    """The figures at the checkpoint's thresholds calibrated on validation (``image.calibrated``,
    ``pixel.calibrated``) and the training run's losses against their chance values (``learning``);
    empty when metrics.json has neither."""
    ic, pc = metrics.get("image", {}).get("calibrated"), metrics.get("pixel", {}).get("calibrated")
    out = ""
    if ic or pc:
        ic, pc = ic or {}, pc or {}
        rows = [("image threshold", ic.get("threshold")), ("image accuracy", ic.get("accuracy")),
                ("image balanced accuracy", ic.get("balanced_accuracy")), ("image F1", ic.get("f1")),
                ("pixel threshold", pc.get("threshold")), ("pixel F1", pc.get("f1")), ("pixel IoU", pc.get("iou")),
                ("authentic false-alarm rate", pc.get("false_alarm_rate"))]
        out += _table(rows, "At the thresholds calibrated on validation (the fixed-threshold figures above stay the "
                            "comparable ones)", {"calibrated": ic.get("note") or pc.get("note") or "yes"})
    learning = metrics.get("learning")
    if learning:
        rows = [(f"{k}: first -> last (chance)", f"{_fmt(t.get('first'))} -> {_fmt(t.get('last'))} ({_fmt(t.get('chance'))})"
                 + ("  AT CHANCE" if t.get("at_chance") else "")) for k, t in learning.get("terms", {}).items()]
        notes = {f"note {i + 1}": m for i, m in enumerate(learning.get("messages", []))}
        out += _table(rows, f"Training: losses against their chance values ({learning.get('rule', '')})", notes)
    return out


def baselines_table(model: dict[str, Any], baselines: dict[str, dict[str, Any]]) -> str:
    """The model's headline figures beside each baseline's (their metrics.json), on the same images."""
    if not baselines:
        return ""
    keys = [("image", "balanced_accuracy", "balanced accuracy"), ("image", "auc", "image AUC"), ("pixel", "f1", "pixel F1"), ("pixel", "iou", "pixel IoU")]
    head = "<tr><th></th>" + "".join(f"<th>{label}</th>" for _, _, label in keys) + "</tr>"
    rows = [("model", model)] + [(f"classical {name}", m) for name, m in baselines.items()]
    body = "".join("<tr><td>" + html.escape(name) + "</td>"
                   + "".join(f"<td>{_fmt((m.get(section) or {}).get(key))}</td>" for section, key, _ in keys) + "</tr>"
                   for name, m in rows)
    return ("<h2>Classical baselines</h2><p class='notes'>The classical detectors (ELA, noise residual), their "
            "thresholds fitted on the train split, scored on the same images by the same code.</p>"
            f"<table>{head}{body}</table>")


def answers_section(records: Sequence[EvalRecord], n: int = ANSWERS_SHOWN) -> str:
    """A few generated answers as the model wrote them, with the label, score and the text's verdict."""
    with_text = [r for r in records if r.error is None and r.text is not None]
    forged, other = [r for r in with_text if r.label == 1], [r for r in with_text if r.label != 1]
    picked = [r for pair in zip(forged, other) for r in pair] + forged[len(other):] + other[len(forged):]
    rows = []
    for r in picked[:n]:
        label = {1: "forged", 0: "authentic"}.get(r.label if r.label is not None else -1, "unknown")
        text = r.text.strip() if r.text else ""
        shown = html.escape(text[:400] + ("…" if len(text) > 400 else "")) if text else "<i>no explanation generated</i>"
        rows.append(f"<tr><td>{html.escape(r.id)}</td><td>{label}</td><td>{_fmt(r.score)}</td>"
                    f"<td>{html.escape(str(r.text_verdict))}</td><td><code>{shown}</code></td></tr>")
    return "" if not rows else (f"<h2>Generated answers</h2><p class='notes'>{min(n, len(picked))} of {len(with_text)} answers, as "
            "generated (forensic tokens removed); the text's verdict is read by the one verdict reader.</p>"
            "<table><tr><th>image</th><th>label</th><th>score</th><th>text verdict</th><th>answer</th></tr>"
            + "".join(rows) + "</table>")
