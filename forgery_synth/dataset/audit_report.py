"""The audit's files: `audit.json`, `audit.png` (feature AUCs against the threshold) and `audit.html`."""

from __future__ import annotations

import html
import io
import json
from pathlib import Path
from typing import Any

from forgery_synth.dataset.detectors import DETECTORS
from forgery_synth.synthesis.engine import write_atomic


def write_report(s: dict[str, Any], out: Path) -> None:
    """``audit.json``, ``audit.png`` (feature AUCs against the threshold) and ``audit.html``."""
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "audit.json", (json.dumps(s, indent=2, ensure_ascii=False) + "\n").encode())
    _plot(s, out / "audit.png")
    esc = html.escape
    verdict = ("<p class=ok>No shortcut found: every trivial feature set is at or below the threshold, "
               "and every context sentence is said for both labels.</p>" if not s["failures"] else
               "<p class=bad>Shortcuts found:</p><ul>" + "".join(f"<li>{esc(f)}</li>" for f in s["failures"]) + "</ul>")
    auc_rows = "".join(f"<tr><td>{esc(k)}</td><td>{'—' if v is None else f'{v:.3f}'}</td>"
                       f"<td>{'' if v is None or v <= s['threshold'] else 'above threshold'}</td></tr>"
                       for k, v in s["feature_auc"].items())
    tmpl = s["template_rates"]
    tnames = sorted({t for r in tmpl.values() for t in r})
    t_rows = "".join(f"<tr><td>{esc(t)}</td>" + "".join(f"<td>{tmpl[lab].get(t, 0):.3f}</td>" for lab in ("real", "fake"))
                     + "</tr>" for t in tnames)
    g = s["grey_sources"]
    det_rows = "".join(f"<tr><td>{esc(m)}</td>" + "".join(
        f"<td>{v[d]['pixel_auc']:.3f} (n={v[d]['n']})</td>" if d in v else "<td>—</td>" for d in DETECTORS) + "</tr>"
        for m, v in s["detectors"].items())
    sent = "".join(f"<tr><td>{esc(d['label'])}</td><td>{d['count']}</td><td>{esc(d['sentence'])}</td></tr>"
                   for d in s["sentences_one_label"][:50])
    checked = s.get("sentences_checked")
    if not sent:
        sent = ("<tr><td colspan='3'>none: " + (f"{checked['real']} real and {checked['fake']} fake distinct context "
                "sentences, every one said for both labels (or rare enough for chance)" if checked else
                "this source has no answer text (a samples directory)") + "</td></tr>")
    if not det_rows:
        det_rows = f"<tr><td colspan='{1 + len(DETECTORS)}'>not computed (--no-detectors, or no forged sample with a mask)</td></tr>"
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>forgery audit</title>
<style>body{{font:14px sans-serif;max-width:980px;margin:2em auto}}td,th{{padding:2px 10px;text-align:left}}
.ok{{color:#176617}}.bad{{color:#a11}}table{{border-collapse:collapse}}tr:nth-child(even){{background:#f3f3f3}}</style>
</head><body><h1>Audit of {esc(s['source'])}</h1>
<p>{s['n']['real']} authentic and {s['n']['fake']} forged samples from {s['groups']} source photos;
grouped {s['folds']}-fold cross-validation by source photo; threshold {s['threshold']:g}.</p>{verdict}
{_unreadable_html(s)}<h2>Trivial features against the label (grouped CV ROC AUC)</h2><img src="audit.png" width="640" alt="AUC per feature set">
<table><tr><th>feature set</th><th>AUC</th><th></th></tr>{auc_rows}</table>
<h2>Templates per label</h2><table><tr><th>template</th><th>real</th><th>fake</th></tr>{t_rows}</table>
<h2>Grey sources</h2><p>{g['groups']} greyscale source photos; share of colour images among their samples:
real {_fmt(g['real']['colour_share'])} (n={g['real']['n']}), fake {_fmt(g['fake']['colour_share'])} (n={g['fake']['n']}).</p>
<h2>Sentences said for one label only</h2><table><tr><th>label</th><th>samples</th><th>sentence</th></tr>{sent}</table>
<h2>Classical detectors (mean pixel AUC against the masks)</h2>
<table><tr><th>method</th>{''.join(f'<th>{esc(d)}</th>' for d in DETECTORS)}</tr>{det_rows}</table>
</body></html>"""
    write_atomic(out / "audit.html", page.encode())


def _unreadable_html(s: dict[str, Any]) -> str:
    bad = s.get("unreadable") or []
    if not bad:
        return ""
    items = "".join(f"<li>{html.escape(b['where'])}: {html.escape(b['error'])}</li>" for b in bad[:100])
    return f"<p class=bad>{len(bad)} unreadable sample(s) left out:</p><ul>{items}</ul>"


def _fmt(v: float | None) -> str:
    return "—" if v is None else f"{v:.3f}"


def _plot(s: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [k for k, v in s["feature_auc"].items() if v is not None]
    values = [s["feature_auc"][k] for k in names]
    fig, ax = plt.subplots(figsize=(8, 3.2), dpi=100)
    ax.bar(names, values, color=["#a11" if v > s["threshold"] else "#4a7ab5" for v in values])
    ax.axhline(s["threshold"], color="#a11", lw=1, ls="--", label=f"threshold {s['threshold']:g}")
    ax.axhline(0.5, color="grey", lw=1, ls=":", label="chance")
    ax.set_ylim(0.3, 1.0)
    ax.set_ylabel("grouped CV AUC")
    ax.tick_params(axis="x", rotation=40)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    write_atomic(path, buf.getvalue())
