"""Materialised sessions (pure part): stored bytes round trip, and when one stands for T."""

from __future__ import annotations

import datetime as dt

import numpy as np

from hypothesis import given, settings
from hypothesis import strategies as st
from tickvault.engine.aggregates import from_stored, materialise, to_stored
from tickvault.engine.features import parse_duration
from tickvault.features import as_known_at, build_session_aggregates, history_features
from tickvault.feeds.sim.generator import generate_day
from tickvault.records.trades import TradeBatch, TradeFlag
from tickvault.venue import b3

SYMBOL = "WINZ25"
DAY = dt.date(2025, 11, 25)
MIN = 60_000_000_000


def _day(n: int = 400, seed: int = 1) -> TradeBatch:
    return generate_day(SYMBOL, DAY, n, seed=seed)


def test_stored_bytes_give_back_the_same_materialised_session() -> None:
    ms = materialise(SYMBOL, DAY, _day())
    back = from_stored(to_stored(ms))
    assert back.aggs == ms.aggs
    assert back.records == ms.records and back.copies_agree == ms.copies_agree
    for name in ("recv_max", "live_max", "hist_recv_max", "hist_event_max"):
        np.testing.assert_array_equal(getattr(back, name), getattr(ms, name))


@settings(max_examples=40, deadline=None)
@given(minute=st.integers(0, 565), late_row=st.integers(0, 399), delay=st.integers(1, 10**13))
def test_known_by_is_true_exactly_when_no_record_of_the_minutes_read_is_known_later(
    minute: int, late_row: int, delay: int
) -> None:
    batch = _day()
    cols = batch.columns()
    cols["ts_recv"] = cols["ts_recv"].copy()
    cols["ts_recv"][late_row] = cols["ts_event"][late_row] + delay
    batch = TradeBatch(**cols)
    ms = materialise(SYMBOL, DAY, batch, mode="store")
    s = b3.session(SYMBOL, DAY)
    t = s.open_ns + minute * MIN
    read = batch.ts_event < s.open_ns + minute * MIN  # the minutes before T's grid minute
    want = bool((batch.ts_recv[read] <= t).all())
    assert ms.known_by(t, "store", 0, minutes=minute) == want
    if want:  # then the complete aggregate stands for the session as known at T
        known = build_session_aggregates(SYMBOL, DAY, as_known_at(batch, t, mode="store"),
                                         as_of_ns=t)  # fmt: skip
        np.testing.assert_array_equal(known.volume[:minute], ms.aggs.volume[:minute])
        if known.first_ts is not None and known.first_ts < t:
            np.testing.assert_array_equal(known.price[: minute + 1], ms.aggs.price[: minute + 1])
        a = history_features(SYMBOL, t, known, {})
        b = history_features(SYMBOL, t, ms.aggs, {})
        assert [str(v) for v in a.values()] == [str(v) for v in b.values()]


def test_copies_that_disagree_tie_the_aggregate_to_its_mode() -> None:
    batch = _day()
    copy = batch.take(np.arange(5))
    cols = copy.columns()
    cols["flags"] = cols["flags"] | np.uint8(TradeFlag.HISTORY)
    cols["price"] = cols["price"] + 5.0
    both = TradeBatch.concat([batch, TradeBatch(**cols)])
    ms = materialise(SYMBOL, DAY, both, mode="knowledge", feed_latency_ns=0)
    assert not ms.copies_agree
    assert ms.usable("knowledge", 0) and not ms.usable("store", 0)
    assert materialise(SYMBOL, DAY, TradeBatch.concat([batch, batch])).copies_agree


def test_durations_parse_or_say_what_is_accepted() -> None:
    assert parse_duration("1min", "every") == MIN
    assert parse_duration(5, "every") == 5
    for bad in ("0s", "-1min", "soon"):
        try:
            parse_duration(bad, "every")
        except Exception as exc:
            assert type(exc).__name__ == "QueryError" and "every" in str(exc)
        else:
            raise AssertionError(bad)
