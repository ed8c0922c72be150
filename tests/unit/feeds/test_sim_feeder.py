"""The simulated market: deterministic per seed, and shaped like B3 mini futures."""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

import numpy as np
import numpy.typing as npt

from tickvault.feeds.sim import SimulatedFeeder, default_start
from tickvault.records.trades import TradeType
from tickvault.venue.b3 import B3_TZ


class _Record:
    """FeedEvents that keep everything."""

    def __init__(self) -> None:
        self.trades: list[tuple[str, npt.NDArray[np.void]]] = []
        self.book: list[tuple[str, npt.NDArray[np.void]]] = []
        self.states: list[tuple[int, int]] = []
        self.history: list[tuple[str, npt.NDArray[np.void]]] = []
        self.progress: list[int] = []

    def on_trade(self, symbol: str, trades: Any) -> None:
        self.trades.append((symbol, trades))

    def on_history_trade(self, symbol: str, trades: Any) -> None:
        self.history.append((symbol, trades))

    def on_book(self, symbol: str, updates: Any) -> None:
        self.book.append((symbol, updates))

    def on_state(self, conn_type: int, result: int) -> None:
        self.states.append((conn_type, result))

    def on_progress(self, symbol: str, percent: int) -> None:
        self.progress.append(percent)


START = dt.datetime(2025, 11, 3, 9, 0, tzinfo=B3_TZ)


def _run(seed: int) -> _Record:
    feeder = SimulatedFeeder(seed=seed, speed=None, start=START, trades_per_day=20_000)
    events = _Record()
    feeder.run(events, threading.Event())
    return events


def _content(rec: _Record) -> list[tuple[str, bytes]]:
    out = []
    for symbol, arr in rec.trades:
        a = arr.copy()
        a["ts_recv"] = 0  # the only field that depends on when it ran
        out.append((symbol, a.tobytes()))
    for symbol, updates in rec.book:
        u = updates.copy()
        u["ts_recv"] = 0  # the time of delivery, too
        out.append((symbol, u.tobytes()))
    return out


def test_same_seed_same_market_other_seed_other_market() -> None:
    a, b, c = _run(3), _run(3), _run(4)
    assert _content(a) == _content(b)
    assert _content(a) != _content(c)


def test_the_market_looks_like_b3_mini_futures() -> None:
    rec = _run(5)
    assert rec.states[:2] == [(0, 0), (2, 4)]  # logged in, market connected
    by_symbol: dict[str, list[npt.NDArray[np.void]]] = {}
    for symbol, arr in rec.trades:
        assert (arr["ts_event"] == arr["ts_event"][0]).all()  # one call = one aggression
        by_symbol.setdefault(symbol, []).append(arr)
    assert set(by_symbol) == {"WINZ25", "WDOZ25"}
    win = np.concatenate(by_symbol["WINZ25"])
    assert len(win) == 20_000
    assert (win["price"] % 5 == 0).all()  # 5-point tick
    local = [dt.datetime.fromtimestamp(t / 1e9, B3_TZ).time() for t in win["ts_event"][[0, -1]]]
    assert dt.time(9, 0) <= local[0] and local[1] < dt.time(18, 25)
    assert set(np.unique(win["trade_type"])) == {TradeType.AGGRESSOR_BUY, TradeType.AGGRESSOR_SELL}
    assert max(len(a) for a in by_symbol["WINZ25"]) >= 5  # sweeps: many trades in one ms
    assert len(np.unique(win["buy_agent"])) > 10
    # events in time order across symbols
    firsts = np.array([arr["ts_event"][0] for _, arr in rec.trades])
    assert (np.diff(firsts) >= 0).all()
    # U-shape: the first and last half hours are busier than the midday half hour
    minutes = (win["ts_event"] - win["ts_event"][0]) // 60_000_000_000
    open_, mid, close = (np.sum((minutes >= a) & (minutes < a + 30)) for a in (0, 240, 535))
    assert open_ > 2 * mid and close > 2 * mid
    # a book around the price, both sides
    symbol, first_book = rec.book[0]
    assert len(first_book) == 20 and set(first_book["side"]) == {0, 1}
    bids, asks = first_book[first_book["side"] == 0], first_book[first_book["side"] == 1]
    assert bids["price"].max() < asks["price"].min()


def test_history_requests_deliver_the_same_trades_with_progress() -> None:
    feeder = SimulatedFeeder(seed=3, speed=None, start=START, trades_per_day=5_000)
    rec = _Record()
    start_ns = int(START.timestamp() * 1e9)
    feeder.request_history("WINZ25", start_ns, start_ns + 3 * 86_400 * 10**9, rec)
    assert rec.progress[-1] == 100 and rec.progress == sorted(rec.progress)
    days = [np.unique(a["ts_event"] // (86_400 * 10**9)) for _, a in rec.history]
    assert len(rec.history) == 3 and all(len(d) == 1 for d in days)
    live = feeder.day_trades("WINZ25", START.date()).to_structured()
    assert np.array_equal(rec.history[0][1]["trade_id"], live["trade_id"])


def test_default_start_is_now_in_session_else_the_last_open() -> None:
    inside = dt.datetime(2025, 11, 5, 11, 0, tzinfo=B3_TZ)
    assert default_start(inside) == inside
    saturday = dt.datetime(2025, 11, 8, 11, 0, tzinfo=B3_TZ)
    assert default_start(saturday) == dt.datetime(2025, 11, 7, 9, 0, tzinfo=B3_TZ)
    early_monday = dt.datetime(2025, 11, 10, 7, 0, tzinfo=B3_TZ)
    assert default_start(early_monday) == dt.datetime(2025, 11, 7, 9, 0, tzinfo=B3_TZ)
