"""The live (incremental) state of an intraday feature set: O(1) amortised per trade.

One monotonic deque per distinct window holds the snapshots (``Snap``) of the
trades inside the window; a trade leaving a window becomes its reference
snapshot. Every quantity is a running sum, so a window sum is ``cur - ref``
and an update costs a few additions and, per window, one append and the pops
of the trades that left it. Nothing depends on the window's length.

Input order: trades (and book tops) in non-decreasing ``ts_event``, book tops
before the trades of the same nanosecond, as the batch path assumes; a trade
older than the last one is refused with ValidationError (the caller resolves
late or corrected records first: see ``tickvault.features.known``).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from zoneinfo import ZoneInfo

import numpy as np

from tickvault.errors import ValidationError
from tickvault.features.base import BASE, NAN, SCALAR, Feature, Snap, log_prices
from tickvault.records.trades import TradeType
from tickvault.timeutil import NS_PER_S, trading_day

_SLOT = 900 * NS_PER_S  # B3 offsets are whole hours: a local day starts on a 15-min slot
_BUY, _SELL = int(TradeType.AGGRESSOR_BUY), int(TradeType.AGGRESSOR_SELL)
_LOG_CACHE_MAX = 1 << 16


class IntradayState:
    """The live state of a ``FeatureSet``; also the scalar ``View`` its formulas read."""

    __slots__ = (
        "_day",
        "_dq",
        "_features",
        "_large",
        "_logs",
        "_refs",
        "_slot",
        "_tz",
        "_windows",
        "ask_px",
        "ask_qty",
        "bid_px",
        "bid_qty",
        "book_ok",
        "book_ts",
        "cur",
    )

    def __init__(
        self,
        features: Sequence[Feature],
        windows_ns: Sequence[int],
        large_min_qty: int,
        tz: ZoneInfo,
    ) -> None:
        self._features = tuple(features)
        self._windows = tuple(windows_ns)
        self._large = large_min_qty
        self._tz = tz
        self._logs: dict[float, float] = {}
        self._slot = -1
        self._day = -(2**62)
        self.cur: Snap = BASE
        self._dq: dict[int, deque[Snap]] = {w: deque() for w in self._windows}
        self._refs: dict[int, Snap | None] = dict.fromkeys(self._windows)
        self.bid_px = self.ask_px = NAN
        self.bid_qty = self.ask_qty = 0
        self.book_ok = False
        self.book_ts = -(2**62)

    # -- the View protocol -------------------------------------------------
    def ref(self, window_ns: int) -> Snap:
        r = self._refs[window_ns]
        return BASE if r is None else r

    def has_ref(self, window_ns: int) -> bool:
        return self._refs[window_ns] is not None

    # -- updates -----------------------------------------------------------
    def update(self, ts_event: int, price: float, qty: int, trade_type: int) -> list[float]:
        """Add one trade; the feature values at T = ts_event + 1 ns, in the set's order."""
        self.add(ts_event, price, qty, trade_type)
        return [f.compute(self, SCALAR) for f in self._features]

    def add(self, ts_event: int, price: float, qty: int, trade_type: int) -> None:
        """Add one trade without computing the values (``values()`` gives them later):
        for a caller that needs a row only after the last trade of a nanosecond."""
        cur = self.cur
        if ts_event < cur.ts:
            raise ValidationError(
                f"trade at ts_event {ts_event} is older than the last one ({cur.ts}): "
                "feed trades in time order (resolve late and corrected records first)",
                field="ts_event",
            )
        slot = ts_event // _SLOT
        if slot != self._slot:
            self._slot = slot
            day = trading_day(ts_event, self._tz)
            if day != self._day:
                self._new_day(day)
                cur = BASE
        lp = self._logs.get(price)
        if lp is None:
            if len(self._logs) >= _LOG_CACHE_MAX:
                self._logs.clear()
            lp = self._logs[price] = float(log_prices(np.array([price]))[0])
        r = lp - cur.lp if cur.n else 0.0
        snap = Snap(
            ts_event,
            price,
            lp,
            cur.r2 + r * r,
            cur.n + 1,
            cur.q + qty,
            cur.qb + qty if trade_type == _BUY else cur.qb,
            cur.qs + qty if trade_type == _SELL else cur.qs,
            cur.ql + qty if qty >= self._large else cur.ql,
            cur.pq + price * qty,
        )
        self.cur = snap
        refs = self._refs
        for w, dq in self._dq.items():
            dq.append(snap)
            limit = ts_event + 1 - w
            while dq[0].ts < limit:
                refs[w] = dq.popleft()

    def update_book(
        self, ts: int, bid_px: float, bid_qty: int, ask_px: float, ask_qty: int
    ) -> None:
        """Set the book top (best bid/ask price and quantity) as of ``ts``."""
        if ts < self.book_ts:
            raise ValidationError(
                f"book top at {ts} is older than the last one ({self.book_ts}): feed in time order",
                field="ts",
            )
        self.book_ts = ts
        self.bid_px, self.bid_qty, self.ask_px, self.ask_qty = bid_px, bid_qty, ask_px, ask_qty
        self.book_ok = bid_qty > 0 and ask_qty > 0 and math.isfinite(bid_px + ask_px)

    def values(self) -> list[float]:
        """The values after the last update (at T = last ts_event + 1 ns)."""
        return [f.compute(self, SCALAR) for f in self._features]

    def at(self, t_ns: int) -> list[float]:
        """The values at a later T with no new trade (windows slide on); state unchanged.

        Costs O(trades that left a window since the last trade), not O(1): meant
        for clock-driven rows, not for every trade. T must be after the last
        trade and the last book top (the state cannot go back in time).
        """
        if t_ns <= self.cur.ts or t_ns <= self.book_ts:
            raise ValidationError(
                f"at({t_ns}): T must be after the last trade ({self.cur.ts}) and book top "
                f"({self.book_ts}) seen; evaluate earlier times in batch",
                field="T",
            )
        view = _AtView(self)
        if trading_day(t_ns, self._tz) != self._day:
            view.cur = BASE
            view.refs = dict.fromkeys(self._windows)
        else:
            for w, dq in self._dq.items():
                limit = t_ns - w
                ref = self._refs[w]
                for snap in dq:
                    if snap.ts >= limit:
                        break
                    ref = snap
                view.refs[w] = ref
        return [f.compute(view, SCALAR) for f in self._features]

    def _new_day(self, day: int) -> None:
        self._day = day
        self.cur = BASE
        for dq in self._dq.values():
            dq.clear()
        self._refs = dict.fromkeys(self._windows)


class _AtView:
    """A read-only view of a state at a later T (see ``IntradayState.at``)."""

    def __init__(self, s: IntradayState) -> None:
        self.cur = s.cur
        self.refs: dict[int, Snap | None] = {}
        self.bid_px, self.bid_qty, self.ask_px, self.ask_qty = (
            s.bid_px,
            s.bid_qty,
            s.ask_px,
            s.ask_qty,
        )
        self.book_ok = s.book_ok

    def ref(self, window_ns: int) -> Snap:
        r = self.refs[window_ns]
        return BASE if r is None else r

    def has_ref(self, window_ns: int) -> bool:
        return self.refs[window_ns] is not None
