"""Per-session aggregates on the one-minute grid of the session (pure).

For a session with open O and close C, M = ceil((C - O) / 1 min) minutes
(565 for 09:00-18:25). Minute m covers [O + m min, O + (m + 1) min); a trade at
exactly C counts in the last minute.

- ``volume[m]``: qty traded in minute m (contracts or shares);
- ``count[m]``: trades in minute m;
- ``price[k]``, k = 0..M: p(O + k min), the price of the last trade of the
  session with ts_event < O + k min; the first trade's price when the boundary
  is at or before the first trade (the issue's p(t)); NaN when the session has
  no trade (yet).

A *partial* aggregate, ``as_of_ns = X``, is built from the trades with
ts_event < X only: minutes at or after X hold 0 (the one containing X holds the
trades before X), boundaries after X are NaN, and the first-trade fallback uses
only a first trade before X. So a partial aggregate at X is exactly what a
live system knew at X (given as-known trades: see ``features.known``); growing
X only fills in (a boundary already set, or a minute that ended before X, stays).

Trades outside [O, C] are not counted (``outside`` says how many there were).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from tickvault.errors import ValidationError
from tickvault.records.trades import TradeBatch, TradeFlag
from tickvault.venue.b3 import B3_TZ, SessionHours, session

MINUTE_NS = 60_000_000_000
I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
_CORRECTION = np.uint8(TradeFlag.EDIT | TradeFlag.CANCEL)


@dataclass(frozen=True, eq=False)
class SessionAggregates:
    """One session's one-minute aggregates (see the module docstring)."""

    symbol: str
    date: dt.date
    open_ns: int
    close_ns: int
    open_clock_min: int
    """Local clock time of the open, in minutes after midnight (09:00 is 540)."""
    volume: I64
    count: I64
    price: F64
    first_ts: int | None
    """ts_event of the session's first (counted) trade; None when there is none."""
    as_of_ns: int | None
    """None: every trade of the session; else only trades with ts_event < as_of_ns."""
    outside: int = 0

    @property
    def minutes(self) -> int:
        return int(self.volume.size)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SessionAggregates):
            return NotImplemented
        return (
            (self.symbol, self.date, self.open_ns, self.close_ns, self.open_clock_min)
            == (other.symbol, other.date, other.open_ns, other.close_ns, other.open_clock_min)
            and (self.first_ts, self.as_of_ns, self.outside)
            == (other.first_ts, other.as_of_ns, other.outside)
            and np.array_equal(self.volume, other.volume)
            and np.array_equal(self.count, other.count)
            and np.array_equal(self.price, other.price, equal_nan=True)
        )

    __hash__ = None  # type: ignore[assignment]


def build_session_aggregates(
    symbol: str,
    day: dt.date,
    trades: TradeBatch,
    *,
    as_of_ns: int | None = None,
    hours: SessionHours | None = None,
) -> SessionAggregates:
    """The aggregates of ``symbol``'s session on ``day`` from its resolved trades.

    ``trades`` may hold other days' trades too (they count as ``outside``); it must
    hold no EDIT/CANCEL records (resolve them first: ``features.known.as_known_at``).
    """
    s = session(symbol, day, hours)
    if bool((trades.flags & _CORRECTION).any()):
        raise ValidationError(
            "session aggregates need resolved trades, got EDIT/CANCEL records: "
            "resolve them first (tickvault.features.known.as_known_at)",
            field="flags",
        )
    minutes = max(1, -(-(s.close_ns - s.open_ns) // MINUTE_NS))
    ts_all = np.asarray(trades.ts_event, dtype=np.int64)
    inside = (ts_all >= s.open_ns) & (ts_all <= s.close_ns)
    outside = int((~inside).sum())
    if as_of_ns is not None:
        inside &= ts_all < as_of_ns
    idx = np.flatnonzero(inside)
    order = idx[np.lexsort((trades.trade_id[idx], ts_all[idx]))]
    ts = ts_all[order]
    qty = np.asarray(trades.qty, dtype=np.int64)[order]
    price = np.asarray(trades.price, dtype=np.float64)[order]

    edges = s.open_ns + MINUTE_NS * np.arange(minutes + 1, dtype=np.int64)
    edges[-1] = s.close_ns + 1  # the last minute takes a trade at exactly the close
    first = np.searchsorted(ts, edges, side="left")
    cq = np.concatenate([np.zeros(1, np.int64), np.cumsum(qty)])
    volume = cq[first[1:]] - cq[first[:-1]]
    count = (first[1:] - first[:-1]).astype(np.int64)

    boundaries = s.open_ns + MINUTE_NS * np.arange(minutes + 1, dtype=np.int64)
    last = np.searchsorted(ts, boundaries, side="left") - 1
    # before the first trade: the first trade's price
    prices = price[np.maximum(last, 0)] if ts.size else np.full(minutes + 1, np.nan)
    if as_of_ns is not None:
        prices = np.where(boundaries > as_of_ns, np.nan, prices)
    local_open = dt.datetime.fromtimestamp(s.open_ns / 1e9, B3_TZ)
    return SessionAggregates(
        symbol=symbol,
        date=day,
        open_ns=s.open_ns,
        close_ns=s.close_ns,
        open_clock_min=local_open.hour * 60 + local_open.minute,
        volume=volume.astype(np.int64),
        count=count,
        price=prices.astype(np.float64),
        first_ts=int(ts[0]) if ts.size else None,
        as_of_ns=as_of_ns,
        outside=outside,
    )
