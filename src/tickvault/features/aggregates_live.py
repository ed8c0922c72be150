"""The current session's aggregates, kept incrementally by a live process (pure).

``SessionAggregatesBuilder.add(ts_event, price, qty)`` takes the session's trades in
time order (non-decreasing ``ts_event``; within one nanosecond in trade-id order, as
``build_session_aggregates`` sorts them); ``snapshot(as_of_ns)`` returns exactly
``build_session_aggregates(symbol, day, trades, as_of_ns=as_of_ns)`` of the trades
added so far, for any ``as_of_ns`` after the last one added. Each ``add`` is O(1)
amortised (it fills the minute boundaries the trade passes); a snapshot copies three
arrays of about 565 values.
"""

from __future__ import annotations

import datetime as dt
import math

import numpy as np

from tickvault.errors import ValidationError
from tickvault.features.aggregates import MINUTE_NS, SessionAggregates
from tickvault.venue.b3 import B3_TZ, SessionHours, session


class SessionAggregatesBuilder:
    """Incremental ``build_session_aggregates`` of one symbol's session (see the module)."""

    __slots__ = (
        "_boundaries_filled",
        "_count",
        "_fast_end",
        "_fast_m",
        "_last_price",
        "_last_ts",
        "_price",
        "_volume",
        "close_ns",
        "date",
        "first_ts",
        "minutes",
        "open_clock_min",
        "open_ns",
        "outside",
        "symbol",
    )

    def __init__(self, symbol: str, day: dt.date, hours: SessionHours | None = None) -> None:
        s = session(symbol, day, hours)
        self.symbol, self.date = symbol, day
        self.open_ns, self.close_ns = s.open_ns, s.close_ns
        self.minutes = max(1, -(-(s.close_ns - s.open_ns) // MINUTE_NS))
        local_open = dt.datetime.fromtimestamp(s.open_ns / 1e9, B3_TZ)
        self.open_clock_min = local_open.hour * 60 + local_open.minute
        # plain lists: an element update is several times cheaper than on numpy arrays
        self._volume = [0] * self.minutes
        self._count = [0] * self.minutes
        self._price = [math.nan] * (self.minutes + 1)
        self._boundaries_filled = 0
        """Boundaries 0.._boundaries_filled-1 are final (a trade at or after them was seen)."""
        self._last_price = math.nan
        self._last_ts = -(2**62)
        self.first_ts: int | None = None
        self.outside = 0
        self._fast_end = -(2**62)
        """A trade in [last trade, _fast_end) is in the last trade's minute _fast_m."""
        self._fast_m = 0

    def add(self, ts_event: int, price: float, qty: int) -> None:
        """One trade (in time order); trades outside [open, close] only count as outside."""
        if self._last_ts <= ts_event < self._fast_end:  # same minute as the last trade
            m = self._fast_m
            self._volume[m] += qty
            self._count[m] += 1
            self._last_price = price
            self._last_ts = ts_event
            return
        if ts_event < self._last_ts:
            raise ValidationError(
                f"trade at {ts_event} is older than the last one added ({self._last_ts}): "
                "add trades in time order",
                field="ts_event",
            )
        if not self.open_ns <= ts_event <= self.close_ns:
            self.outside += 1
            return
        self._last_ts = ts_event
        # boundaries at or before this trade are now final: the last trade before them
        # (or this one, the session's first, when there was none)
        k = (ts_event - self.open_ns) // MINUTE_NS
        k = min(self.minutes, k)
        filled = self._boundaries_filled
        if filled <= k:
            fill = self._last_price if self.first_ts is not None else price
            prices = self._price
            for j in range(filled, k + 1):
                prices[j] = fill
            self._boundaries_filled = k + 1
        if self.first_ts is None:
            self.first_ts = ts_event
        m = k if k < self.minutes else self.minutes - 1
        self._volume[m] += qty
        self._count[m] += 1
        self._last_price = price
        self._fast_m = m
        self._fast_end = min(self.open_ns + (m + 1) * MINUTE_NS, self.close_ns + 1)

    def snapshot(self, as_of_ns: int) -> SessionAggregates:
        """The aggregates of the trades added so far, as of ``as_of_ns`` (after the last)."""
        if as_of_ns <= self._last_ts:
            raise ValidationError(
                f"snapshot as of {as_of_ns} must be after the last trade added ({self._last_ts})",
                field="as_of_ns",
            )
        price = np.array(self._price, dtype=np.float64)
        if self.first_ts is not None:
            boundaries = self.open_ns + MINUTE_NS * np.arange(self.minutes + 1, dtype=np.int64)
            rest = np.arange(self.minutes + 1) >= self._boundaries_filled
            price[rest & (boundaries <= as_of_ns)] = self._last_price
            price[rest & (boundaries > as_of_ns)] = math.nan
        return SessionAggregates(
            symbol=self.symbol,
            date=self.date,
            open_ns=self.open_ns,
            close_ns=self.close_ns,
            open_clock_min=self.open_clock_min,
            volume=np.array(self._volume, dtype=np.int64),
            count=np.array(self._count, dtype=np.int64),
            price=price,
            first_ts=self.first_ts,
            as_of_ns=as_of_ns,
            outside=self.outside,
        )
