"""Session aggregates: per-minute volume, count and boundary prices; partial ones as of X."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from hypothesis import given, settings
from hypothesis import strategies as st
from tickvault.errors import QueryError, ValidationError
from tickvault.features import build_session_aggregates
from tickvault.feeds.sim.generator import generate_day
from tickvault.records.trades import TradeBatch, TradeFlag

SYMBOL = "WINZ25"
DAY = dt.date(2025, 11, 19)
NS = 1_000_000_000
OPEN = int(pd.Timestamp("2025-11-19 09:00", tz="America/Sao_Paulo").value)
CLOSE = OPEN + 565 * 60 * NS


@pytest.fixture(scope="module")
def trades() -> TradeBatch:
    return generate_day(SYMBOL, DAY, 6000, seed=9)


def test_aggregates_match_a_pandas_resample(trades: TradeBatch) -> None:
    aggs = build_session_aggregates(SYMBOL, DAY, trades)
    df = pd.DataFrame({"ts": trades.ts_event, "qty": trades.qty, "price": trades.price})
    minute = np.minimum((df.ts - OPEN) // (60 * NS), 564)
    assert aggs.minutes == 565 and aggs.open_clock_min == 540
    np.testing.assert_array_equal(
        aggs.volume, df.groupby(minute).qty.sum().reindex(range(565), fill_value=0)
    )
    np.testing.assert_array_equal(
        aggs.count, df.groupby(minute).size().reindex(range(565), fill_value=0)
    )
    for k in (0, 1, 200, 565):
        before = df[df.ts < OPEN + k * 60 * NS]
        want = before.price.iloc[-1] if len(before) else df.price.iloc[0]
        assert aggs.price[k] == want
    assert aggs.first_ts == int(trades.ts_event[0]) and aggs.outside == 0


@settings(max_examples=40, deadline=None)
@given(st.integers(OPEN - 60 * NS, CLOSE + 60 * NS), st.integers(0, 3600 * NS))
def test_partial_aggregates_only_fill_in_as_time_goes_on(
    trades: TradeBatch, x: int, more: int
) -> None:
    a = build_session_aggregates(SYMBOL, DAY, trades, as_of_ns=x)
    b = build_session_aggregates(SYMBOL, DAY, trades, as_of_ns=x + more)
    # a partial aggregate is the aggregate of the trades before X, with later boundaries unknown
    early = trades.take(np.flatnonzero(trades.ts_event < x))
    c = build_session_aggregates(SYMBOL, DAY, early)
    boundaries = OPEN + 60 * NS * np.arange(566)
    np.testing.assert_array_equal(a.price[boundaries <= x], c.price[boundaries <= x])
    assert np.isnan(a.price[boundaries > x]).all()
    np.testing.assert_array_equal(a.volume, c.volume)
    set_a = ~np.isnan(a.price)
    np.testing.assert_array_equal(a.price[set_a], b.price[set_a])
    done = OPEN + 60 * NS * np.arange(1, 566) <= x  # minutes that ended by X
    np.testing.assert_array_equal(a.volume[done], b.volume[done])


def test_aggregates_count_trades_outside_the_session_apart() -> None:
    prev = generate_day(SYMBOL, dt.date(2025, 11, 18), 50, seed=1)
    day = generate_day(SYMBOL, DAY, 70, seed=2)
    aggs = build_session_aggregates(SYMBOL, DAY, TradeBatch.concat([prev, day]))
    assert aggs.outside == 50 and int(aggs.count.sum()) == 70


def test_aggregates_of_an_empty_session_are_nan_prices() -> None:
    aggs = build_session_aggregates(SYMBOL, DAY, TradeBatch.empty())
    assert aggs.first_ts is None and np.isnan(aggs.price).all() and aggs.volume.sum() == 0


def test_aggregates_refuse_unresolved_corrections_and_holidays(trades: TradeBatch) -> None:
    flags = trades.flags.copy()
    flags[0] = TradeFlag.EDIT
    with pytest.raises(ValidationError, match="resolve them first"):
        build_session_aggregates(SYMBOL, DAY, TradeBatch(**{**trades.columns(), "flags": flags}))
    with pytest.raises(QueryError, match="not a B3 trading session"):
        build_session_aggregates(SYMBOL, dt.date(2025, 11, 20), trades)
