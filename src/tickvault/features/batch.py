"""Batch (vectorised) evaluation of an intraday feature set over a TradeBatch.

The running sums of ``IntradayState`` become per-day prefix sums: integer
columns by one ``np.cumsum`` less the day's starting value (exact), float
columns by one ``np.cumsum`` per day (a left fold, the same additions in the
same order as the live ``+=``). Window references come from ``searchsorted``
on ``ts_event``. Each feature's formula then runs once on whole arrays.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from tickvault.errors import ValidationError
from tickvault.features.base import BASE, NAN, VECTOR, Feature, Snap, log_prices
from tickvault.records.trades import TradeBatch, TradeFlag, TradeType
from tickvault.timeutil import trading_days

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
_CORRECTION = np.uint8(TradeFlag.EDIT | TradeFlag.CANCEL)


@dataclass(frozen=True, slots=True)
class BookTops:
    """Book-top updates in time order: best bid/ask price and quantity at each ``ts``."""

    ts: I64
    bid_px: F64
    bid_qty: I64
    ask_px: F64
    ask_qty: I64

    @classmethod
    def empty(cls) -> BookTops:
        f, i = np.empty(0, np.float64), np.empty(0, np.int64)
        return cls(i, f, i, f, i)


class _Columns:
    """Per-trade prefix sums of one TradeBatch (the live ``Snap`` of each row)."""

    def __init__(self, trades: TradeBatch, large_min_qty: int, tz: ZoneInfo) -> None:
        ts = np.asarray(trades.ts_event, dtype=np.int64)
        if ts.size > 1 and bool((np.diff(ts) < 0).any()):
            raise ValidationError(
                "trades must be sorted by ts_event for feature evaluation; sort them "
                "(or resolve them with tickvault.features.known.as_known_at)",
                field="ts_event",
            )
        if bool((trades.flags & _CORRECTION).any()):
            raise ValidationError(
                "trades hold EDIT/CANCEL records: resolve them first "
                "(tickvault.features.known.as_known_at)",
                field="flags",
            )
        price = np.asarray(trades.price, dtype=np.float64)
        qty = np.asarray(trades.qty, dtype=np.int64)
        tt = trades.trade_type
        n = ts.size
        self.ts = ts
        self.day = trading_days(ts, tz)
        new_day = np.ones(n, dtype=bool)
        new_day[1:] = self.day[1:] != self.day[:-1]
        starts = np.flatnonzero(new_day)
        idx = np.arange(n, dtype=np.int64)
        start = np.maximum.accumulate(np.where(new_day, idx, 0)) if n else idx
        lp = log_prices(price)
        r = np.zeros(n, dtype=np.float64)
        r[1:] = lp[1:] - lp[:-1]
        r[new_day] = 0.0
        bounds = [*starts.tolist(), n]

        def day_cumsum(x: F64) -> F64:
            out = np.empty(n, dtype=np.float64)
            for a, b in itertools.pairwise(bounds):
                out[a:b] = np.cumsum(x[a:b])
            return out

        def int_cumsum(x: I64) -> I64:
            c = np.cumsum(x)
            return c - (c[start] - x[start]) if n else c

        zero = np.zeros(n, dtype=np.int64)
        self.cols: dict[str, npt.NDArray[Any]] = {
            "ts": ts,
            "price": price,
            "lp": lp,
            "r2": day_cumsum(r * r),
            "n": idx - start + 1,
            "q": int_cumsum(qty),
            "qb": int_cumsum(np.where(tt == TradeType.AGGRESSOR_BUY, qty, zero)),
            "qs": int_cumsum(np.where(tt == TradeType.AGGRESSOR_SELL, qty, zero)),
            "ql": int_cumsum(np.where(qty >= large_min_qty, qty, zero)),
            "pq": day_cumsum(price * qty),
        }

    def gather(self, idx: I64, day: I64) -> tuple[Snap, npt.NDArray[np.bool_]]:
        """The snapshot of row ``idx`` where it is a trade of ``day``, else ``BASE``; the mask."""
        ok = idx >= 0
        safe = np.where(ok, idx, 0)
        if self.ts.size:
            ok &= self.day[safe] == day
        else:
            ok &= False
        values = []
        for name in Snap._fields:
            col = self.cols[name]
            base = getattr(BASE, name)
            values.append(np.where(ok, col[safe], base) if col.size else np.full(idx.size, base))
        return Snap._make(values), ok


class _VectorView:
    def __init__(
        self,
        cur: Snap,
        refs: dict[int, tuple[Snap, npt.NDArray[np.bool_]]],
        book: dict[str, npt.NDArray[Any]],
    ) -> None:
        self.cur = cur
        self._refs = refs
        self.bid_px, self.bid_qty = book["bid_px"], book["bid_qty"]
        self.ask_px, self.ask_qty = book["ask_px"], book["ask_qty"]
        self.book_ok = book["ok"]

    def ref(self, window_ns: int) -> Snap:
        return self._refs[window_ns][0]

    def has_ref(self, window_ns: int) -> npt.NDArray[np.bool_]:
        return self._refs[window_ns][1]


def _check_book(book: BookTops | None) -> None:
    if book is not None and book.ts.size > 1 and bool((np.diff(book.ts) < 0).any()):
        raise ValidationError("book tops must be sorted by ts for feature evaluation", field="ts")


def _book_at(book: BookTops | None, idx: I64) -> dict[str, npt.NDArray[Any]]:
    if book is None or book.ts.size == 0:
        m = idx.size
        return {
            "bid_px": np.full(m, NAN),
            "ask_px": np.full(m, NAN),
            "bid_qty": np.zeros(m, np.int64),
            "ask_qty": np.zeros(m, np.int64),
            "ok": np.zeros(m, dtype=bool),
        }
    ok = idx >= 0
    safe = np.where(ok, idx, 0)
    out = {
        "bid_px": np.where(ok, book.bid_px[safe], NAN),
        "ask_px": np.where(ok, book.ask_px[safe], NAN),
        "bid_qty": np.where(ok, book.bid_qty[safe], 0),
        "ask_qty": np.where(ok, book.ask_qty[safe], 0),
    }
    out["ok"] = (
        (out["bid_qty"] > 0) & (out["ask_qty"] > 0) & np.isfinite(out["bid_px"] + out["ask_px"])
    )
    return out


def _evaluate(
    features: Sequence[Feature],
    windows: Sequence[int],
    c: _Columns,
    cur_idx: I64,
    day: I64,
    window_end: I64,
    book: dict[str, npt.NDArray[Any]],
) -> dict[str, F64]:
    cur, _ = c.gather(cur_idx, day)
    refs: dict[int, tuple[Snap, npt.NDArray[np.bool_]]] = {}
    for w in windows:
        ridx = np.searchsorted(c.ts, window_end - w, side="left").astype(np.int64) - 1
        refs[w] = c.gather(ridx, day)
    view = _VectorView(cur, refs, book)
    m = cur_idx.size
    out: dict[str, F64] = {}
    for f in features:
        value = np.asarray(f.compute(view, VECTOR), dtype=np.float64)
        out[f.name] = np.broadcast_to(value, (m,)).copy() if value.shape != (m,) else value
    return out


def evaluate_rows(
    features: Sequence[Feature],
    windows: Sequence[int],
    trades: TradeBatch,
    *,
    large_min_qty: int,
    tz: ZoneInfo,
    book: BookTops | None = None,
) -> dict[str, F64]:
    """One value per trade row: what the live state returns after that trade."""
    c = _Columns(trades, large_min_qty, tz)
    _check_book(book)
    n = c.ts.size
    cur_idx = np.arange(n, dtype=np.int64)
    bidx = (
        np.searchsorted(book.ts, c.ts, side="right").astype(np.int64) - 1
        if book is not None
        else np.full(n, -1, np.int64)
    )
    return _evaluate(features, windows, c, cur_idx, c.day, c.ts + 1, _book_at(book, bidx))


def evaluate_at(
    features: Sequence[Feature],
    windows: Sequence[int],
    trades: TradeBatch,
    times_ns: I64,
    *,
    large_min_qty: int,
    tz: ZoneInfo,
    book: BookTops | None = None,
) -> dict[str, F64]:
    """One value per time T: the trades with ts_event < T, book tops with ts < T."""
    c = _Columns(trades, large_min_qty, tz)
    _check_book(book)
    t = np.asarray(times_ns, dtype=np.int64)
    cur_idx = np.searchsorted(c.ts, t, side="left").astype(np.int64) - 1
    bidx = (
        np.searchsorted(book.ts, t, side="left").astype(np.int64) - 1
        if book is not None
        else np.full(t.size, -1, np.int64)
    )
    return _evaluate(features, windows, c, cur_idx, trading_days(t, tz), t, _book_at(book, bidx))
