"""The pure stream core (``features.stream``): rows at T = e + 1 equal the batch path, the
skip rules, and rows only at chosen points equal the full rows at those T."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from hypothesis import given, settings
from hypothesis import strategies as st
from tickvault.errors import QueryError
from tickvault.features import FeatureSet, SessionAggregates
from tickvault.features.stream import FeatureStream, Row
from tickvault.feeds.sim.generator import simulate_session
from tickvault.records.trades import TradeBatch, TradeFlag

DAY = dt.date(2025, 12, 1)
_TRADES: dict[int, TradeBatch] = {}


def _trades(n: int = 4_000) -> TradeBatch:
    if n not in _TRADES:
        _TRADES[n] = simulate_session("WINZ25", DAY, trades_per_day=n, seed=3)
    return _TRADES[n]


def _none(symbol: str, day: dt.date) -> dict[dt.date, SessionAggregates]:
    return {}


def _run(trades: TradeBatch, every_ns: int = 0, chunk: int = 0) -> tuple[list[Row], list[int]]:
    stream = FeatureStream("WINZ25", _none, every_ns=every_ns)
    out: list[Row] = []
    at: list[int] = []
    rec = trades.to_structured()
    step = chunk or len(rec)
    for lo in range(0, len(rec), step):
        part = rec[lo : lo + step]
        got: list[int] = []
        stream.trades(part["ts_event"].tolist(), part["trade_id"].tolist(),
                      part["price"].tolist(), part["qty"].tolist(), part["trade_type"].tolist(),
                      part["flags"].tolist(), part["ts_recv"].tolist(), out, got)  # fmt: skip
        at += [lo + j for j in got]
    stream.flush(out)
    return out, at


def test_stream_rows_equal_the_batch_values_at_each_event_time() -> None:
    trades = _trades()
    rows, at = _run(trades)
    ts = trades.ts_event
    last = np.ones(ts.size, dtype=bool)
    last[:-1] = ts[1:] != ts[:-1]
    assert [r[0] for r in rows] == (ts[last] + 1).tolist()
    cols = FeatureSet().batch(trades)
    idx = np.flatnonzero(last)
    for k, name in enumerate(FeatureSet().names):
        got = np.array([r[3][k] for r in rows])
        want = cols[name][idx]
        assert ((got == want) | (np.isnan(got) & np.isnan(want))).all(), name
    # the trade that completed each row is the first one after its T; ts_recv its last trade's
    assert all(ts[j] >= r[0] for r, j in zip(rows, at, strict=False))
    assert [r[2] for r in rows] == trades.ts_recv[idx].tolist()
    assert [r[1] for r in rows] == trades.trade_id[idx].tolist()


@settings(max_examples=25, deadline=None)
@given(every_s=st.sampled_from([0.001, 0.05, 1.0, 7.0, 60.0]), chunk=st.integers(0, 700))
def test_stream_rows_at_chosen_points_equal_the_full_rows_there(every_s: float, chunk: int) -> None:
    trades = _trades()
    full = {r[0]: r for r in _run(trades)[0]}
    every = int(every_s * 1e9)
    some, _ = _run(trades, every_ns=every, chunk=chunk)
    assert some and len(some) <= len(full)
    times = sorted(full)
    expect, next_point = [], -(2**62)
    for t in times:  # the first row at or after each grid point
        if t >= next_point:
            expect.append(t)
            next_point = (t // every + 1) * every
    assert [r[0] for r in some] == expect
    for r in some:
        f = full[r[0]]
        assert r[1:3] == f[1:3] and r[5] == f[5]
        assert np.array_equal(r[3], f[3], equal_nan=True)
        assert np.array_equal(r[4], f[4], equal_nan=True)


def test_stream_skips_corrections_duplicates_and_late_trades() -> None:
    rec = _trades(200).to_structured()[:50]
    stream = FeatureStream("WINZ25", _none)
    out: list[Row] = []
    stream.trade_columns(rec[:30], out)
    replay = rec[10:40].copy()  # 20 seen again, 10 new
    late = rec[5:6].copy()
    late["trade_id"] = 10_000  # a new id, older than the last trade: late
    edit = rec[45:46].copy()
    edit["flags"] = np.uint8(TradeFlag.EDIT)
    taken = stream.trade_columns(replay, out) + stream.trade_columns(late, out)
    taken += stream.trade_columns(edit, out)
    assert taken == 10
    st_ = stream.stats
    # a replayed trade of the last nanosecond is a duplicate, an older one counts as late
    assert st_.skipped_duplicates + st_.skipped_late == 21 and st_.skipped_corrections == 1
    assert st_.trades == 40 and stream.last_tid == int(rec["trade_id"][39])


def test_stream_refuses_a_negative_step() -> None:
    with pytest.raises(QueryError, match="every_ns"):
        FeatureStream("WINZ25", _none, every_ns=-1)


# ---------------------------------------------------------------------- vectorised replay
def _history_days() -> tuple[TradeBatch, dict[dt.date, SessionAggregates]]:
    from tickvault.features import build_session_aggregates
    from tickvault.feeds.sim.generator import simulate_sessions

    days = simulate_sessions("WINZ25", 7, end=DAY, trades_per_day=3_000, seed=5)
    prev = {d: build_session_aggregates("WINZ25", d, b) for d, b in days.items() if d != DAY}
    return days[DAY], prev


def _messy(batch: TradeBatch, seed: int) -> tuple[np.ndarray, list[tuple[int, np.ndarray]]]:
    """The day's records in an arrival order with replays, late trades, corrections, and
    book messages between them (the sim feeder's book)."""
    from tickvault.feeds.sim.feeder import _Book

    rng = np.random.default_rng(seed)
    rec = batch.to_structured()
    pieces = [rec]
    if seed % 2:
        dup = rec[rng.choice(len(rec), 40, replace=False)]
        edit = rec[rng.choice(len(rec), 5, replace=False)].copy()
        edit["flags"] = np.uint8(TradeFlag.EDIT)
        pieces += [dup, edit]
    allr = np.concatenate(pieces)
    # arrival: mostly in time order, some records later than their neighbours (late)
    key = allr["ts_event"].astype(np.float64) + rng.exponential(1e6, len(allr)) * (
        rng.random(len(allr)) < 0.05) * 1e3  # fmt: skip
    allr = allr[np.argsort(key, kind="stable")]
    book = _Book(5.0, 5, np.random.default_rng(seed))
    msgs = []
    for cut in sorted(rng.choice(len(allr), 60, replace=False).tolist()):
        level = round(float(allr["price"][max(cut - 1, 0)]) / 5.0)
        msgs.append((cut, book.trade(level, bool(rng.random() < 0.5), 3, 0)))
    return allr, msgs


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 1000), every_s=st.sampled_from([0.0, 0.5, 1.0, 60.0]))
def test_replay_rows_equal_the_streamed_rows(seed: int, every_s: float) -> None:
    from tickvault.features.stream import replay

    day, prev = _history_days()
    rec, msgs = _messy(day, seed)
    every = int(every_s * 1e9)

    def previous(symbol: str, d: dt.date) -> dict[dt.date, SessionAggregates]:
        return prev

    stream = FeatureStream("WINZ25", previous, every_ns=every)
    want: list[Row] = []
    want_at: list[int] = []
    lo = 0
    for cut, records in [*msgs, (len(rec), None)]:
        got: list[int] = []
        part = rec[lo:cut]
        stream.trades(part["ts_event"].tolist(), part["trade_id"].tolist(),
                      part["price"].tolist(), part["qty"].tolist(), part["trade_type"].tolist(),
                      part["flags"].tolist(), part["ts_recv"].tolist(), want, got)  # fmt: skip
        want_at += [lo + j for j in got]
        lo = cut
        if records is not None:
            stream.book_records(records)
    n = len(want)
    stream.flush(want)
    want_at += [len(rec)] * (len(want) - n)
    out = replay("WINZ25", TradeBatch.from_structured(rec), previous, every_ns=every,
                 book=msgs)  # fmt: skip
    assert len(want) > 20
    assert [r[0] for r in out.rows] == [r[0] for r in want]
    assert out.at == want_at
    assert out.taken.sum() == stream.stats.trades
    for a, b in zip(out.rows, want, strict=True):
        assert a[1:3] == b[1:3] and a[5] == b[5], a[0]
        assert np.array_equal(a[3], b[3], equal_nan=True), a[0]
        assert np.array_equal(a[4], b[4], equal_nan=True), a[0]
    assert any(not np.isnan(r[4]).all() for r in want)  # history values were compared
    assert out.last == (stream.last_ts, stream.last_tid)
