"""The incremental session aggregates equal build_session_aggregates as of any time."""

from __future__ import annotations

import datetime as dt

import numpy as np

from hypothesis import given, settings
from hypothesis import strategies as st
from tickvault.features import build_session_aggregates
from tickvault.features.aggregates_live import SessionAggregatesBuilder
from tickvault.records.trades import TradeBatch
from tickvault.venue.b3 import session

DAY = dt.date(2025, 11, 19)
S = session("WINZ25", DAY)


def _batch(ts: list[int], prices: list[float], qty: list[int]) -> TradeBatch:
    n = len(ts)
    return TradeBatch(
        ts_event=np.array(ts, np.int64), ts_recv=np.array(ts, np.int64),
        trade_id=np.arange(1, n + 1, dtype=np.int64), price=np.array(prices, float),
        qty=np.array(qty, np.int64), volume=np.array(prices, float) * np.array(qty),
        buy_agent=np.zeros(n, np.int32), sell_agent=np.zeros(n, np.int32),
        trade_type=np.ones(n, np.uint8), flags=np.zeros(n, np.uint8),
    )  # fmt: skip


offsets = st.integers(-5 * 60_000_000_000, S.close_ns - S.open_ns + 5 * 60_000_000_000)


@settings(max_examples=200, deadline=None)
@given(
    raw=st.lists(st.tuples(offsets, st.integers(1, 50), st.integers(1, 9)), max_size=60),
    checks=st.lists(st.integers(0, 20), min_size=1, max_size=5),
    same_ns=st.booleans(),
)
def test_incremental_aggregates_equal_the_batch_build_as_of_any_later_time(
    raw: list[tuple[int, int, int]], checks: list[int], same_ns: bool
) -> None:
    rows = sorted(raw, key=lambda r: r[0])
    if same_ns and rows:  # sweeps: several trades at one nanosecond
        rows = [rows[0]] * 3 + rows
    ts = [S.open_ns + r[0] for r in rows]
    builder = SessionAggregatesBuilder("WINZ25", DAY)
    for i, (t, r) in enumerate(zip(ts, rows, strict=True)):
        builder.add(t, 100.0 + r[1] * 5, r[2])
        for extra in checks:
            as_of = t + 1 + extra * 17_000_000_000
            if i + 1 < len(ts) and as_of > ts[i + 1]:
                continue  # a snapshot sees every trade before as_of: only up to the next
            want = build_session_aggregates(
                "WINZ25", DAY, _batch(ts[: i + 1], [100.0 + x[1] * 5 for x in rows[: i + 1]],
                                      [x[2] for x in rows[: i + 1]]), as_of_ns=as_of)  # fmt: skip
            assert builder.snapshot(as_of) == want


def test_empty_builder_snapshot_equals_the_build_of_no_trade() -> None:
    builder = SessionAggregatesBuilder("WINZ25", DAY)
    want = build_session_aggregates("WINZ25", DAY, TradeBatch.empty(), as_of_ns=S.open_ns + 5)
    assert builder.snapshot(S.open_ns + 5) == want
