"""What the dashboard's pages show, computed from store reads (pure: numpy columns and
plain records in, JSON-ready dicts out; no I/O). ``web.data`` does the reads, ``web.app``
serves the results.

Times sent to the page are in seconds for the charts (``time``: the exchange's wall
clock shown as if it were UTC, so the chart's axis reads local B3 time) and in int ns
UTC everywhere else (``*_ns``).
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from tickvault.features.aggregates import MINUTE_NS, SessionAggregates
from tickvault.records.orders import Fill
from tickvault.records.signals import Side, Signal
from tickvault.records.trades import TradeType
from tickvault.timeutil import NS_PER_S

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]

METRICS_WINDOW_NS = 5 * 60 * NS_PER_S
"""The original design's metrics cover the last five minutes of trades."""
BUCKET_MIN = 15
"""The History page's intraday profiles are per 15 minutes of the local clock."""
MAX_BARS_1S = 1800
"""Caps (also applied by the page to what it keeps): 1 s candles of the last 30 min,"""
MAX_BARS_1M = 600
"""1 min candles of the last 600 minutes (a whole session),"""
MAX_MARKERS = 500
"""and the 500 latest signal and fill markers."""
MAX_REGIME_CHANGES = 500


def finite(x: float) -> float | None:
    """JSON has no NaN: None instead."""
    return x if math.isfinite(x) else None


def wall_s(ts_ns: int, tz: dt.tzinfo) -> int:
    """The exchange's wall-clock time of ``ts_ns`` as chart seconds (see the module)."""
    t = dt.datetime.fromtimestamp(ts_ns / NS_PER_S, dt.UTC)
    off = t.astimezone(tz).utcoffset() or dt.timedelta(0)
    return int(ts_ns // NS_PER_S + off.total_seconds())


def bars(ts: I64, price: F64, qty: I64, bar_ns: int, tz: dt.tzinfo) -> list[dict[str, Any]]:
    """OHLC candles and volume per ``bar_ns`` of event time, for ``ts`` sorted."""
    if ts.size == 0:
        return []
    start = ts // bar_ns * bar_ns
    cut = np.flatnonzero(np.diff(start)) + 1
    first = np.concatenate(([0], cut))
    last = np.concatenate((cut - 1, [ts.size - 1]))
    high = np.maximum.reduceat(price, first)
    low = np.minimum.reduceat(price, first)
    vol = np.add.reduceat(qty.astype(np.int64), first)
    off = wall_s(int(ts[-1]), tz) - int(ts[-1] // NS_PER_S)
    return [
        {
            "time": int(start[f] // NS_PER_S) + off,
            "open": float(price[f]),
            "high": float(h),
            "low": float(lo),
            "close": float(price[la]),
            "volume": int(v),
        }
        for f, la, h, lo, v in zip(
            first.tolist(), last.tolist(), high.tolist(), low.tolist(), vol.tolist(), strict=True
        )
    ]


def five_minute_metrics(
    ts: I64, price: F64, qty: I64, trade_type: npt.NDArray[Any], end_ns: int
) -> dict[str, Any]:
    """The original design's metrics over [end - 5 min, end): volume, trades, price
    change (points and %), average trade size and the buy/sell ratio (aggressor-buy
    volume over aggressor-sell volume; None without aggressor sells)."""
    keep = (ts >= end_ns - METRICS_WINDOW_NS) & (ts < end_ns)
    p, q, side = price[keep], qty[keep].astype(np.int64), trade_type[keep]
    n = int(p.size)
    buy = int(q[side == TradeType.AGGRESSOR_BUY].sum())
    sell = int(q[side == TradeType.AGGRESSOR_SELL].sum())
    return _metrics(end_ns, n, int(q.sum()), buy, sell, float(p[0]) if n else 0.0,
                    float(p[-1]) if n else None)  # fmt: skip


def _metrics(end_ns: int, n: int, volume: int, buy: int, sell: int, first: float,
             last: float | None) -> dict[str, Any]:  # fmt: skip
    """The metrics dict of ``five_minute_metrics`` from its sums."""
    change = (last - first) if n and last is not None else 0.0
    return {
        "window_s": METRICS_WINDOW_NS // NS_PER_S,
        "end_ns": int(end_ns),
        "volume": volume,
        "trades": n,
        "price_change": change,
        "price_change_pct": finite(100.0 * change / first) if n and first else None,
        "avg_trade_size": volume / n if n else None,
        "buy_volume": buy,
        "sell_volume": sell,
        "buy_sell_ratio": buy / sell if sell else None,
        "last_price": last if n else None,
    }


def ladder(bids: Sequence[Mapping[Any, Any]], asks: Sequence[Mapping[Any, Any]],
           depth: int = 10) -> dict[str, Any]:  # fmt: skip
    """The book ladder: the best ``depth`` price levels per side (price, qty, offers)."""

    def side(levels: Sequence[Mapping[Any, Any]]) -> list[dict[str, Any]]:
        return [{"price": float(lv["price"]), "qty": int(lv["qty"]),
                 "offers": int(lv.get("offers", 1))} for lv in levels[:depth]]  # fmt: skip

    return {"bids": side(bids), "asks": side(asks), "depth": depth}


@dataclass(frozen=True, slots=True)
class Position:
    qty: int
    avg_price: float
    realized: float
    """BRL, fees taken off."""
    open_pnl: float
    fees: float
    fills: int

    @property
    def total(self) -> float:
        return self.realized + self.open_pnl


def position(fills: Iterable[Fill], last_price: float | None, point_value: float) -> Position:
    """The position and PnL (BRL) the ``fills`` (in order) leave, marked at ``last_price``."""
    qty, avg, realized, fees, n = 0, 0.0, 0.0, 0.0, 0
    for f in fills:
        n += 1
        fees += f.fee
        realized -= f.fee
        if qty == 0 or (qty > 0) == (f.qty > 0):  # opening or adding
            avg = (avg * abs(qty) + f.price * abs(f.qty)) / (abs(qty) + abs(f.qty))
            qty += f.qty
            continue
        closed = min(abs(qty), abs(f.qty))
        realized += (f.price - avg) * closed * (1 if qty > 0 else -1) * point_value
        rest = qty + f.qty
        if rest == 0:
            avg = 0.0
        elif (rest > 0) != (qty > 0):  # reversed: the rest opens at the fill's price
            avg = f.price
        qty = rest
    mark = last_price if last_price is not None else avg
    open_pnl = (mark - avg) * qty * point_value + 0.0 if qty else 0.0
    return Position(qty, avg, realized, open_pnl, fees, n)


def position_dict(p: Position) -> dict[str, Any]:
    return {"qty": p.qty, "avg_price": p.avg_price if p.qty else None, "realized": p.realized,
            "open_pnl": p.open_pnl, "total_pnl": p.total, "fees": p.fees,
            "fills": p.fills}  # fmt: skip


def signal_markers(signals: Iterable[Signal], tz: dt.tzinfo) -> list[dict[str, Any]]:
    """Chart markers of signals: LONG below the bar (up arrow), SHORT above, FLAT a dot."""
    out = []
    for s in signals:
        side = Side(s.side)
        out.append({
            "time": wall_s(s.ts_event, tz), "ts_ns": s.ts_event, "kind": "signal",
            "side": side.name, "strength": finite(s.strength),
            "position": "belowBar" if side is Side.LONG else "aboveBar",
            "shape": {Side.LONG: "arrowUp", Side.SHORT: "arrowDown"}.get(side, "circle"),
            "color": {Side.LONG: "#26a69a", Side.SHORT: "#ef5350"}.get(side, "#9e9e9e"),
            "text": f"{side.name} {s.strength:+.2f}",
        })  # fmt: skip
    return out[-MAX_MARKERS:]


def fill_markers(fills: Iterable[Fill], tz: dt.tzinfo) -> list[dict[str, Any]]:
    """Chart markers of paper fills (squares: blue buys, orange sells)."""
    out = []
    for f in fills:
        buy = f.qty > 0
        out.append({
            "time": wall_s(f.ts_event, tz), "ts_ns": f.ts_event, "kind": "fill",
            "side": "BUY" if buy else "SELL", "position": "belowBar" if buy else "aboveBar",
            "shape": "square", "color": "#2962ff" if buy else "#ff9800",
            "text": f"{'buy' if buy else 'sell'} {abs(f.qty)} @ {f.price:,.2f}",
        })  # fmt: skip
    return out[-MAX_MARKERS:]


def features_dict(row: Mapping[str, Any] | None, names: Sequence[str]) -> dict[str, Any]:
    """The current features of a stored row (``names`` in order) and its regime."""
    if row is None:
        return {"T_ns": None, "values": [], "regime": None, "volatility_regime": None}
    values = []
    for n in names:
        v = row.get(n)
        values.append({"name": n, "value": finite(float(v)) if isinstance(v, int | float |
                       np.floating | np.integer) else v})  # fmt: skip
    return {"T_ns": row.get("T"), "values": values, "regime": row.get("regime"),
            "volatility_regime": row.get("volatility_regime")}  # fmt: skip


# ---------------------------------------------------------------------- history
def _minute_returns(a: SessionAggregates) -> F64:
    """Log returns between the session's one-minute price boundaries (NaN where unknown)."""
    p = a.price
    with np.errstate(divide="ignore", invalid="ignore"):
        r: F64 = np.diff(np.log(np.where(p > 0, p, np.nan)))
    return r


def history(aggs: Sequence[SessionAggregates], bucket_min: int = BUCKET_MIN) -> dict[str, Any]:
    """The History page's numbers from sessions' one-minute aggregates, oldest first:

    - ``sessions``: per session, its date, volume, trades and realized volatility (the
      square root of the sum of squared one-minute log returns);
    - ``profile``: per ``bucket_min`` minutes of the local clock, the mean volume per
      session and the mean realized volatility of that bucket (sessions with a trade).
    """
    per_session = []
    buckets: dict[int, list[tuple[int, float]]] = {}
    for a in aggs:
        r = _minute_returns(a)
        ok = np.isfinite(r)
        per_session.append({
            "date": a.date.isoformat(), "volume": int(a.volume.sum()),
            "trades": int(a.count.sum()),
            "volatility": finite(float(np.sqrt(np.sum(r[ok] ** 2)))) if ok.any() else None,
        })  # fmt: skip
        if not a.count.any():
            continue
        clock = a.open_clock_min + np.arange(a.volume.size)
        b = clock // bucket_min * bucket_min
        for key in np.unique(b).tolist():
            m = b == key
            rr = r[m]  # minute m's return: from its start to its end boundary
            rr = rr[np.isfinite(rr)]
            buckets.setdefault(int(key), []).append(
                (int(a.volume[m].sum()), float(np.sqrt(np.sum(rr**2))) if rr.size else math.nan)
            )
    profile = []
    for key in sorted(buckets):
        vols = [v for v, _ in buckets[key]]
        rvs = [x for _, x in buckets[key] if math.isfinite(x)]
        profile.append({
            "clock": f"{key // 60:02d}:{key % 60:02d}", "minute": key,
            "volume": float(np.mean(vols)), "volatility": finite(float(np.mean(rvs)))
            if rvs else None, "sessions": len(vols),
        })  # fmt: skip
    return {"sessions": per_session, "profile": profile, "bucket_min": bucket_min}


def regime_changes(t_ns: I64, regimes: Sequence[str]) -> list[dict[str, Any]]:
    """The points where the regime label changes (the first row counts as one), the
    latest ``MAX_REGIME_CHANGES``."""
    out: list[dict[str, Any]] = []
    prev: str | None = None
    for t, reg in zip(t_ns.tolist(), regimes, strict=True):
        if reg != prev:
            out.append({"T_ns": int(t), "regime": reg})
            prev = reg
    return out[-MAX_REGIME_CHANGES:]


def minute_of(ts_ns: int) -> int:
    """The start of the minute of ``ts_ns``."""
    return ts_ns // MINUTE_NS * MINUTE_NS


# ---------------------------------------------------------------------- pipeline
STALE_S = 10.0
"""A status report older than this (while the store is live) is shown as stale."""
LAG_WARN_MS = 100.0
HELD_WARN = 0.5


def _f(fields: Mapping[str, str], name: str) -> float:
    try:
        return float(fields.get(name, "nan"))
    except ValueError:
        return math.nan


def bridges(statuses: Mapping[str, Mapping[str, str]], now_ns: int) -> list[dict[str, Any]]:
    """The bridges' status reports (``status:bridge:...``), newest first."""
    out = []
    for name, s in statuses.items():
        age = (now_ns - _f(s, "updated_ns")) / NS_PER_S
        out.append({
            "name": name, "age_s": finite(age), "stale": not age < STALE_S,
            **{k: finite(_f(s, k)) for k in (
                "trades_per_s", "lag_p50_ms", "lag_p99_ms", "messages", "trades_stored",
                "gaps_detected", "recovered_messages", "journal_messages", "lost_messages",
                "gaps_unrecovered", "held_bytes", "max_held_bytes", "outages", "rollbacks")},
            "rejected": s.get("rejected", "{}"),
            "store": s.get("store", "ok"), "store_error": s.get("store_error", ""),
        })  # fmt: skip
    out.sort(key=lambda b: b["age_s"] if b["age_s"] is not None else math.inf)
    return out


def publishers(statuses: Mapping[str, Mapping[str, str]], now_ns: int) -> list[dict[str, Any]]:
    """The publishers' replay-buffer reports (``status:publisher:...``), newest first:
    bytes held of the bound (``fill``: the share), messages, evictions, the oldest held
    (topic and seq) and per topic (messages, bytes, first seq held, last seq published)."""
    out = []
    for name, s in statuses.items():
        age = (now_ns - _f(s, "updated_ns")) / NS_PER_S
        held, cap = _f(s, "replay_bytes"), _f(s, "replay_max_bytes")
        try:
            raw = json.loads(s.get("topics") or "{}")
        except ValueError:
            raw = {}
        topics = [{"topic": str(t), **{k: finite(float(v.get(k, math.nan)))
                                       for k in ("messages", "bytes", "first_seq", "last_seq")}}
                  for t, v in sorted(raw.items()) if isinstance(v, dict)]  # fmt: skip
        out.append({
            "name": name, "age_s": finite(age), "stale": not age < STALE_S,
            "publisher_id": s.get("publisher_id", ""),
            "replay_bytes": finite(held), "replay_max_bytes": finite(cap),
            "fill": finite(held / cap) if cap > 0 else None,
            **{k: finite(_f(s, k)) for k in ("replay_messages", "replay_evicted", "oldest_seq",
                                             "records", "messages", "queued")},
            "oldest_topic": s.get("oldest_topic", ""),
            "topics": topics,
        })  # fmt: skip
    out.sort(key=lambda b: b["age_s"] if b["age_s"] is not None else math.inf)
    return out


def warnings(bridge_rows: Sequence[Mapping[str, Any]],
             workers: Sequence[Mapping[str, Any]],
             writes_refused: str | None = None) -> list[str]:  # fmt: skip
    """Slow-consumer warnings: a server that refuses writes (``writes_refused``, from its
    INFO), a bridge whose store refuses writes or is unreachable (with what to do), a
    bridge holding more than half of what it may hold (it
    cannot write as fast as trades come), a bridge that lost messages (a subscriber the
    publisher dropped, or beyond its buffer), a lag p99 above 100 ms, and a model worker
    whose last decided row is far behind the feature worker's last row."""
    out = [writes_refused] if writes_refused else []
    for b in bridge_rows:
        if b["stale"]:
            continue
        if b.get("store", "ok") != "ok" and b.get("store_error") != writes_refused:
            out.append(f"{b['name']}: {b.get('store_error') or 'the store refuses writes'}")
        held, cap = b.get("held_bytes") or 0, b.get("max_held_bytes") or 0
        if cap and held / cap > HELD_WARN:
            out.append(f"{b['name']}: holding {held / cap:.0%} of bridge_max_held_mb: the store "
                       "is slower than the feed")  # fmt: skip
        if (b.get("lost_messages") or 0) > 0:
            out.append(f"{b['name']}: {b['lost_messages']:.0f} messages lost (not recoverable "
                       "from the publisher's buffer or journal)")  # fmt: skip
        if (b.get("lag_p99_ms") or 0) > LAG_WARN_MS:
            out.append(f"{b['name']}: publish-to-stored lag p99 {b['lag_p99_ms']:.0f} ms")
    for w in workers:
        behind = w.get("behind_s")
        if behind is not None and behind > STALE_S:
            out.append(f"model worker {w['symbol']}: {behind:.0f} s behind the feature rows")
    return out


class SecondWindow:
    """Per-second aggregates of a symbol's latest trades, for live Market pages: the 1 s
    and 1 min candles of the seconds that changed and the 5-minute metrics, from the new
    trades only (a page's poll reads what arrived since the last one, never the whole
    window again). Holds at most ``METRICS_WINDOW_NS`` plus a minute of seconds.

    The live 5-minute window is whole seconds: the trades of the seconds from
    ``end - 5 min`` (its second included) to ``end``; a page load or /api read
    (``five_minute_metrics``) cuts it to the nanosecond."""

    def __init__(self) -> None:
        self.secs: dict[int, list[float]] = {}
        """second (UTC) -> [trades, volume, buy volume, sell volume, open, high, low, close]."""

    def add(self, ts: I64, price: F64, qty: I64, trade_type: npt.NDArray[Any]) -> set[int]:
        """Add trades (``ts`` sorted); the seconds they touched."""
        if ts.size == 0:
            return set()
        sec = ts // NS_PER_S
        cut = np.flatnonzero(np.diff(sec)) + 1
        first = np.concatenate(([0], cut))
        last = np.concatenate((cut - 1, [ts.size - 1]))
        q = qty.astype(np.int64)
        buy = np.where(trade_type == TradeType.AGGRESSOR_BUY, q, 0)
        sell = np.where(trade_type == TradeType.AGGRESSOR_SELL, q, 0)
        cols = zip(sec[first].tolist(), np.diff(np.append(first, ts.size)).tolist(),
                   np.add.reduceat(q, first).tolist(), np.add.reduceat(buy, first).tolist(),
                   np.add.reduceat(sell, first).tolist(), price[first].tolist(),
                   np.maximum.reduceat(price, first).tolist(),
                   np.minimum.reduceat(price, first).tolist(), price[last].tolist(),
                   strict=True)  # fmt: skip
        touched = set()
        for s, n, vol, b, se, op, hi, lo, cl in cols:
            cur = self.secs.get(s)
            if cur is None:
                self.secs[s] = [n, vol, b, se, op, hi, lo, cl]
            else:
                cur[0] += n
                cur[1] += vol
                cur[2] += b
                cur[3] += se
                cur[5] = max(cur[5], hi)
                cur[6] = min(cur[6], lo)
                cur[7] = cl
            touched.add(s)
        keep_from = max(self.secs) - (METRICS_WINDOW_NS + MINUTE_NS) // NS_PER_S
        for s in [s for s in self.secs if s < keep_from]:
            del self.secs[s]
        return touched

    def _bar(self, secs: list[int], time_s: int) -> dict[str, Any]:
        rows = [self.secs[s] for s in secs]
        return {"time": time_s, "open": float(rows[0][4]), "high": float(max(r[5] for r in rows)),
                "low": float(min(r[6] for r in rows)), "close": float(rows[-1][7]),
                "volume": int(sum(r[1] for r in rows))}  # fmt: skip

    def bars(self, touched: set[int], tz: dt.tzinfo) -> tuple[list[dict[str, Any]],
                                                              list[dict[str, Any]]]:  # fmt: skip
        """The 1 s and the 1 min candles of the ``touched`` seconds (as ``bars`` gives
        them: wall-clock seconds of ``tz``)."""
        if not touched:
            return [], []
        newest = max(self.secs)
        off = wall_s(newest * NS_PER_S, tz) - newest
        one_s = [self._bar([s], s + off) for s in sorted(touched)]
        per_min = MINUTE_NS // NS_PER_S
        minutes = sorted({s // per_min for s in touched})
        one_m = []
        for m in minutes:
            secs = sorted(s for s in self.secs if s // per_min == m)
            if secs:
                one_m.append(self._bar(secs, m * per_min + off))
        return one_s, one_m

    def metrics(self, end_ns: int) -> dict[str, Any]:
        """``five_minute_metrics`` over the whole seconds of [end - 5 min, end)."""
        lo = (end_ns - METRICS_WINDOW_NS) // NS_PER_S
        hi = (end_ns - 1) // NS_PER_S
        rows = [self.secs[s] for s in sorted(self.secs) if lo <= s <= hi]
        if not rows:
            return _metrics(end_ns, 0, 0, 0, 0, 0.0, None)
        return _metrics(end_ns, int(sum(r[0] for r in rows)), int(sum(r[1] for r in rows)),
                        int(sum(r[2] for r in rows)), int(sum(r[3] for r in rows)),
                        float(rows[0][4]), float(rows[-1][7]))  # fmt: skip
