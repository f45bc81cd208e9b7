"""The ablation's table and report: ``table.csv``, ``table.md``, ``report.html`` in the grid's ``--out``.

Per cell and headline figure (``HEADLINE``, as ``forgery eval`` defines them in its metrics.json): the
mean and standard deviation (ddof 1; 0 with one seed) over seeds, and the difference to the base cell
(the grid's first cell): ``mean over seeds of (cell - base)`` on the images both scored, with a 95%
paired bootstrap interval over seeds x images (``trainer.evaluation.intervals.paired_bootstrap_diff``).
The report adds one bar plot per figure (mean, error bar = std), embedded as PNG.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from trainer.ablation.grid import Grid
from trainer.evaluation.intervals import paired_bootstrap_diff

HEADLINE: tuple[tuple[str, str], ...] = (("image", "auc"), ("image", "balanced_accuracy"), ("pixel", "f1"),
                                         ("pixel", "iou"))
"""The figures tabulated: (metrics.json section, key)."""


def _auc(y: np.ndarray, v: np.ndarray) -> float:
    """ROC AUC as sklearn's ``roc_auc_score`` (ties count half), by the rank sum (Mann-Whitney U): the
    bootstrap calls it thousands of times, where sklearn's checks cost milliseconds a call."""
    from scipy.stats import rankdata

    ok = np.isfinite(v)
    y, v = y[ok], v[ok]
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if not n_pos or not n_neg:
        return math.nan
    return float((rankdata(v)[y == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _balanced(threshold: float) -> Callable[[np.ndarray, np.ndarray], float]:
    def stat(y: np.ndarray, v: np.ndarray) -> float:
        ok = np.isfinite(v)
        y, pred = y[ok], v[ok] > threshold
        recalls = [float((pred[y == 1]).mean()) if (y == 1).any() else None,
                   float((~pred[y == 0]).mean()) if (y == 0).any() else None]
        recalls = [r for r in recalls if r is not None]
        return float(np.mean(recalls)) if recalls else math.nan
    return stat


def _forged_mean(y: np.ndarray, v: np.ndarray) -> float:
    v = v[(y == 1) & np.isfinite(v)]
    return float(v.mean()) if v.size else math.nan


@dataclass
class SeedResult:
    """One cell's evaluation at one seed: metrics.json and, per image id, (label, score, pixel f1, pixel iou)."""

    metrics: dict[str, Any]
    images: dict[str, tuple[int, float, float, float]]


def read_eval(eval_dir: Path) -> SeedResult:
    """A cell's ``eval/`` folder (written by ``forgery eval``'s ``run_evaluation``)."""
    metrics = json.loads((eval_dir / "metrics.json").read_text())
    images: dict[str, tuple[int, float, float, float]] = {}
    for line in (eval_dir / "predictions.jsonl").read_text().splitlines():
        r = json.loads(line) if line.strip() else {}
        if not r or r.get("error") is not None or r.get("label") is None:
            continue
        px = r.get("pixel") or {}

        def num(x: Any) -> float:
            return math.nan if x is None else float(x)

        images[r["id"]] = (int(r["label"]), num(r.get("score")), num(px.get("f1")), num(px.get("iou")))
    return SeedResult(metrics, images)


def _arrays(runs: list[SeedResult], ids: list[str], column: int) -> np.ndarray:
    return np.array([[r.images[i][column] for i in ids] for r in runs], float)


def build_rows(grid: Grid, out: Path, resamples: int = 1000) -> list[dict[str, Any]]:
    """One row per cell: its axis values, seeds evaluated, and per figure ``mean``, ``std``, ``diff``,
    ``diff_lo``, ``diff_hi`` (None where undefined; diff None for the base cell itself)."""
    results = {c.id: {s: read_eval(c.directory(out, s) / "eval") for s in grid.seeds
                      if (c.directory(out, s) / "eval" / "metrics.json").is_file()} for c in grid.cells}
    base = results[grid.base.id]
    stats = {("image", "auc"): (1, _auc), ("image", "balanced_accuracy"): (1, _balanced(grid.eval.threshold)),
             ("pixel", "f1"): (2, _forged_mean), ("pixel", "iou"): (3, _forged_mean)}
    rows = []
    for cell in grid.cells:
        mine = results[cell.id]
        row: dict[str, Any] = {"cell": cell.id, **{k: v for k, v in cell.values.items()}, "seeds": len(mine)}
        paired = [s for s in grid.seeds if s in mine and s in base]
        ids = sorted(set.intersection(*(set(mine[s].images) & set(base[s].images) for s in paired))) if paired else []
        for sec, key in HEADLINE:
            name = f"{sec}.{key}"
            values = [mine[s].metrics.get(sec, {}).get(key) for s in mine]
            values = [float(v) for v in values if v is not None]
            row[f"{name}.mean"] = round(float(np.mean(values)), 4) if values else None
            row[f"{name}.std"] = round(float(np.std(values, ddof=1)), 4) if len(values) > 1 else (0.0 if values else None)
            row[f"{name}.diff"] = row[f"{name}.diff_lo"] = row[f"{name}.diff_hi"] = None
            if cell.id == grid.base.id or not ids:
                continue
            column, stat = stats[(sec, key)]
            labels = np.array([base[paired[0]].images[i][0] for i in ids], int)
            a = _arrays([mine[s] for s in paired], ids, column)
            b = _arrays([base[s] for s in paired], ids, column)
            diff = float(np.mean([stat(labels, a[k]) - stat(labels, b[k]) for k in range(len(paired))]))
            if math.isfinite(diff):
                row[f"{name}.diff"] = round(diff, 4)
                ci = paired_bootstrap_diff(labels, a, b, stat, resamples=resamples)
                if ci is not None:
                    row[f"{name}.diff_lo"], row[f"{name}.diff_hi"] = ci
        rows.append(row)
    return rows


def _f(v: Any, signed: bool = False) -> str:
    return "n/a" if v is None else (f"{v:+.3f}" if signed else f"{v:.3f}")


def markdown(grid: Grid, rows: list[dict[str, Any]]) -> str:
    """The table as Markdown: per figure ``mean ± std`` and ``Δ [lo, hi]`` against the base cell."""
    axes = list(grid.axes)
    head = ["cell", *axes, "seeds"]
    for sec, key in HEADLINE:
        head += [f"{sec} {key}", "Δ base [95% CI]"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["cell"] + (" (base)" if r["cell"] == grid.base.id else ""),
                 *(_axis_value(r.get(a)) for a in axes), str(r["seeds"])]
        for sec, key in HEADLINE:
            n = f"{sec}.{key}"
            cells.append(f"{_f(r[n + '.mean'])} ± {_f(r[n + '.std'])}" if r[n + ".mean"] is not None else "n/a")
            if r[n + ".diff"] is None:
                cells.append("—" if r["cell"] == grid.base.id else "n/a")
            else:
                ci = f" [{_f(r[n + '.diff_lo'], True)}, {_f(r[n + '.diff_hi'], True)}]" if r[n + ".diff_lo"] is not None else ""
                cells.append(_f(r[n + ".diff"], True) + ci)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _axis_value(v: Any) -> str:
    return ",".join(str(x) for x in v) if isinstance(v, (list, tuple)) else str(v)


def _bar_plot(grid: Grid, rows: list[dict[str, Any]], name: str) -> str:
    """A PNG (base64) of the figure ``name`` per cell: bars at the mean, error bars at the std."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [r["cell"] for r in rows]
    means = [r[f"{name}.mean"] if r[f"{name}.mean"] is not None else 0.0 for r in rows]
    stds = [r[f"{name}.std"] or 0.0 for r in rows]
    fig, ax = plt.subplots(figsize=(max(4.0, 0.9 * len(rows) + 2), 3.2), dpi=90)
    colors = ["#555555" if r["cell"] == grid.base.id else "#4C72B0" for r in rows]
    ax.bar(range(len(rows)), means, yerr=stds, color=colors, capsize=4)
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=7)
    ax.set_ylabel(name)
    ax.set_title(f"{name}: mean ± std over seeds (grey: base)", fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def write_table(grid: Grid, out: Path, resamples: int = 1000) -> dict[str, Path]:
    """Write ``table.csv``, ``table.md`` and ``report.html`` into ``out`` (each atomically); returns their paths."""
    rows = build_rows(grid, out, resamples)
    columns = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns)
    writer.writeheader()
    for r in rows:
        writer.writerow({k: _axis_value(v) if isinstance(v, (list, tuple)) else ("" if v is None else v)
                         for k, v in r.items()})
    md = markdown(grid, rows)
    plots = "".join(f'<h2>{html.escape(f"{s}.{k}")}</h2><img alt="{s}.{k}" src="data:image/png;base64,'
                    f'{_bar_plot(grid, rows, f"{s}.{k}")}">' for s, k in HEADLINE)
    table_html = _html_table(md)
    page = (f"<!doctype html><meta charset='utf-8'><title>forgery ablate</title>"
            f"<style>body{{font-family:sans-serif;margin:2em}}td,th{{border:1px solid #ccc;padding:3px 6px;"
            f"font-size:13px}}table{{border-collapse:collapse}}</style>"
            f"<h1>Ablation: {html.escape(grid.source)}</h1><p>{len(grid.cells)} cells ({html.escape(grid.mode)}), "
            f"seeds {html.escape(str(grid.seeds))}, evaluated on split {html.escape(grid.eval.split)}. "
            f"Δ base: mean over seeds of (cell − base) on the images both scored; 95% paired bootstrap "
            f"interval over seeds × images.</p>{table_html}{plots}")
    paths = {"csv": out / "table.csv", "md": out / "table.md", "html": out / "report.html"}
    for kind, text in (("csv", buf.getvalue()), ("md", md), ("html", page)):
        tmp = paths[kind].with_name(paths[kind].name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(paths[kind])
    return paths


def _html_table(md: str) -> str:
    lines = [ln for ln in md.splitlines() if ln.startswith("|") and not ln.startswith("|---")]
    rows = [[html.escape(c.strip()) for c in ln.strip("|").split("|")] for ln in lines]
    head = "".join(f"<th>{c}</th>" for c in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows[1:])
    return f"<table><tr>{head}</tr>{body}</table>"
