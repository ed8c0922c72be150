"""A self-contained HTML page of a backtest: the equity curve (inline SVG, the same
tooling as the ml report, ``models.report``), the metrics and the per-session PnL."""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from tickvault.models.report import _H, _PAD, _W, _curve, _fmt

MAX_POINTS = 2_000
"""The curve is drawn from at most this many points (evenly spaced over its trades)."""


def equity_html(
    title: str,
    times_ns: npt.ArrayLike,
    equity: npt.ArrayLike,
    metrics: Mapping[str, float],
    sessions: Mapping[Any, float],
) -> str:
    """The page: equity (BRL, after costs) over the replayed trades, then the tables."""
    t = np.asarray(times_ns, dtype=np.int64)
    eq = np.asarray(equity, dtype=np.float64)
    if eq.size > MAX_POINTS:
        pick = np.linspace(0, eq.size - 1, MAX_POINTS).round().astype(np.int64)
        t, eq = t[pick], eq[pick]
    lo = min(0.0, float(eq.min())) if eq.size else 0.0
    hi = max(0.0, float(eq.max())) if eq.size else 0.0
    zero = _H - _PAD - (_H - 2 * _PAD) * (0 - lo) / ((hi - lo) or 1.0)
    line = (f'<polyline fill="none" stroke="#1f77b4" stroke-width="1.5" '
            f'points="{_curve(eq, lo, hi)}"><title>equity</title></polyline>'
            if eq.size else "")  # fmt: skip
    span = ""
    if t.size:
        first = np.datetime_as_string(np.datetime64(int(t[0]), "ns"), unit="m")
        last = np.datetime_as_string(np.datetime64(int(t[-1]), "ns"), unit="m")
        span = f"from {first} to {last} UTC"
    rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{_fmt(float(v))}</td></tr>" for k, v in metrics.items()
    )
    per = "".join(
        f"<tr><td>{html.escape(str(d))}</td><td>{_fmt(float(v))}</td></tr>"
        for d, v in sessions.items()
    )
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:2px 8px;text-align:right}}</style></head><body>
<h1>{html.escape(title)}</h1>
<h2>Equity after costs (BRL), marked at every trade, {span}</h2>
<svg width="{_W}" height="{_H}" xmlns="http://www.w3.org/2000/svg">
<line x1="{_PAD}" x2="{_W - _PAD}" y1="{zero:.1f}" y2="{zero:.1f}" stroke="#ccc"/>
<text x="5" y="{_PAD}" font-size="11">{_fmt(hi)}</text>
<text x="5" y="{_H - _PAD}" font-size="11">{_fmt(lo)}</text>
{line}</svg>
<h2>Metrics</h2><table><tr><th>metric</th><th>value</th></tr>{rows}</table>
<h2>PnL per session (BRL)</h2><table><tr><th>session</th><th>PnL</th></tr>{per}</table>
<p>Sharpe: mean / sample standard deviation of the per-session PnL, times sqrt(252).
Hit rate: share of the fills that closed contracts with a gain after the fill's fee.
Turnover: contracts traded. Max drawdown: the largest fall of the equity from its peak.</p>
</body></html>
"""
