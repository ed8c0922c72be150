"""A self-contained HTML report of a walk-forward evaluation (inline SVG, no library).

``html_report(title, evaluation, times_ns)`` returns the page: the cumulative
out-of-sample PnL of the model and of each baseline over the test rows, and the
per-fold and overall metrics tables.
"""

from __future__ import annotations

import html
import math

import numpy as np
import numpy.typing as npt

from tickvault.models.evaluation import MODEL, Evaluation
from tickvault.models.metrics import METRICS

_COLOURS = {MODEL: "#1f77b4", "always_flat": "#7f7f7f", "last_1min": "#ff7f0e",
            "prev_session": "#2ca02c"}  # fmt: skip
_W, _H, _PAD = 900, 320, 50


def _fmt(v: float) -> str:
    if isinstance(v, float) and math.isnan(v):
        return "-"
    return f"{v:,.0f}" if abs(v) >= 1000 or float(v).is_integer() else f"{v:.4f}"


def _curve(values: npt.NDArray[np.float64], lo: float, hi: float) -> str:
    n = max(values.size - 1, 1)
    span = hi - lo or 1.0
    pts = (
        f"{_PAD + (_W - 2 * _PAD) * i / n:.1f},{_H - _PAD - (_H - 2 * _PAD) * (v - lo) / span:.1f}"
        for i, v in enumerate(values.tolist())
    )
    return " ".join(pts)


def _table(rows: dict[str, dict[str, float]]) -> str:
    head = "".join(f"<th>{m}</th>" for m in METRICS)
    body = "".join(
        f"<tr><td>{html.escape(name)}</td>" + "".join(f"<td>{_fmt(m[k])}</td>" for k in METRICS)
        + "</tr>"
        for name, m in rows.items()
    )  # fmt: skip
    return f"<table><tr><th>who</th>{head}</tr>{body}</table>"


def html_report(title: str, ev: Evaluation, times_ns: npt.ArrayLike) -> str:
    """The page (module docstring); ``times_ns`` are the T of the dataset's rows."""
    t = np.asarray(times_ns, dtype=np.int64)[ev.test_index]
    curves = {n: np.cumsum(p) for n, p in ev.pnl.items()}
    lo = min([0.0, *(float(c.min()) for c in curves.values() if c.size)])
    hi = max([0.0, *(float(c.max()) for c in curves.values() if c.size)])
    lines = "".join(
        f'<polyline fill="none" stroke="{_COLOURS.get(n, "#000")}" stroke-width="1.5" '
        f'points="{_curve(c, lo, hi)}"><title>{html.escape(n)}</title></polyline>'
        for n, c in curves.items()
        if c.size
    )
    legend = "".join(
        f'<span style="color:{_COLOURS.get(n, "#000")}">&#9632; {html.escape(n)}</span> '
        for n in curves
    )
    zero = _H - _PAD - (_H - 2 * _PAD) * (0 - lo) / ((hi - lo) or 1.0)
    span = ""
    if t.size:
        first = np.datetime_as_string(np.datetime64(int(t[0]), "ns"), unit="m")
        last = np.datetime_as_string(np.datetime64(int(t[-1]), "ns"), unit="m")
        span = f"test rows from {first} to {last} UTC"
    folds = "".join(
        f"<h3>fold {f.number}: {f.train_rows:,} train rows, {f.test_rows:,} test rows, "
        f"{f.purged:,} purged</h3>{_table(f.metrics)}"
        for f in ev.folds
    )
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:2px 8px;text-align:right}}</style></head><body>
<h1>{html.escape(title)}</h1>
<h2>Cumulative out-of-sample PnL after costs (BRL), {span}</h2>
<svg width="{_W}" height="{_H}" xmlns="http://www.w3.org/2000/svg">
<line x1="{_PAD}" x2="{_W - _PAD}" y1="{zero:.1f}" y2="{zero:.1f}" stroke="#ccc"/>
<text x="5" y="{_PAD}" font-size="11">{_fmt(hi)}</text>
<text x="5" y="{_H - _PAD}" font-size="11">{_fmt(lo)}</text>
{lines}</svg>
<p>{legend}</p>
<h2>Overall (every test row once)</h2>{_table(ev.overall)}
<h2>Per fold</h2>{folds}
<p>AUC: up vs down (score P(up) - P(down), flat rows left out). IC: Spearman of that
score with the realised forward return. PnL: one contract on the predicted side,
held for the horizon, after costs.</p>
</body></html>
"""
