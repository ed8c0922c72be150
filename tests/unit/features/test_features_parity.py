"""Live (incremental) and batch evaluation of the same features agree bit for bit."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from hypothesis import given, settings
from hypothesis import strategies as st
from tickvault.errors import ValidationError
from tickvault.features import BookTops, FeatureSet, UserFeature
from tickvault.features.intraday import (
    MINUTE,
    SECOND,
    AggressorImbalance,
    LargeTradeShare,
    LogReturn,
    RealizedVol,
    default_features,
)
from tickvault.feeds.sim.generator import generate_day
from tickvault.records.trades import TradeBatch, TradeFlag, TradeType

NS = 1_000_000_000
OPEN = int(pd.Timestamp("2025-11-19 09:00", tz="America/Sao_Paulo").value)
GAPS = st.one_of(
    st.just(0),  # same nanosecond: a sweep
    st.integers(1, 1_000),
    st.integers(1, 2 * NS),
    st.integers(NS, 400 * NS),  # beyond the 5-minute window
    st.just(20 * 3600 * NS),  # into the next day
)
TYPES = st.sampled_from([int(t) for t in TradeType])


@st.composite
def streams(draw: st.DrawFn) -> tuple[list[tuple[int, int, tuple[float, int, int, int]]], int]:
    """Events (ts, kind, payload) in feed order: kind 0 book top, 1 trade."""
    n = draw(st.integers(1, 120))
    ts = OPEN
    tick = draw(st.sampled_from([5.0, 0.5, 0.01, 0.37]))
    level = draw(st.integers(1, 30_000))
    events = []
    for _ in range(n):
        ts += draw(GAPS)
        if draw(st.integers(0, 4)) == 0:
            bid = level + draw(st.integers(-3, 0))
            payload = (
                bid * tick,
                draw(st.integers(0, 50)),
                (bid + 1) * tick,
                draw(st.integers(0, 50)),
            )
            events.append((ts, 0, payload))
        else:
            level = max(1, level + draw(st.integers(-4, 4)))
            payload = (level * tick, draw(st.integers(1, 300)), draw(TYPES), 0)
            events.append((ts, 1, payload))
    events.sort(key=lambda e: (e[0], e[1]))  # book tops before trades of the same ns
    return events, draw(st.integers(1, 100))


def _split(
    events: list[tuple[int, int, tuple[float, int, int, int]]],
) -> tuple[TradeBatch, BookTops]:
    trades = [(t, p) for t, k, p in events if k == 1]
    books = [(t, p) for t, k, p in events if k == 0]
    n = len(trades)
    batch = TradeBatch(
        ts_event=np.array([t for t, _ in trades], dtype=np.int64),
        ts_recv=np.array([t for t, _ in trades], dtype=np.int64),
        trade_id=np.arange(1, n + 1, dtype=np.int64),
        price=np.array([p[0] for _, p in trades], dtype=np.float64),
        qty=np.array([p[1] for _, p in trades], dtype=np.int64),
        volume=np.zeros(n),
        buy_agent=np.zeros(n, np.int32),
        sell_agent=np.zeros(n, np.int32),
        trade_type=np.array([p[2] for _, p in trades], dtype=np.uint8),
        flags=np.zeros(n, np.uint8),
    )
    book = BookTops(
        ts=np.array([t for t, _ in books], dtype=np.int64),
        bid_px=np.array([p[0] for _, p in books], dtype=np.float64),
        bid_qty=np.array([p[1] for _, p in books], dtype=np.int64),
        ask_px=np.array([p[2] for _, p in books], dtype=np.float64),
        ask_qty=np.array([p[3] for _, p in books], dtype=np.int64),
    )
    return batch, book


def _feature_set(large: int) -> FeatureSet:
    extra = [LogReturn(250 * 1_000_000), RealizedVol(3 * SECOND), AggressorImbalance(7 * SECOND)]
    return FeatureSet([*default_features(large), *extra])


@settings(max_examples=150, deadline=None)
@given(streams())
def test_live_rows_equal_batch_rows_exactly(stream: tuple[list, int]) -> None:  # type: ignore[type-arg]
    events, large = stream
    fs = _feature_set(large)
    state = fs.new_state()
    live = []
    for ts, kind, p in events:
        if kind == 0:
            state.update_book(ts, *p)
        else:
            live.append(state.update(ts, p[0], p[1], p[2]))
    trades, book = _split(events)
    batch = fs.batch(trades, book)
    got = np.array(live, dtype=np.float64).reshape(len(live), len(fs.names))
    for j, name in enumerate(fs.names):
        np.testing.assert_array_equal(got[:, j], batch[name], err_msg=name, strict=True)


@settings(max_examples=100, deadline=None)
@given(streams(), st.integers(1, 600 * NS))
def test_live_at_later_time_equals_batch_at_time(stream: tuple[list, int], later: int) -> None:  # type: ignore[type-arg]
    events, large = stream
    fs = _feature_set(large)
    state = fs.new_state()
    for ts, kind, p in events:
        if kind == 0:
            state.update_book(ts, *p)
        else:
            state.update(ts, p[0], p[1], p[2])
    t = events[-1][0] + later
    trades, book = _split(events)
    want = fs.at(trades, [t], book).iloc[0].to_numpy()
    np.testing.assert_array_equal(np.array(state.at(t)), want, strict=True)


@settings(max_examples=60, deadline=None)
@given(streams())
def test_batch_at_after_each_nanosecond_equals_the_row_of_its_last_trade(
    stream: tuple[list, int],
) -> None:  # type: ignore[type-arg]
    events, large = stream
    fs = _feature_set(large)
    trades, book = _split(events)
    rows = pd.DataFrame(fs.batch(trades, book))
    ts = trades.ts_event
    if ts.size == 0:
        assert rows.empty
        return
    last_of_ns = np.flatnonzero(np.append(ts[1:] != ts[:-1], True))
    # book tops at the same ns come first in the feed, so they are in the row already
    at = fs.at(trades, ts[last_of_ns] + 1, book)
    np.testing.assert_array_equal(at.to_numpy(), rows.iloc[last_of_ns].to_numpy())


def test_live_equals_batch_on_a_simulated_session() -> None:
    trades = generate_day("WINZ25", dt.date(2025, 11, 19), 20_000, seed=5)
    fs = FeatureSet([*default_features(5)])
    state = fs.new_state()
    cols = zip(trades.ts_event.tolist(), trades.price.tolist(), trades.qty.tolist(),
               trades.trade_type.tolist(), strict=True)  # fmt: skip
    live = np.array([state.update(*c) for c in cols])
    batch = fs.batch(trades)
    for j, name in enumerate(fs.names):
        np.testing.assert_array_equal(live[:, j], batch[name], err_msg=name)
    assert np.isfinite(batch["rv_5min"][-1]) and batch["large_trade_share_1min"].max() > 0


def _user_fn(df: pd.DataFrame) -> float:
    """qty-weighted mean price minus the last price, plus the count of aggressor buys."""
    if df.empty:
        return float("nan")
    vw = float((df["price"] * df["qty"]).sum() / df["qty"].sum())
    return vw - float(df["price"].iloc[-1]) + float((df["trade_type"] == 2).sum())


@settings(max_examples=40, deadline=None)
@given(streams(), st.integers(1, 400 * NS))
def test_user_feature_live_equals_batch(stream: tuple[list, int], lookback: int) -> None:  # type: ignore[type-arg]
    events, _ = stream
    feature = UserFeature(_user_fn, lookback, name="user")
    state = feature.new_state()
    live = []
    for ts, kind, p in events:
        if kind == 1:
            state.update(ts, p[0], p[1], p[2])
            live.append(state.value())
    trades, _ = _split(events)
    np.testing.assert_array_equal(np.array(live, dtype=np.float64), feature.batch(trades))
    t = int(trades.ts_event[-1]) + lookback // 2 + 1 if len(trades) else OPEN
    assert state.at(t) == pytest.approx(feature.at(trades, [t])[0], nan_ok=True, rel=0, abs=0)


def test_user_feature_sees_exactly_the_lookback_before_t() -> None:
    seen: list[pd.DataFrame] = []

    def fn(df: pd.DataFrame) -> float:
        seen.append(df)
        return float(len(df))

    ts = OPEN + np.array([0, 10, 20, 30], dtype=np.int64) * NS
    trades = generate_day("WINZ25", dt.date(2025, 11, 19), 4).take(np.arange(4))
    trades = TradeBatch(**{**trades.columns(), "ts_event": ts})
    got = UserFeature(fn, 20 * NS, name="n").at(trades, [OPEN + 30 * NS])
    assert got[0] == 2.0  # [T-20 s, T) holds the trades at 10 s and 20 s, not the one at 30 s
    assert list(seen[0].columns) == ["price", "qty", "trade_type"]
    assert str(seen[0].index.tz) == "UTC"


def test_live_state_refuses_a_trade_older_than_the_last() -> None:
    state = FeatureSet().new_state()
    state.update(OPEN + 10, 100.0, 1, 2)
    with pytest.raises(ValidationError, match="older than the last one"):
        state.update(OPEN + 9, 100.0, 1, 2)
    with pytest.raises(ValidationError, match="T must be after the last trade"):
        state.at(OPEN + 10)


def test_batch_refuses_unresolved_corrections() -> None:
    trades = generate_day("WINZ25", dt.date(2025, 11, 19), 10)
    flags = trades.flags.copy()
    flags[3] = TradeFlag.CANCEL
    with pytest.raises(ValidationError, match="resolve them first"):
        FeatureSet().batch(TradeBatch(**{**trades.columns(), "flags": flags}))


def test_feature_sets_refuse_two_large_trade_thresholds() -> None:
    from tickvault.errors import QueryError

    with pytest.raises(QueryError, match="one large-trade threshold"):
        FeatureSet([LargeTradeShare(MINUTE, 5), LargeTradeShare(2 * MINUTE, 9)])


def test_batch_and_user_features_refuse_unsorted_input() -> None:
    trades = generate_day("WINZ25", dt.date(2025, 11, 19), 50, seed=2)
    backwards = trades.take(np.arange(49, -1, -1))
    with pytest.raises(ValidationError, match="sorted by ts_event"):
        FeatureSet().batch(backwards)
    with pytest.raises(ValidationError, match="sorted by ts_event"):
        UserFeature(_user_fn, NS, name="u").batch(backwards)
    book = BookTops(
        ts=np.array([OPEN + 1, OPEN], dtype=np.int64),
        bid_px=np.array([1.0, 1.0]),
        bid_qty=np.array([1, 1], dtype=np.int64),
        ask_px=np.array([2.0, 2.0]),
        ask_qty=np.array([1, 1], dtype=np.int64),
    )
    with pytest.raises(ValidationError, match="book tops must be sorted"):
        FeatureSet().batch(trades, book)
