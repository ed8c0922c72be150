"""The simulator's clock never runs ahead of the real one, whatever the day and pace."""

from __future__ import annotations

import datetime as dt
import threading
import time
from typing import Any

import numpy as np

from hypothesis import given, settings
from hypothesis import strategies as st
from tickvault.feeds.base import NullEvents
from tickvault.feeds.sim import SimulatedFeeder, default_start
from tickvault.feeds.sim.generator import SESSION_CLOSE, SESSION_OPEN, generate_day
from tickvault.records.trades import TradeBatch
from tickvault.venue.b3 import B3_TZ

NOWS = st.datetimes(
    min_value=dt.datetime(2020, 1, 1),
    max_value=dt.datetime(2035, 12, 31),
    timezones=st.just(dt.UTC),
)


@given(now=NOWS, speed=st.sampled_from([None, 1.01, 10.0, 1000.0]), days=st.integers(1, 8))
@settings(max_examples=300, deadline=None)
def test_faster_than_real_time_simulates_only_completed_sessions(
    now: dt.datetime, speed: float | None, days: int
) -> None:
    start = default_start(now, speed=speed, days=days)
    feeder = SimulatedFeeder(["WINZ25"], speed=speed, start=start, days=days)
    sessions = feeder.sessions()
    assert len(sessions) == days and start.time() == SESSION_OPEN
    closes = [dt.datetime.combine(d, SESSION_CLOSE, tzinfo=B3_TZ) for d in sessions]
    assert max(closes) <= now  # every simulated trade is in the past
    # ... and the latest of them: no completed session lies between the last one and now.
    day = sessions[-1] + dt.timedelta(days=1)
    while dt.datetime.combine(day, SESSION_CLOSE, tzinfo=B3_TZ) <= now:
        assert day.weekday() >= 5
        day += dt.timedelta(days=1)


@given(now=NOWS, speed=st.sampled_from([0.5, 1.0]))
@settings(max_examples=200, deadline=None)
def test_real_time_pace_starts_now_in_a_session_else_at_the_last_open(
    now: dt.datetime, speed: float
) -> None:
    start = default_start(now, speed=speed)
    local = now.astimezone(B3_TZ)
    if local.weekday() < 5 and SESSION_OPEN <= local.time() < SESSION_CLOSE:
        assert start == now
    else:
        assert start < now and start.time() == SESSION_OPEN and start.weekday() < 5
        assert now - start < dt.timedelta(days=4)


class _Soon(SimulatedFeeder):
    """A market whose session is squeezed into the next third of a second."""

    def day_trades(self, symbol: str, day: dt.date) -> TradeBatch:
        batch = generate_day(symbol, day, 200, seed=self.seed)
        cols = batch.columns()
        soon = time.time_ns() + 50_000_000
        cols["ts_event"] = soon + (batch.ts_event - batch.ts_event[0]) // 100_000
        cols["ts_recv"] = cols["ts_event"]
        return TradeBatch(**cols)


class _Keep(NullEvents):
    def __init__(self) -> None:
        self.trades: list[Any] = []

    def on_trade(self, symbol: str, trades: Any) -> None:
        self.trades.append(trades)


def test_a_simulated_trade_is_never_delivered_before_its_event_time() -> None:
    now = dt.datetime.now(B3_TZ)
    feeder = _Soon(["WINZ25"], speed=None, start=now - dt.timedelta(days=1), book=False)
    events = _Keep()
    feeder.run(events, threading.Event())
    got = np.concatenate(events.trades)
    assert len(got) == 200 and int(got["ts_event"].max()) > int(now.timestamp() * 1e9)
    assert (got["ts_recv"] >= got["ts_event"]).all()
