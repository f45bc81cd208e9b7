"""The evaluation report: ``report.html`` plus ``plots/curves.png`` and ``examples/*.png``.

The HTML is one self-standing file with relative links only (opens from disk, no server, no
script, no external asset). It holds the metric tables (image, pixel, authentic, text,
best-threshold figures, per method, per dataset, robustness), a ROC / precision-recall plot, and
a grid of the best and worst examples: the image, its ground truth, and the prediction drawn over
the image (red = predicted forged pixels above the threshold, green outline = ground truth).
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
from PIL import Image

from trainer.evaluation.conventions import CONVENTION_ROWS
from trainer.evaluation.intervals import MIN_N, SMALL_SAMPLE
from trainer.evaluation.metrics import EvalRecord, pooled_pixel_curve
from trainer.evaluation.report_sections import (  # noqa: F401  (sections of the page)
    _fmt,
    _table,
    answers_section,
    baselines_table,
    calibration_section,
)

if TYPE_CHECKING:
    from trainer.evaluation.examples import Example, ExampleKeeper


def overlay(image: np.ndarray, prob: np.ndarray | None, gt: np.ndarray | None = None,
            threshold: float = 0.5, alpha: float = 0.45) -> np.ndarray:
    """Draw a predicted mask (and optionally the ground-truth outline) over an image.

    Args:
        image: HxWx3 uint8 RGB.
        prob: HxW float probabilities in [0, 1] or None; pixels > threshold are tinted red with
            ``alpha``.
        gt: HxW bool ground truth or None; its outline (1 px) is drawn green.
        threshold: decision threshold.
        alpha: tint opacity in [0, 1].

    Returns:
        HxWx3 uint8 RGB.
    """
    out = image.astype(np.float32).copy()
    if prob is not None:
        m = prob > threshold
        out[m] = (1 - alpha) * out[m] + alpha * np.array([255.0, 0.0, 0.0])
    if gt is not None and gt.any():
        g = gt.astype(bool)
        edge = g & ~(_erode(g))
        out[edge] = np.array([0.0, 255.0, 0.0])
    return np.clip(out, 0, 255).astype(np.uint8)


def _erode(m: np.ndarray) -> np.ndarray:
    p = np.pad(m, 1, constant_values=False)
    return p[1:-1, 1:-1] & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]


def _drop(v: Any) -> str:
    """A robustness drop: signed, 3 decimals, and 0.000 (never -0.000) when nothing moved."""
    if v is None:
        return "—"
    return "0.000" if abs(v) < 5e-4 else f"{v:+.3f}"


def _ci(ci: list[float] | None) -> str:
    return "" if not ci else f" <small>(95% CI {ci[0]:.2f}–{ci[1]:.2f})</small>"


def summary_box(metrics: dict[str, Any], absent: Sequence[str] = ()) -> str:
    """The report's first lines, in words: what was tested, whether the model collapsed, how far
    the headline figures can be trusted (n and bootstrap intervals), what is missing."""
    im, px, au = metrics.get("image", {}), metrics.get("pixel", {}), metrics.get("authentic", {})
    ci = metrics.get("ci95", {})
    n_fake, n_real = im.get("n_fake", 0), im.get("n_real", 0)
    lines = [f"<p><b>{n_fake} forged and {n_real} authentic images</b> were scored "
             f"({px.get('n', 0)} forged images with a mask for the pixel figures).</p>"]
    warn = []
    if im.get("collapse"):
        warn.append(html.escape(im["collapse"]))
    if min(n_fake, n_real) < SMALL_SAMPLE:
        warn.append(f"Small test set: fewer than {SMALL_SAMPLE} images in a class, so every figure below is noisy; "
                    "read the 95% bootstrap intervals, not the decimals.")
    if absent:
        warn.append("Methods in the data but absent from this split (not evaluated): " + html.escape(", ".join(absent)) + ".")
    tx = metrics.get("text", {})
    if tx.get("n") and tx.get("verdict_readable_rate") == 0:
        warn.append(f"No answer could be read: none of the {tx['n']} generated answers holds a verdict "
                    f"(JSON-valid rate {_fmt(tx.get('json_valid_rate'))}); the text figures say nothing, and image "
                    "figures come from the cls head alone. A longer --max-new-tokens or more training may help.")
    head = [f"image AUC {_fmt(im.get('auc'))}{_ci(ci.get('image_auc'))}",
            f"balanced accuracy {_fmt(im.get('balanced_accuracy'))}{_ci(ci.get('image_balanced_accuracy'))}",
            f"pixel F1 {_fmt(px.get('f1'))}{_ci(ci.get('pixel_f1'))} (n={px.get('n', 0)})",
            f"false alarms on authentic images {_fmt(au.get('false_alarm_rate'))} (n={au.get('n', 0)}; share of "
            "authentic images with any pixel predicted forged)"]
    lines.append("<p>" + " · ".join(head) + "</p>")
    if warn:
        lines.append("<ul class='warn'>" + "".join(f"<li>{w}</li>" for w in warn) + "</ul>")
    return "<div class='summary'><h2>Summary</h2>" + "".join(lines) + "</div>"


def _section_rows(d: dict[str, Any], keys: Sequence[str]) -> list[tuple[str, Any]]:
    return [(k, d.get(k)) for k in keys if k in d]


IMAGE_KEYS = ("n", "n_fake", "n_real", "threshold", "accuracy", "balanced_accuracy", "f1", "auc", "precision",
              "recall", "tp", "fp", "tn", "fn")
PIXEL_KEYS = ("n", "f1", "iou", "auc", "auc_n", "auc_undefined", "skipped_empty_mask", "no_prediction_or_mask",
              "resolution")
AUTH_KEYS = ("n", "false_alarm_rate", "mean_predicted_area")
TEXT_KEYS = ("n", "json_valid_rate", "verdict_readable_rate", "verdict_agreement_rate", "text_accuracy", "n_compared")


def _breakdown(title: str, d: dict[str, Any]) -> str:
    """One row per method (or dataset): its forged images' figures, each with its n; a figure resting
    on fewer than `MIN_N` images is not shown."""
    if not d:
        return ""
    head = ("<tr><th>name</th><th>forged images</th><th>detected (recall)</th><th>image AUC vs authentic</th>"
            "<th>pixel F1</th><th>pixel IoU</th><th>pixel AUC</th></tr>")
    rows = []
    for name, s in d.items():
        im, px = s.get("image", {}), s.get("pixel", {})
        n, n_px = im.get("n_fake", 0), px.get("n", 0)
        few = f"<td colspan='1' class='few'>n &lt; {MIN_N}</td>"
        cells = [f"<td>{html.escape(str(name))}</td>", f"<td>{n}</td>"]
        cells += [f"<td>{_fmt(im.get(k))}</td>" if n >= MIN_N else few for k in ("recall", "auc")]
        cells += [f"<td>{_fmt(px.get(k))}</td>" if n_px >= MIN_N else few for k in ("f1", "iou", "auc")]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    note = (f"<p class='notes'>Image AUC of a method: its forged images against all authentic images. Figures "
            f"resting on fewer than {MIN_N} forged images are not shown.</p>")
    return f"<section><h3>{html.escape(title)}</h3><table>{head}{''.join(rows)}</table>{note}</section>"


def _dotted(d: dict[str, Any], path: str) -> Any:
    for part in path.split("."):
        d = d.get(part) if isinstance(d, dict) else None  # type: ignore[assignment]
    return d


def conventions_table(metrics: dict[str, Any]) -> str:
    """The anchors' conventions side by side: figure, value, who reports it, definition in a line."""
    cv = metrics.get("conventions")
    if not cv:
        return ""
    head = "<tr><th>metrics.json field</th><th>value</th><th>reported by</th><th>definition</th></tr>"
    rows = "".join(f"<tr><td><code>{html.escape(f)}</code></td><td>{_fmt(_dotted(metrics, f))}</td>"
                   f"<td>{html.escape(who)}</td><td>{html.escape(what)}</td></tr>" for f, who, what in CONVENTION_ROWS)
    band = cv.get("border_band_px") or {}
    notes = {"images": f"{cv.get('n_forged', 0)} forged with a mask, {cv.get('n_authentic', 0)} authentic; border "
                       f"band {band.get('inner')} px inside, {band.get('outer')} px outside the mask edge "
                       f"({cv.get('border_skipped', 0)} image(s) with nothing forged left inside it)",
             **{k: v for k, v in (cv.get("undefined") or {}).items()}}
    text = cv.get("image_from_text") or {}
    if text.get("n_unreadable"):
        notes["image_from_text"] = f"{text['n_unreadable']} unreadable verdict(s) left out"
    items = "".join(f"<li>{html.escape(k)}: {html.escape(str(v))}</li>" for k, v in notes.items())
    return (f"<section><h3>Conventions of the published anchors (definitions: "
            f"<code>trainer/evaluation/conventions.py</code>)</h3><table>{head}{rows}</table>"
            f"<ul class='notes'>{items}</ul></section>")


def _robustness(rob: dict[str, Any] | None) -> str:
    if not rob:
        return ""
    keys = list(rob["clean"].keys())
    head = "<tr><th>condition</th>" + "".join(f"<th>{html.escape(k)}</th>" for k in keys) + "</tr>"
    rows = ["<tr><td>clean</td>" + "".join(f"<td>{_fmt(rob['clean'][k])}</td>" for k in keys) + "</tr>"]
    for name, c in rob["conditions"].items():
        cells = []
        for k in keys:
            v, d = c["figures"][k], c["drop"][k]
            cells.append(f"<td>{_fmt(v)}<br><small>drop {_drop(d)}</small></td>")
        rows.append(f"<tr><td>{html.escape(name)}</td>{''.join(cells)}</tr>")
    units = "".join(f"<li>{html.escape(k)}: {html.escape(v)}</li>" for k, v in rob["units"].items())
    return (f"<section><h3>Robustness (drop = clean minus perturbed)</h3><table>{head}{''.join(rows)}</table>"
            f"<ul class='notes'>{units}</ul></section>")


def plot_curves(records: Sequence[EvalRecord], path: Path) -> bool:
    """Write an image-level ROC, image-level precision-recall and pooled pixel precision-recall plot.

    Returns:
        True when a PNG was written (at least one of the three curves is defined).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import precision_recall_curve, roc_curve

    scored = [r for r in records if r.error is None and r.label is not None and r.score is not None]
    y = np.array([r.label for r in scored], dtype=int)
    s = np.array([r.score for r in scored], dtype=float)
    pix = pooled_pixel_curve(records)
    both = y.size > 0 and 0 < y.sum() < y.size
    if not both and pix is None:
        return False
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2), dpi=90)
    if both:
        from sklearn.metrics import average_precision_score, roc_auc_score

        n_txt = f"n={int(y.sum())} forged, {int(y.size - y.sum())} authentic"
        fpr, tpr, _ = roc_curve(y, s)
        axes[0].plot(fpr, tpr, color="C0", label=f"AUC {roc_auc_score(y, s):.3f} ({n_txt})")
        axes[0].plot([0, 1], [0, 1], ls=":", color="grey", label="chance")
        prec, rec, _ = precision_recall_curve(y, s)
        axes[1].plot(rec, prec, color="C1", label=f"AP {average_precision_score(y, s):.3f} ({n_txt})")
        axes[1].axhline(y.mean(), ls=":", color="grey", label=f"chance (prevalence {y.mean():.2f})")
        for ax in axes[:2]:
            ax.legend(loc="lower right", fontsize=8)
    else:
        for ax in axes[:2]:
            ax.text(0.5, 0.5, "undefined: one class only", ha="center", va="center")
    axes[0].set(title="Image ROC", xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.02))
    axes[1].set(title="Image precision-recall", xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02))
    if pix is not None:
        n_px = sum(1 for r in records if r.error is None and r.label == 1 and r.pixel is not None and r.pixel.f1 is not None)
        axes[2].plot(pix["recall"], pix["precision"], color="C2", marker=".", ms=3, label=f"pooled over n={n_px} forged images")
        axes[2].legend(loc="lower left", fontsize=8)
    else:
        axes[2].text(0.5, 0.5, "no forged image with a mask", ha="center", va="center")
    axes[2].set(title="Pixel precision-recall (pooled)", xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return True


def _example_cells(examples: Sequence[Example], tag: str, out: Path, threshold: float) -> str:
    cells = []
    ex_dir = out / "examples"
    ex_dir.mkdir(parents=True, exist_ok=True)
    for i, ex in enumerate(examples):
        r = ex.record
        img_name = f"examples/{tag}_{i:02d}_image.png"
        ov_name = f"examples/{tag}_{i:02d}_overlay.png"
        gt_name = f"examples/{tag}_{i:02d}_gt.png"
        Image.fromarray(ex.image).save(out / img_name)
        Image.fromarray(overlay(ex.image, ex.pred, ex.gt, threshold)).save(out / ov_name)
        gt = ex.gt if ex.gt is not None else np.zeros(ex.image.shape[:2], bool)
        Image.fromarray(gt.astype(np.uint8) * 255).save(out / gt_name)
        px = r.pixel
        f1 = px.f1 if px is not None else None
        area = px.predicted_area if px is not None else None
        label = {1: "forged", 0: "authentic"}.get(r.label if r.label is not None else -1, "unknown")
        cap = (f"{html.escape(r.id)}<br>{label}"
               + (f" ({html.escape(r.method)})" if r.method and r.label == 1 else "")
               + f"<br>score {_fmt(r.score)} · pixel F1 {_fmt(f1)} · area {_fmt(area)}")
        cells.append(
            "<figure>"
            f"<div class='row'><a href='{img_name}'><img src='{img_name}' alt='image'></a>"
            f"<a href='{gt_name}'><img src='{gt_name}' alt='ground truth'></a>"
            f"<a href='{ov_name}'><img src='{ov_name}' alt='prediction overlay'></a></div>"
            f"<figcaption>{cap}</figcaption></figure>")
    return "".join(cells)


CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:.3em 0}
th,td{border:1px solid #ccc;padding:.2em .5em;text-align:left;font-size:.9em;vertical-align:top}
section{display:inline-block;vertical-align:top;margin:0 1.5em 1em 0}
.notes{font-size:.8em;color:#555}
.grid{display:flex;flex-wrap:wrap;gap:1em}
figure{margin:0;border:1px solid #ddd;padding:.4em}
figure img{max-width:220px;max-height:220px;margin-right:3px}
.summary{border:2px solid #4a7ab5;background:#f4f8fc;padding:.2em 1em;margin-bottom:1em;max-width:60em}
.warn{color:#a11}
.few{color:#888}
figcaption{font-size:.8em}
"""


def _edge(threshold: float | None) -> Any:
    """A best threshold at the grid's edge (0.00 or 0.99) is no finding: say so instead."""
    if threshold is not None and (threshold <= 0.0 or threshold >= 0.99):
        return f"{threshold:.2f}: at the edge of the grid, the scores do not separate the classes"
    return threshold


def _absent_methods(run: dict[str, Any], metrics: dict[str, Any]) -> list[str]:
    """Methods the data sources' shard manifests hold but this evaluation saw no image of."""
    import json

    seen = set(metrics.get("per_method", {}))
    held: set[str] = set()
    for src in run.get("sources", []) or []:
        manifest = Path(src) / "manifest.json"
        if manifest.is_file():
            for split in json.loads(manifest.read_text()).get("splits", {}).values():
                held.update(m for m in split.get("methods", {}) if m != "authentic")
    return sorted(held - seen)


def write_report(out: Path, metrics: dict[str, Any], records: Sequence[EvalRecord], keeper: ExampleKeeper | None,
                 baselines: dict[str, dict[str, Any]] | None = None) -> Path:
    """Write ``out/report.html`` (and its ``plots/`` and ``examples/`` images).

    Args:
        out: the evaluation folder.
        metrics: the content of metrics.json.
        records: the clean run's records.
        keeper: best and worst examples, or None.
        baselines: other detectors' metrics.json on the same images, by name (e.g. the demo's
            classical "ela" and "noise"), shown beside the model's figures; None: no such section.

    Returns:
        The HTML path.
    """
    threshold = float(metrics.get("run", {}).get("threshold", 0.5))
    parts = ["<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>forgery eval report</title>",
             f"<style>{CSS}</style></head><body><h1>forgery eval report</h1>"]
    run = metrics.get("run", {})
    facts = [(k, ", ".join(map(str, v)) if isinstance(v, list) else (v if not isinstance(v, dict) else str(v)))
             for k, v in run.items()]
    facts.append(("records", metrics.get("counts", {}).get("records")))
    facts.append(("per-file errors", metrics.get("counts", {}).get("errors")))
    parts.append(summary_box(metrics, _absent_methods(run, metrics)))
    parts.append(_table(facts, "Run"))
    parts.append("<h2>Metrics</h2><p class='notes'>Positive = strictly greater than the threshold. Pixel figures are "
                 "computed per forged image at its own resolution and averaged over forged images; authentic images "
                 "are reported apart. Definitions: <code>trainer/evaluation/metrics.py</code>.</p>")
    im = metrics.get("image", {})
    parts.append(_table(_section_rows(im, IMAGE_KEYS), "Image level", im.get("undefined")))
    px = metrics.get("pixel", {})
    parts.append(_table(_section_rows(px, PIXEL_KEYS), "Pixel level (forged images)", px.get("undefined")))
    au = metrics.get("authentic", {})
    parts.append(_table(_section_rows(au, AUTH_KEYS), "Authentic images", {
        "false_alarm_rate": "share of authentic images with at least one pixel predicted forged (the mask, not the "
                            "image verdict: that one is the image table's FP / n_real)", **(au.get("undefined") or {})}))
    tx = metrics.get("text", {})
    parts.append(_table(_section_rows(tx, TEXT_KEYS), "Text", tx.get("undefined")))
    ib, pb = metrics.get("image_best_threshold", {}), metrics.get("pixel_best_threshold", {})
    best_rows = [("image: best threshold", _edge(ib.get("threshold"))), ("image: F1 at it", ib.get("f1")),
                 ("image: bal. acc at it", ib.get("balanced_accuracy")),
                 ("pixel: F1, each image at its own best threshold", pb.get("f1_per_image_oracle")),
                 ("pixel: best single threshold", _edge((pb.get("f1_fixed_best") or {}).get("threshold"))),
                 ("pixel: F1 at it", (pb.get("f1_fixed_best") or {}).get("f1"))]
    parts.append(_table(best_rows, "Best-threshold figures (optimistic, not comparable with the fixed-threshold ones)"))
    parts.append(calibration_section(metrics))
    parts.append(baselines_table(metrics, baselines or {}))
    parts.append(conventions_table(metrics))
    parts.append(_breakdown("Per method (forged images of the method + all authentic images)", metrics.get("per_method", {})))
    parts.append(_breakdown("Per dataset", metrics.get("per_dataset", {})))
    parts.append(_robustness(metrics.get("robustness")))
    if plot_curves(records, out / "plots" / "curves.png"):
        parts.append("<h2>Curves</h2><img src='plots/curves.png' alt='ROC and precision-recall curves'>")
    if keeper is not None and (keeper.best or keeper.worst):
        parts.append("<h2>Examples</h2><p class='notes'>Each: image · ground truth · prediction overlay "
                     "(red = predicted forged, green outline = ground truth).</p>")
        if keeper.best:
            parts.append("<h3>Best</h3><div class='grid'>" + _example_cells(keeper.best, "best", out, threshold) + "</div>")
        shown = {ex.record.id for ex in keeper.best}
        worst = [ex for ex in keeper.worst if ex.record.id not in shown]  # few images: one list each
        if worst:
            parts.append("<h3>Worst</h3><div class='grid'>" + _example_cells(worst, "worst", out, threshold) + "</div>")
    parts.append(answers_section(records))
    errors = [r for r in records if r.error is not None]
    if errors:
        items = "".join(f"<li>{html.escape(r.image)}: {html.escape(str(r.error))}</li>" for r in errors[:200])
        more = f"<li>… and {len(errors) - 200} more (predictions.jsonl)</li>" if len(errors) > 200 else ""
        parts.append(f"<h2>Per-file errors</h2><ul class='notes'>{items}{more}</ul>")
    parts.append("</body></html>\n")
    path = out / "report.html"
    path.write_text("".join(parts), encoding="utf-8")
    return path
