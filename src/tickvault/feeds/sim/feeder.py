"""``SimulatedFeeder``: a realistic B3 mini-futures market, live-paced or as fast as possible.

Trades come from ``feeds.sim.generator`` (session 09:00-18:25 São Paulo, U-shaped
activity, switching calm/trending/volatile regimes, sweeps with many trades in
one millisecond, aggressor sides, broker ids), merged across symbols in event
order. Each aggression is delivered as one ``on_trade`` call, and is followed by
the order-book updates it causes: the hit level's quantity is edited, and when
the price moves the book is re-laid around the new price (a full book, action
4). Content is a pure function of the seed and the days; only ``ts_recv`` (the
moment of delivery) depends on the pace.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from tickvault.feeds.base import Feeder, FeedEvents, Pacer, merged_bursts
from tickvault.feeds.sim.generator import (
    AGENTS,
    SESSION_CLOSE,
    SESSION_OPEN,
    generate_day,
    session_bounds_ns,
    simulate_session,
    simulated_days,
    spec_for,
)
from tickvault.records.book import BOOK_DTYPE
from tickvault.records.trades import TradeBatch, TradeType
from tickvault.timeutil import NS_PER_S
from tickvault.venue.b3 import B3_TZ, sessions

DEFAULT_SYMBOLS = ("WINZ25", "WDOZ25")
_BOOK_SIDE_BID, _BOOK_SIDE_ASK = 0, 1
_ACTION_EDIT, _ACTION_FULL = 1, 4


def default_start(
    now: dt.datetime | None = None, *, speed: float | None = 1.0, days: int = 1
) -> dt.datetime:
    """Where a simulation starts unless told: its simulated clock never runs ahead of
    the real one, so no trade is delivered before the time it says it happened.

    At real-time pace or slower: now, if a session is open; else the open of the
    latest session that has started. Faster than real time (or ``max``, speed None):
    the open of the first of the ``days`` most recent *completed* sessions, so the
    whole simulation is in the past."""
    now = (now or dt.datetime.now(dt.UTC)).astimezone(B3_TZ)
    if speed is not None and speed <= 1:
        if now.weekday() < 5 and SESSION_OPEN <= now.time() < SESSION_CLOSE:
            return now
        day = now.date()
        if now.time() < SESSION_OPEN or now.weekday() >= 5:
            day -= dt.timedelta(days=1)
        while day.weekday() >= 5:
            day -= dt.timedelta(days=1)
        return dt.datetime.combine(day, SESSION_OPEN, tzinfo=B3_TZ)
    day = now.date()
    if now.time() < SESSION_CLOSE:
        day -= dt.timedelta(days=1)
    for i in range(max(days, 1)):
        if i:
            day -= dt.timedelta(days=1)
        while day.weekday() >= 5:
            day -= dt.timedelta(days=1)
    return dt.datetime.combine(day, SESSION_OPEN, tzinfo=B3_TZ)


@dataclass(slots=True)
class _Book:
    """A simple ladder: ``depth`` levels per side around the last price."""

    tick: float
    depth: int
    rng: np.random.Generator
    mid_level: int = 0
    bid_qty: npt.NDArray[np.int64] | None = None
    ask_qty: npt.NDArray[np.int64] | None = None
    offer_id: int = 1

    def _agents(self, n: int) -> npt.NDArray[np.int32]:
        return self.rng.choice(AGENTS[:20], size=n).astype(np.int32)

    def relayout(self, level: int, ts: int) -> npt.NDArray[np.void]:
        """The whole book around ``level`` (best bid one tick below, best ask at it)."""
        d = self.depth
        self.mid_level = level
        self.bid_qty = self.rng.geometric(0.02, size=d).astype(np.int64)
        self.ask_qty = self.rng.geometric(0.02, size=d).astype(np.int64)
        out = np.zeros(2 * d, dtype=BOOK_DTYPE)
        out["ts_event"] = ts
        out["side"][:d], out["side"][d:] = _BOOK_SIDE_BID, _BOOK_SIDE_ASK
        out["price"][:d] = (level - 1 - np.arange(d)) * self.tick
        out["price"][d:] = (level + np.arange(d)) * self.tick
        out["qty"][:d], out["qty"][d:] = self.bid_qty, self.ask_qty
        out["agent"] = self._agents(2 * d)
        out["position"][:d] = out["position"][d:] = d - 1 - np.arange(d)
        out["action"] = _ACTION_FULL
        out["offer_id"] = np.arange(self.offer_id, self.offer_id + 2 * d)
        self.offer_id += 2 * d
        return out

    def trade(self, level: int, buy: bool, qty: int, ts: int) -> npt.NDArray[np.void]:
        """The updates after an aggression that ended at price ``level``."""
        if self.bid_qty is None or self.ask_qty is None or level != self.mid_level:
            return self.relayout(level, ts)
        side_qty = self.ask_qty if buy else self.bid_qty
        side_qty[0] = max(1, side_qty[0] - qty) if self.rng.random() < 0.7 else side_qty[0] + qty
        out = np.zeros(1, dtype=BOOK_DTYPE)
        out["ts_event"] = ts
        out["side"] = _BOOK_SIDE_ASK if buy else _BOOK_SIDE_BID
        out["price"] = (level if buy else level - 1) * self.tick
        out["qty"] = side_qty[0]
        out["agent"] = self._agents(1)
        out["position"] = self.depth - 1
        out["action"] = _ACTION_EDIT
        out["offer_id"] = self.offer_id
        self.offer_id += 1
        return out


class SimulatedFeeder(Feeder):
    """Simulated B3 market. ``speed``: 1.0 real time, 10.0 ten times faster, None as fast
    as possible. ``days`` sessions from ``start`` (a datetime inside or before a
    session; default ``default_start``: past sessions when faster than real time).

    A trade is never delivered before its event time: its ``ts_recv`` (the moment of
    delivery) is never before its ``ts_event``; a simulation of times still to come
    waits for them, whatever the speed."""

    name = "sim"

    def __init__(
        self,
        symbols: Sequence[str] = DEFAULT_SYMBOLS,
        *,
        seed: int = 0,
        speed: float | None = 1.0,
        start: dt.datetime | None = None,
        days: int = 1,
        trades_per_day: int | None = None,
        book: bool = True,
        book_depth: int = 10,
        chained: bool = False,
    ):
        Pacer(speed)  # checks it
        self.symbols = tuple(s.upper() for s in symbols)
        self.seed = seed
        self.speed = speed
        self.start = (start or default_start(speed=speed, days=days)).astimezone(B3_TZ)
        self.days = days
        self.trades_per_day = trades_per_day
        self.book = book
        self.book_depth = book_depth
        self.chained = chained
        """Play the multi-day simulation (``simulate_session``: real B3 sessions, prices and
        regimes chained across days), so the days continue seeded history."""
        self.delivered = 0

    # ------------------------------------------------------------------ content
    def day_trades(self, symbol: str, day: dt.date) -> TradeBatch:
        """All trades of ``symbol`` on ``day`` (deterministic per seed)."""
        n = self.trades_per_day or spec_for(symbol).trades_per_day
        if self.chained:
            return simulate_session(symbol, day, trades_per_day=n, seed=self.seed)
        return generate_day(symbol, day, n, seed=self.seed)

    def sessions(self) -> list[dt.date]:
        if self.chained:
            first = self.start.date()
            found = sessions(self.symbols[0] if self.symbols else "WIN", first,
                             first + dt.timedelta(days=7 * self.days + 14))  # fmt: skip
            return found[: self.days]
        return simulated_days(self.start.date(), self.days)

    def bursts(self) -> Iterator[tuple[str, npt.NDArray[np.void]]]:
        """(symbol, trades of one aggression) in event order, all symbols merged, from
        ``start`` on."""
        start_ns = int(self.start.timestamp() * NS_PER_S)
        for day in self.sessions():
            arrays = []
            for symbol in self.symbols:
                arr = self.day_trades(symbol, day).to_structured()
                arrays.append(arr[arr["ts_event"] >= start_ns])
            yield from merged_bursts(self.symbols, arrays)

    # ------------------------------------------------------------------ delivery
    def run(self, events: FeedEvents, stop: threading.Event) -> None:
        """Deliver every burst (and its book updates) at the configured pace."""
        books = {
            s: _Book(spec_for(s).tick_size, self.book_depth,
                     np.random.default_rng([self.seed, i, 7]))
            for i, s in enumerate(self.symbols)
        }  # fmt: skip
        events.on_state(0, 0)  # logged in
        events.on_state(2, 4)  # market data connected
        pacer = Pacer(self.speed)
        for symbol, trades in self.bursts():
            ts = int(trades["ts_event"][0])
            if not pacer.wait(ts, stop):
                break
            ahead = ts - time.time_ns()
            if ahead > 0 and stop.wait(ahead / NS_PER_S):  # never before its own time
                break
            out = trades.copy()
            out["ts_recv"] = max(time.time_ns(), ts)
            events.on_trade(symbol, out)
            self.delivered += len(out)
            if self.book:
                book = books[symbol]
                last = out[-1]
                level = round(float(last["price"]) / book.tick)
                buy = int(last["trade_type"]) == TradeType.AGGRESSOR_BUY
                updates = book.trade(level, buy, int(out["qty"].sum()), ts)
                updates["ts_recv"] = out["ts_recv"][0]
                events.on_book(symbol, updates)
        events.on_state(2, 0)  # market data disconnected

    def request_history(self, symbol: str, start_ns: int, end_ns: int, events: FeedEvents) -> None:
        """Trades of the sessions in [start_ns, end_ns), one day per step, with progress."""
        symbol = symbol.upper()
        first = dt.datetime.fromtimestamp(start_ns / NS_PER_S, B3_TZ).date()
        last = dt.datetime.fromtimestamp((end_ns - 1) / NS_PER_S, B3_TZ).date()
        days = [d for d in simulated_days(first, (last - first).days + 1) if d <= last]
        for i, day in enumerate(days):
            open_ns, close_ns = session_bounds_ns(day)
            if close_ns <= start_ns or open_ns >= end_ns:
                continue
            arr = self.day_trades(symbol, day).to_structured()
            arr = arr[(arr["ts_event"] >= start_ns) & (arr["ts_event"] < end_ns)]
            arr["ts_recv"] = time.time_ns()
            events.on_history_trade(symbol, arr)
            events.on_progress(symbol, max(1, (i + 1) * 100 // len(days)))
        events.on_progress(symbol, 100)
