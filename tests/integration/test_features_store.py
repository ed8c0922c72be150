"""FeatureEngine and the aggregates materialised in Valkey, against the pure reference path.

Multi-day simulated WIN history (weekends and the 2025-11-20 B3 holiday in the span),
stored in the real embedded Valkey: some sessions as live records, some imported
(HISTORY, ts_recv = a later import time). Every value the engine returns must equal
``features.pointintime.history_at`` / ``intraday_at`` on the raw records exactly.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping

import numpy as np
import pytest

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tickvault import Vault
from tickvault.engine import FeatureEngine, refresh_aggregates
from tickvault.errors import QueryError
from tickvault.features import (
    HistoryParams,
    as_known_at,
    forward_return_labels,
    history_at,
    intraday_at,
)
from tickvault.feeds.sim.generator import generate_day
from tickvault.records.trades import TradeBatch, TradeFlag
from tickvault.storage import aggregates as agg_store
from tickvault.storage.keys import meta_key
from tickvault.storage.writes import StoreItem
from tickvault.venue import b3

pytestmark = pytest.mark.store_backends  # every test: single server and cluster

SYMBOL = "WINZ25"
MIN = 60_000_000_000
IMPORT_NS = 1_800_000_000_000_000_000  # 2027-01-15: the imported sessions arrive then
HOLIDAY = dt.date(2025, 11, 20)
LAST = dt.date(2025, 11, 25)
PARAMS = HistoryParams(momentum_sessions=8, volatility_sessions=8)


def _days(n: int) -> list[dt.date]:
    return [*b3.previous_sessions(SYMBOL, LAST, n - 1), LAST]


def _history(n_sessions: int, per_day: int, *, imported: bool = True) -> dict[dt.date, TradeBatch]:
    out: dict[dt.date, TradeBatch] = {}
    price: float | None = None
    for i, day in enumerate(_days(n_sessions)):
        batch = generate_day(SYMBOL, day, per_day + (i * 97) % 400, seed=i + 3, start_price=price)
        price = float(batch.price[-1])
        if imported and i % 3 == 1:
            cols = batch.columns()
            cols["flags"] = cols["flags"] | np.uint8(TradeFlag.HISTORY)
            cols["ts_recv"] = np.full(len(batch), IMPORT_NS, np.int64)
            batch = TradeBatch(**cols)
        out[day] = batch
    return out


def _store(vault: Vault, history: Mapping[dt.date, TradeBatch]) -> TradeBatch:
    for batch in history.values():
        hist = bool(batch.flags[0] & TradeFlag.HISTORY)
        vault.store_batch(SYMBOL, batch, stream="historical" if hist else "realtime")
    return TradeBatch.concat(list(history.values()))


def _same(a: Mapping[str, object], b: Mapping[str, object]) -> None:
    assert list(a) == list(b)
    for k in a:
        x, y = a[k], b[k]
        if isinstance(x, float) and isinstance(y, float) and math.isnan(x):
            assert math.isnan(y), k
        else:
            assert x == y, (k, x, y)


def _corrections(batch: TradeBatch, rows: list[int], recv: int, *, cancel: bool) -> TradeBatch:
    part = batch.take(np.array(rows, dtype=np.intp))
    cols = part.columns()
    flag = TradeFlag.CANCEL if cancel else TradeFlag.EDIT
    cols["flags"] = (cols["flags"] & np.uint8(TradeFlag.HISTORY)) | np.uint8(flag)
    cols["ts_recv"] = np.full(len(part), recv, np.int64)
    if not cancel:
        cols["price"] = cols["price"] + 50.0
        cols["qty"] = cols["qty"] + 7
    return TradeBatch(**cols)


@pytest.fixture
def stored(vault: Vault) -> tuple[Vault, dict[dt.date, TradeBatch], TradeBatch]:
    history = _history(12, 900)
    return vault, history, _store(vault, history)


def _times(day: dt.date) -> list[int]:
    s = b3.session(SYMBOL, day)
    return [
        s.open_ns,
        s.open_ns + 1,
        s.open_ns + 16 * MIN + 3,
        s.open_ns + 31 * MIN,
        s.open_ns + 200 * MIN + 123_456,
        s.close_ns - 1,
        s.close_ns,
    ]


@pytest.mark.parametrize("mode", ["knowledge", "store"])
def test_history_on_stored_days_with_weekend_and_holiday_equals_reference(
    stored: tuple[Vault, dict[dt.date, TradeBatch], TradeBatch], mode: str
) -> None:
    vault, history, records = stored
    fe = FeatureEngine(vault, params=PARAMS)
    # the day after the holiday (compares with the day before it), a Monday, the last day
    after_holiday = dt.date(2025, 11, 21)
    monday = dt.date(2025, 11, 24)
    assert HOLIDAY not in history and after_holiday in history and monday in history
    for day in (after_holiday, monday, LAST):
        for t in _times(day):
            got = fe.history(SYMBOL, t, mode=mode)  # type: ignore[arg-type]
            _same(got, history_at(SYMBOL, records, t, params=PARAMS, mode=mode))  # type: ignore[arg-type]
    # some values are real numbers, not only NaN
    late = fe.history(SYMBOL, _times(LAST)[4], mode=mode)  # type: ignore[arg-type]
    assert not math.isnan(float(late["historical_momentum_percentile"]))  # type: ignore[arg-type]


def test_history_warm_second_call_reads_no_raw_records_and_is_equal(
    stored: tuple[Vault, dict[dt.date, TradeBatch], TradeBatch],
) -> None:
    vault, _, records = stored
    fe = FeatureEngine(vault, params=PARAMS)
    t = _times(LAST)[4]
    first = fe.history(SYMBOL, t)
    built = fe.aggregates.built
    assert built > 0  # cold: filled on demand
    again = FeatureEngine(vault, params=PARAMS)  # a new process would read Valkey only
    _same(again.history(SYMBOL, t), first)
    assert again.aggregates.built == 0
    _same(first, history_at(SYMBOL, records, t, params=PARAMS))


def test_at_equals_intraday_and_history_reference(
    stored: tuple[Vault, dict[dt.date, TradeBatch], TradeBatch],
) -> None:
    vault, _, records = stored
    fe = FeatureEngine(vault, params=PARAMS)
    for mode in ("knowledge", "store"):
        for t in _times(dt.date(2025, 11, 24))[2:6]:
            row = fe.at(SYMBOL, t, mode=mode)  # type: ignore[arg-type]
            intra = intraday_at(records, [t], mode=mode).iloc[0].to_dict()  # type: ignore[arg-type]
            hist = history_at(SYMBOL, records, t, params=PARAMS, mode=mode)  # type: ignore[arg-type]
            _same(row, {**{k: float(v) for k, v in intra.items()}, **hist})
    assert list(fe.at(SYMBOL, _times(LAST)[3])) == list(fe.names)


def test_frame_rows_equal_at_and_labels_come_from_after_t(
    stored: tuple[Vault, dict[dt.date, TradeBatch], TradeBatch],
) -> None:
    vault, _, records = stored
    fe = FeatureEngine(vault, params=PARAMS)
    start, end = dt.date(2025, 11, 21), dt.date(2025, 11, 25)  # Fri, Mon (weekend between)
    done: list[tuple[int, int]] = []
    frame = fe.frame(SYMBOL, start, end, every="7min", labels=("1min", "5min"),
                     progress=lambda a, b: done.append((a, b)))  # fmt: skip
    assert done[-1] == (2, 2)
    assert list(frame.columns) == [*fe.names, "label_fwd_ret_1min", "label_fwd_ret_5min"]
    ts = frame.index.asi8
    for t in ts:  # only steps inside a session
        assert b3.session_of(SYMBOL, int(t)) is not None
    assert {b3.session_of(SYMBOL, int(t)).date for t in ts} == {start, dt.date(2025, 11, 24)}  # type: ignore[union-attr]
    for t in ts[::9]:
        _same({k: frame.loc[frame.index[ts == t][0], k] for k in fe.names}, fe.at(SYMBOL, int(t)))
    final = as_known_at(records, 2**62)
    labels = forward_return_labels(SYMBOL, final, ts, [MIN, 5 * MIN])
    np.testing.assert_array_equal(
        frame["label_fwd_ret_5min"].to_numpy(float), labels["label_fwd_ret_5min"]
    )
    assert np.isfinite(frame["label_fwd_ret_1min"].to_numpy(float)).any()


def test_frame_with_records_in_flight_at_the_steps_equals_reference(vault: Vault) -> None:
    history = _history(7, 600, imported=False)
    day = LAST
    s = b3.session(SYMBOL, day)
    batch = history[day]
    cols = batch.columns()
    # trades just before a minute boundary that arrive late (known after the step),
    # and an edit and a cancel of earlier trades that arrive in the middle of the session
    late = (cols["ts_event"] % MIN) > MIN - 3_000_000_000
    cols["ts_recv"] = np.where(late, cols["ts_event"] + 4 * MIN, cols["ts_recv"])
    history[day] = TradeBatch(**cols)
    records = _store(vault, history)
    fixes = TradeBatch.concat(
        [
            _corrections(batch, [5, 40], s.open_ns + 90 * MIN, cancel=False),
            _corrections(batch, [60], s.open_ns + 120 * MIN, cancel=True),
        ]
    )
    vault.store_batch(SYMBOL, fixes)
    records = TradeBatch.concat([records, fixes])
    fe = FeatureEngine(vault, params=HistoryParams(momentum_sessions=5, volatility_sessions=5))
    for mode in ("knowledge", "store"):
        frame = fe.frame(SYMBOL, s.open_ns, s.open_ns + 240 * MIN, every="1min", mode=mode)  # type: ignore[arg-type]
        for t in frame.index.asi8[::11]:
            hist = history_at(SYMBOL, records, int(t), params=fe.params, mode=mode)  # type: ignore[arg-type]
            intra = intraday_at(records, [int(t)], mode=mode).iloc[0].to_dict()  # type: ignore[arg-type]
            row = frame.loc[frame.index[frame.index.asi8 == t][0]]
            _same(
                {k: row[k] for k in fe.names}, {**{k: float(v) for k, v in intra.items()}, **hist}
            )


def test_corrections_stored_after_t_leave_t_alone_and_count_from_when_known(
    stored: tuple[Vault, dict[dt.date, TradeBatch], TradeBatch],
) -> None:
    vault, history, records = stored
    fe = FeatureEngine(vault, params=PARAMS)
    s = b3.session(SYMBOL, LAST)
    t = s.open_ns + 150 * MIN
    before = fe.at(SYMBOL, t)
    prev_day = dt.date(2025, 11, 24)
    arrive = s.open_ns + 200 * MIN  # after T
    p = b3.session(SYMBOL, prev_day)

    def rows(batch: TradeBatch, open_ns: int, lo: int, hi: int, n: int) -> list[int]:
        inside = (batch.ts_event >= open_ns + lo * MIN) & (batch.ts_event < open_ns + hi * MIN)
        return np.flatnonzero(inside)[:n].tolist()

    fixes = TradeBatch.concat(
        [  # in the clock window the features read at `later` (minutes 80-260)
            _corrections(history[prev_day], rows(history[prev_day], p.open_ns, 100, 250, 30),
                         arrive, cancel=False),
            _corrections(history[prev_day], rows(history[prev_day], p.open_ns, 240, 250, 2),
                         arrive, cancel=True),
            _corrections(history[LAST], rows(history[LAST], s.open_ns, 100, 140, 20),
                         arrive, cancel=True),
        ]
    )  # fmt: skip
    vault.store_batch(SYMBOL, fixes)
    built = fe.aggregates.built
    _same(fe.at(SYMBOL, t), before)
    assert fe.aggregates.built > built  # the two touched sessions were stale: rebuilt
    everything = TradeBatch.concat([records, fixes])
    later = s.open_ns + 260 * MIN
    want = history_at(SYMBOL, everything, later, params=PARAMS)
    _same(fe.history(SYMBOL, later), want)
    assert want != history_at(SYMBOL, records, later, params=PARAMS)  # the fixes count now


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    data=st.data(),
    minute=st.integers(min_value=0, max_value=564),
    mode=st.sampled_from(["knowledge", "store"]),
)
def test_records_arriving_after_t_never_change_a_feature_at_t(
    vault: Vault, data: st.DataObject, minute: int, mode: str
) -> None:
    vault.client.flushdb()
    history = _history(7, 300, imported=False)
    _store(vault, history)
    s = b3.session(SYMBOL, LAST)
    t = s.open_ns + minute * MIN + data.draw(st.integers(0, MIN - 1), label="offset")
    fe = FeatureEngine(vault, params=HistoryParams(momentum_sessions=5, volatility_sessions=5))
    before = fe.at(SYMBOL, t, mode=mode)  # type: ignore[arg-type]
    arrive = t + data.draw(st.integers(1, 3 * 3600 * 10**9), label="arrive after T")
    day = data.draw(st.sampled_from(sorted(history)), label="day")
    batch = history[day]
    rows = data.draw(st.lists(st.integers(0, len(batch) - 1), min_size=1, max_size=6, unique=True))
    kind = data.draw(st.sampled_from(["edit", "cancel", "late trade"]), label="kind")
    if kind == "late trade":  # a live trade with ts_event < T, received after T
        part = batch.take(np.array(rows, dtype=np.intp)).columns()
        ev = np.minimum(part["ts_event"], t - 1)
        late = TradeBatch(**{**part, "ts_event": ev, "ts_recv": np.full(len(ev), arrive, np.int64),
                             "trade_id": np.arange(len(ev), dtype=np.int64) + 900_000})  # fmt: skip
    else:
        late = _corrections(batch, rows, arrive, cancel=kind == "cancel")
    vault.store_batch(SYMBOL, late)
    _same(fe.at(SYMBOL, t, mode=mode), before)  # type: ignore[arg-type]


def test_per_day_counters_move_on_both_write_paths_and_trim(vault: Vault) -> None:
    history = _history(3, 200, imported=False)
    days = sorted(history)
    vault.store_batch(SYMBOL, history[days[0]])  # bulk path
    item = StoreItem(SYMBOL, "realtime", history[days[1]].to_structured(), {"p:t": 1})
    vault.store_cycle([item])  # the bridge's path
    found = agg_store.read(vault.client, SYMBOL, days)
    assert found.has_trades
    assert found.counts == {
        days[0]: len(history[days[0]]),
        days[1]: len(history[days[1]]),
        days[2]: 0,
    }
    assert found.counted[days[1]] and not found.counted[days[2]]
    fe = FeatureEngine(vault, params=PARAMS)
    fe.history(SYMBOL, b3.session(SYMBOL, days[1]).open_ns + 60 * MIN)
    fresh = agg_store.read(vault.client, SYMBOL, days)
    assert fresh.stored[days[0]] is not None
    assert agg_store.decode(fresh.stored[days[0]]).records == len(history[days[0]])  # type: ignore[arg-type]
    totals = agg_store.totals(vault.client, SYMBOL)
    vault.with_settings(retention_days=1).trim(SYMBOL, now=b3.session(SYMBOL, days[2]).open_ns)
    assert agg_store.totals(vault.client, SYMBOL) != totals  # a cache holder sees the trim
    after = agg_store.read(vault.client, SYMBOL, days)
    assert after.counts[days[0]] == 0  # trimmed: the aggregate of that day is stale now
    field = f"n:{agg_store.day_number(days[0])}"
    assert int(vault.client.hget(meta_key(SYMBOL, "realtime"), field)) == 0


def test_refresh_aggregates_fills_then_finds_everything_fresh(
    stored: tuple[Vault, dict[dt.date, TradeBatch], TradeBatch],
) -> None:
    vault, history, _ = stored
    now = b3.session(SYMBOL, LAST).close_ns + MIN
    assert refresh_aggregates(vault, SYMBOL, now_ns=now, lookback=30) == 31
    assert refresh_aggregates(vault, SYMBOL, now_ns=now, lookback=30) == 0
    vault.store_batch(SYMBOL, _corrections(history[LAST], [3], now, cancel=True))
    assert refresh_aggregates(vault, SYMBOL, sorted(history)) == 1


def test_bad_input_gets_a_clear_error_or_the_documented_nan(
    stored: tuple[Vault, dict[dt.date, TradeBatch], TradeBatch],
) -> None:
    vault, _, _ = stored
    fe = FeatureEngine(vault, params=PARAMS)
    s = b3.session(SYMBOL, LAST)
    with pytest.raises(QueryError, match="no trades stored for WINF26"):
        fe.history("WINF26", s.open_ns + MIN)
    with pytest.raises(QueryError, match="no trades stored"):
        fe.frame("WINF26", LAST, LAST + dt.timedelta(days=1))
    for outside in ("2025-11-22T12:00", "2025-11-20T12:00", "2025-11-25T08:59", "2025-11-25T18:26"):
        with pytest.raises(QueryError, match="outside every WINZ25 session"):
            fe.at(SYMBOL, outside)
    with pytest.raises(QueryError, match="every"):
        fe.frame(SYMBOL, LAST, LAST + dt.timedelta(days=1), every="0s")
    with pytest.raises(QueryError, match="duration"):
        fe.frame(SYMBOL, LAST, LAST + dt.timedelta(days=1), every="soon")
    with pytest.raises(QueryError, match="before end"):
        fe.frame(SYMBOL, LAST, LAST)
    with pytest.raises(QueryError, match="mode"):
        fe.history(SYMBOL, s.open_ns, mode="future")  # type: ignore[arg-type]
    # a lookback longer than the stored history: the documented NaN
    long = FeatureEngine(vault, params=HistoryParams(momentum_sessions=40, volatility_sessions=40,
                                                     min_sessions=30))  # fmt: skip
    got = long.history(SYMBOL, s.open_ns + 100 * MIN)
    assert math.isnan(float(got["historical_momentum_percentile"]))  # type: ignore[arg-type]
    assert math.isnan(float(got["volatility_regime_score"]))  # type: ignore[arg-type]
    assert got["volatility_regime"] is None
    # a weekend-only range has no step: an empty frame with the columns
    empty = fe.frame(SYMBOL, "2025-11-22", "2025-11-24")
    assert empty.empty and list(empty.columns)[: len(fe.names)] == list(fe.names)
