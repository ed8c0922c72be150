"""Knowledge time, as-known-at-T resolution, and the no-look-ahead property."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tickvault.features import (
    DEFAULT_FEED_LATENCY_NS,
    FeatureSet,
    as_known_at,
    history_at,
    intraday_at,
    knowledge_time,
)
from tickvault.records.trades import TradeBatch, TradeFlag
from tickvault.storage.resolve import Decoded, resolve
from tickvault.timeutil import trading_days
from tickvault.venue.b3 import B3_TZ

SYMBOL = "WINZ25"
NS = 1_000_000_000
H, E, C = int(TradeFlag.HISTORY), int(TradeFlag.EDIT), int(TradeFlag.CANCEL)


def _batch(rows: list[tuple[int, int, int, float, int, int]]) -> TradeBatch:
    """Records from (ts_event, ts_recv, trade_id, price, qty, flags)."""
    n = len(rows)
    col = list(zip(*rows, strict=True)) if rows else [()] * 6
    return TradeBatch(
        ts_event=np.array(col[0], dtype=np.int64),
        ts_recv=np.array(col[1], dtype=np.int64),
        trade_id=np.array(col[2], dtype=np.int64),
        price=np.array(col[3], dtype=np.float64),
        qty=np.array(col[4], dtype=np.int64),
        volume=np.zeros(n),
        buy_agent=np.zeros(n, np.int32),
        sell_agent=np.zeros(n, np.int32),
        trade_type=np.full(n, 2, np.uint8),
        flags=np.array(col[5], dtype=np.uint8),
    )


T0 = int(pd.Timestamp("2025-11-19 10:00", tz="America/Sao_Paulo").value)


def test_knowledge_time_follows_the_documented_table() -> None:
    lat = 7_000_000
    records = _batch([
        (T0, T0 + 3, 1, 10.0, 1, 0),              # live: ts_recv
        (T0, T0 + 9 * NS, 2, 10.0, 1, H),         # imported later: ts_event + latency
        (T0, T0 + 1_000, 3, 10.0, 1, H),          # history received sooner than the latency
        (T0, T0 + 9 * NS, 4, 11.0, 1, H | E),     # a file's correction: ts_recv
        (T0, T0 + 9 * NS, 5, 10.0, 1, H | C),     # a file's cancel: ts_recv
        (T0, T0 + 5 * NS, 6, 10.0, 1, C),         # a live cancel: ts_recv
    ])  # fmt: skip
    got = knowledge_time(records, lat).tolist()
    assert got == [T0 + 3, T0 + lat, T0 + 1_000, T0 + 9 * NS, T0 + 9 * NS, T0 + 5 * NS]


def test_imported_history_is_known_at_event_time_but_not_in_store_mode() -> None:
    imported = _batch([(T0 + i * NS, T0 + 86_400 * NS, i + 1, 10.0 + i, 1, H) for i in range(5)])
    t = T0 + 3 * NS
    knowledge = as_known_at(imported, t)
    store = as_known_at(imported, t, mode="store")
    # trades at T0, T0+1s and T0+2s are known (event + 5 ms < T); the one at T0+3s is not before T
    assert knowledge.trade_id.tolist() == [1, 2, 3]
    assert len(store) == 0


def test_as_known_at_resolves_edits_and_cancels_known_by_t() -> None:
    records = _batch([
        (T0, T0 + 1, 1, 10.0, 1, 0),
        (T0 + 1, T0 + 2, 2, 20.0, 2, 0),
        (T0 + 1, T0 + 10 * NS, 2, 21.0, 2, E),   # an edit of trade 2, known later
        (T0 + 2, T0 + 3, 3, 30.0, 3, 0),
        (T0 + 2, T0 + 5 * NS, 3, 30.0, 3, C),    # a cancel of trade 3
    ])  # fmt: skip
    early = as_known_at(records, T0 + NS)
    assert early.trade_id.tolist() == [1, 2, 3] and early.price.tolist() == [10.0, 20.0, 30.0]
    late = as_known_at(records, T0 + 20 * NS)
    assert late.trade_id.tolist() == [1, 2] and late.price.tolist() == [10.0, 21.0]
    assert not (late.flags & (E | C)).any()


RECORD = st.tuples(
    st.integers(0, 40),  # ts_event offset (s): collisions of identity wanted
    st.integers(0, 60),  # receive delay (s)
    st.integers(1, 12),  # trade_id
    st.integers(1, 50),  # price
    st.sampled_from([0, H, E, C, H | E, H | C]),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(RECORD, max_size=40), st.integers(0, 100))
def test_store_mode_resolution_equals_the_store_resolver(
    raw: list[tuple[int, int, int, int, int]], k: int
) -> None:
    rows = [(T0 + e * NS, T0 + (e + d) * NS, tid, float(p), 1, f) for e, d, tid, p, f in raw]
    # the same trade_id on one day always refers to the same ts_event in the store
    first_ts: dict[int, int] = {}
    rows = [(first_ts.setdefault(r[2], r[0]), *r[1:]) for r in rows]
    records = _batch(rows)
    order = np.argsort(records.ts_event, kind="stable")
    records = records.take(order)
    t = T0 + k * NS
    ours = as_known_at(records, t, mode="store")
    days = trading_days(records.ts_event, B3_TZ)
    decoded = Decoded(
        columns=records.columns(),
        days=days,
        counts=np.ones(days.size, dtype=np.int64),
        flags_or=int(np.bitwise_or.reduce(records.flags)) if len(records) else 0,
        recv_max=int(records.ts_recv.max()) if len(records) else 0,
    )
    theirs = resolve(decoded, -(2**62), t, t)
    for name, col in ours.items():
        want = theirs[name]
        if name == "flags":
            want = want & ~np.uint8(E | C)
        np.testing.assert_array_equal(col, want, err_msg=name)


# ---- no look-ahead -------------------------------------------------------------


@pytest.fixture(scope="module")
def recent(history: dict[dt.date, TradeBatch], days: list[dt.date]) -> TradeBatch:
    """The last 8 sessions: enough history for every feature, small enough to redo often."""
    return TradeBatch.concat([history[d] for d in days[-8:]])


def _future_records(base: TradeBatch, t: int, draw: st.DataObject) -> TradeBatch:
    """Records that a live system could not know at T."""
    lat = DEFAULT_FEED_LATENCY_NS
    before = np.flatnonzero(base.ts_event < t)
    n = int(draw.draw(st.integers(1, 30)))
    rows = []
    for _ in range(n):
        kind = draw.draw(st.integers(0, 4))
        recv = t + draw.draw(st.integers(1, 3600 * NS))
        if kind == 0 or before.size == 0:  # a trade at or after T, received whenever
            ts = t + draw.draw(st.integers(0, 3 * 3600 * NS))
            rows.append((ts, min(recv, ts + 1), 900_000 + len(rows), 99_000.0, 7, 0))
        elif kind in (1, 2):  # a live or file edit/cancel of a past trade, known after T
            i = int(before[draw.draw(st.integers(0, before.size - 1))])
            flag = draw.draw(st.sampled_from([E, C, H | E, H | C]))
            rows.append((int(base.ts_event[i]), recv, int(base.trade_id[i]), 1.0, 999, flag))
        elif kind == 3:  # a live trade before T that arrived late
            ts = t - draw.draw(st.integers(1, 600 * NS))
            rows.append((ts, recv, 800_000 + len(rows), 1.0, 999, 0))
        else:  # an imported trade just before T, known at ts_event + latency > T
            ts = t - draw.draw(st.integers(1, lat - 1))
            rows.append((ts, recv, 700_000 + len(rows), 1.0, 999, H))
    return _batch(rows)


def _same(a: object, b: object) -> bool:
    return str(a) == str(b)  # NaN-aware, exact (repr of floats is round-trip exact)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.data())
def test_records_known_after_t_never_change_features_at_t(
    recent: TradeBatch, days: list[dt.date], data: st.DataObject
) -> None:
    day = days[-1]
    opened = int(pd.Timestamp(day).tz_localize("America/Sao_Paulo").value) + 9 * 3600 * NS
    t = opened + data.draw(st.integers(0, 565 * 60 * NS))
    extra = _future_records(recent, t, data)
    both = TradeBatch.concat([recent, extra])
    fs = FeatureSet()
    assert _same(history_at(SYMBOL, recent, t), history_at(SYMBOL, both, t))
    pd.testing.assert_frame_equal(intraday_at(recent, [t], fs), intraday_at(both, [t], fs))


def test_a_cancel_known_before_t_does_change_features_at_t(recent: TradeBatch) -> None:
    """The control: the property above is not vacuous."""
    last = int(np.flatnonzero(recent.ts_event == recent.ts_event.max())[0])
    ts = int(recent.ts_event[last])
    t = ts + 60 * NS
    cancel = _batch([(ts, ts + 1, int(recent.trade_id[last]), 1.0, 1, C)])
    both = TradeBatch.concat([recent, cancel])
    a = intraday_at(recent, [t]).iloc[0]
    b = intraday_at(both, [t]).iloc[0]
    assert a["trade_intensity_1min"] != b["trade_intensity_1min"]
