"""The store against a real embedded Valkey: round trips, ids, dedup, corrections, retention."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.conftest import frame_equals_batch, sim_trades
from tests.unit.storage.test_storage_resolve import (
    _as_rows,
    _decoded,
    _distinct_recv,
    _reference,
)
from tickvault import QueryError, TradeBatch, TradeFlag, ValidationError, Vault
from tickvault.records.trades import TRADE_DTYPE
from tickvault.storage.keys import late_key, trades_key
from tickvault.testing import trade_batches
from tickvault.timeutil import NS_PER_DAY, NS_PER_MS, NS_PER_S

pytestmark = pytest.mark.store_backends  # every test: single server and cluster


def with_(batch: TradeBatch, **cols: object) -> TradeBatch:
    return TradeBatch(**{**batch.columns(), **cols})  # type: ignore[arg-type]


def test_write_then_range_round_trips_every_field(vault: Vault) -> None:
    batch = sim_trades(50_000)
    assert vault.write_trades("WINZ25", batch) == 50_000
    frame = vault.range("WINZ25")
    frame_equals_batch(frame, batch)
    assert str(frame.index.tz) == "UTC" and frame.index.name == "ts_event"
    assert frame.index.is_monotonic_increasing


def test_range_is_start_inclusive_end_exclusive(vault: Vault) -> None:
    batch = sim_trades(20_000)
    vault.write_trades("WINZ25", batch)
    start, end = int(batch.ts_event[5000]), int(batch.ts_event[15000])
    frame = vault.range("WINZ25", start, end)
    expected = batch.take((batch.ts_event >= start) & (batch.ts_event < end))
    frame_equals_batch(frame, expected)
    assert frame.index.asi8[0] == start and frame.index.asi8[-1] < end


def test_range_accepts_naive_exchange_times_and_timestamps(vault: Vault) -> None:
    batch = sim_trades(10_000)
    vault.write_trades("WINZ25", batch)
    naive = vault.range("WINZ25", dt.datetime(2025, 11, 3, 10, 0), dt.datetime(2025, 11, 3, 11, 0))
    aware = vault.range(
        "WINZ25", pd.Timestamp("2025-11-03 13:00", tz="UTC"), "2025-11-03T14:00:00Z"
    )
    assert len(naive) > 0
    pd.testing.assert_frame_equal(naive, aware)


def test_many_trades_in_one_millisecond_are_all_kept_and_found_by_xrange(vault: Vault) -> None:
    t = 1_762_178_400_123 * NS_PER_MS
    n = 1500
    batch = with_(
        sim_trades(n), ts_event=np.full(n, t, dtype=np.int64), trade_id=np.arange(n, dtype=np.int64)
    )
    vault.write_trades("WINZ25", batch)
    assert len(vault.range("WINZ25", t, t + 1)) == n
    # Any Valkey client finds the block by the event millisecond.
    entries = vault.client.xrange(trades_key("WINZ25", "realtime"), t // NS_PER_MS, t // NS_PER_MS)
    assert len(entries) == 1


def test_single_trades_are_stored_at_once_as_their_own_block(vault: Vault) -> None:
    batch = sim_trades(5)
    for i in range(5):
        vault.write_trades("WINZ25", batch.take(slice(i, i + 1)))
    assert vault.client.xlen(trades_key("WINZ25", "realtime")) == 5
    frame_equals_batch(vault.range("WINZ25"), batch)


def test_entry_ids_follow_event_time(vault: Vault) -> None:
    batch = sim_trades(40_000)
    vault.write_trades("WINZ25", batch)
    for eid, _ in vault.client.xrange(trades_key("WINZ25", "realtime")):
        ms = int(eid.split(b"-")[0])
        assert batch.ts_event.min() // NS_PER_MS <= ms <= batch.ts_event.max() // NS_PER_MS


def test_out_of_order_trades_are_found_by_their_true_time(vault: Vault) -> None:
    batch = sim_trades(30_000)
    late_part, early_writes = (
        batch.take(slice(10_000, 20_000)),
        [batch.take(slice(0, 10_000)), batch.take(slice(20_000, None))],
    )
    for part in early_writes:
        vault.write_trades("WINZ25", part)
    vault.write_trades("WINZ25", late_part)  # event times before the stream's last id
    assert vault.client.zcard(late_key("WINZ25", "realtime")) >= 1
    frame_equals_batch(vault.range("WINZ25"), batch)
    (stats,) = vault.stats("WINZ25")
    assert stats.last_ns == batch.ts_event.max()
    assert stats.first_ns == batch.ts_event.min()
    frame_equals_batch(vault.last("WINZ25", 15_000), batch.take(slice(15_000, None)))
    lo, hi = int(batch.ts_event[12_000]), int(batch.ts_event[14_000])
    frame_equals_batch(
        vault.range("WINZ25", lo, hi), batch.take((batch.ts_event >= lo) & (batch.ts_event < hi))
    )


def test_same_trade_through_both_streams_and_twice_is_returned_once(vault: Vault) -> None:
    batch = sim_trades(10_000)
    vault.write_trades("WINZ25", batch)
    vault.write_trades("WINZ25", batch.take(slice(2000, 6000)))  # repeated on realtime
    vault.write_trades("WINZ25", batch.take(slice(0, 8000)), stream="historical")
    frame = vault.range("WINZ25")
    assert len(frame) == 10_000
    local_dates = frame.index.tz_convert("America/Sao_Paulo").date
    identities = set(zip(local_dates, frame["trade_id"], strict=True))
    assert len(identities) == 10_000
    # The first-received copy wins: the live one, without the HISTORY flag.
    assert not (frame["flags"].to_numpy() & TradeFlag.HISTORY).any()
    only_hist = vault.range("WINZ25", streams=["historical"])
    assert len(only_hist) == 8000 and (only_hist["flags"].to_numpy() & TradeFlag.HISTORY).all()


def test_edits_and_cancels_respect_known_at(vault: Vault) -> None:
    batch = sim_trades(1000, days=1)
    t0 = 1_800_000_000 * NS_PER_S
    vault.write_trades("WINZ25", with_(batch, ts_recv=np.full(1000, t0, dtype=np.int64)))
    one = batch.take(np.array([100]))
    two = batch.take(np.array([200]))

    def correct(trade: TradeBatch, flag: TradeFlag, recv: int, price_step: float = 0) -> None:
        flags = np.array([flag], dtype=np.uint8)
        fix = with_(trade, price=trade.price + price_step, ts_recv=np.array([recv]), flags=flags)
        vault.write_trades("WINZ25", fix)

    correct(one, TradeFlag.EDIT, t0 + 10, price_step=10)
    correct(one, TradeFlag.EDIT, t0 + 20, price_step=20)
    correct(two, TradeFlag.CANCEL, t0 + 30)

    def price_of(frame: pd.DataFrame, tid: int) -> float:
        return float(frame.loc[frame.trade_id == tid, "price"].iloc[0])

    tid1, tid2 = int(one.trade_id[0]), int(two.trade_id[0])
    now = vault.range("WINZ25")
    assert len(now) == 999 and tid2 not in set(now.trade_id)
    assert price_of(now, tid1) == one.price[0] + 20
    at_15 = vault.range("WINZ25", known_at=t0 + 15)
    assert len(at_15) == 1000 and price_of(at_15, tid1) == one.price[0] + 10
    at_0 = vault.range("WINZ25", known_at=t0)
    frame_equals_batch(at_0, with_(batch, ts_recv=np.full(1000, t0, dtype=np.int64)))
    assert vault.range("WINZ25", known_at=t0 - 1).empty
    # Corrections are records too: the log keeps all of them.
    assert sum(s.trades for s in vault.stats("WINZ25")) == 1003


def test_last_returns_the_most_recent_trades(vault: Vault) -> None:
    batch = sim_trades(60_000)
    vault.write_trades("WINZ25", batch)
    frame_equals_batch(vault.last("WINZ25", 300), batch.take(slice(-300, None)))
    assert len(vault.last("WINZ25", 10**6)) == 60_000
    assert vault.last("WINZ25", 0).empty
    old = int(batch.ts_event[30_000])
    assert vault.last("WINZ25", 5, known_at=old).index.asi8.max() <= old


def test_unknown_symbol_gives_empty_frame_and_bad_range_an_error(vault: Vault) -> None:
    empty = vault.range("NOPE11")
    assert empty.empty and list(empty.columns) == list(TRADE_DTYPE.names[1:])  # type: ignore[index]
    with pytest.raises(QueryError, match="after end"):
        vault.range("WINZ25", 10 * NS_PER_S + 2 * 10**18, 10**18)


def test_symbols_stats_numpy_and_arrow(vault: Vault) -> None:
    vault.write_trades("WINZ25", sim_trades(1000))
    vault.write_trades("wdoz25", sim_trades(500, symbol="WDOZ25"), stream="historical")
    assert vault.symbols() == ["WDOZ25", "WINZ25"]
    (stats,) = vault.stats("WDOZ25")
    assert stats.stream == "historical" and stats.trades == 500 and stats.bytes_per_trade > 0
    arr = vault.range_numpy("WINZ25")
    assert arr.dtype == TRADE_DTYPE and len(arr) == 1000
    table = vault.range_arrow("WINZ25")
    assert isinstance(table, pa.Table) and table.num_rows == 1000
    assert table.schema.field("ts_event").type == pa.timestamp("ns", tz="UTC")
    np.testing.assert_array_equal(table.column("trade_id").to_numpy(), arr["trade_id"])


def test_rejected_batch_writes_nothing(vault: Vault) -> None:
    batch = sim_trades(100)
    bad = with_(batch, price=np.where(np.arange(100) == 77, np.nan, batch.price))
    with pytest.raises(ValidationError, match="row 77"):
        vault.write_trades("WINZ25", bad)
    assert vault.symbols() == []


def test_trim_removes_old_trades_and_keeps_the_retention_window(vault: Vault) -> None:
    batch = sim_trades(40_000)  # two sessions
    vault.write_trades("WINZ25", batch)
    days = np.unique(batch.ts_event // NS_PER_DAY)
    cutoff = int(days[-1]) * NS_PER_DAY  # midnight UTC before the second session
    now = cutoff + int(vault.settings.retention_days * NS_PER_DAY)
    report = vault.trim("WINZ25", now=now)
    kept = batch.take(batch.ts_event >= cutoff)
    assert report.trades_removed == len(batch) - len(kept)
    frame_equals_batch(vault.range("WINZ25"), kept)
    assert vault.stats("WINZ25")[0].trades == len(kept)


def test_trim_never_drops_a_block_that_straddles_the_cutoff(vault: Vault) -> None:
    batch = sim_trades(10_000)
    vault.write_trades("WINZ25", batch)  # one session, blocks of many trades
    cutoff = int(batch.ts_event[5_123])
    vault.trim("WINZ25", now=cutoff + int(vault.settings.retention_days * NS_PER_DAY))
    frame = vault.range("WINZ25", cutoff)
    frame_equals_batch(frame, batch.take(batch.ts_event >= cutoff))


def test_trim_removes_late_blocks_older_than_the_cutoff(vault: Vault) -> None:
    batch = sim_trades(20_000)
    vault.write_trades("WINZ25", batch.take(slice(10_000, None)))
    vault.write_trades("WINZ25", batch.take(slice(0, 10_000)))  # late
    (stats,) = vault.stats("WINZ25")
    # The earliest trades sit in late blocks; the late index knows their time (to the ms).
    assert stats.first_ns == batch.ts_event.min() // NS_PER_MS * NS_PER_MS
    cutoff = int(batch.ts_event[10_000])
    vault.trim("WINZ25", now=cutoff + int(vault.settings.retention_days * NS_PER_DAY))
    frame_equals_batch(vault.range("WINZ25"), batch.take(batch.ts_event >= cutoff))
    assert vault.client.zcard(late_key("WINZ25", "realtime")) == 0


def test_trim_by_size_keeps_the_newest_blocks(session_vault: Vault) -> None:
    session_vault.client.flushdb()
    small = session_vault.with_settings(stream_maxlen=3, block_max_trades=1000)
    batch = sim_trades(10_000)
    small.write_trades("WINZ25", batch)
    small.trim("WINZ25", now=int(batch.ts_event[-1]))
    assert small.client.xlen(trades_key("WINZ25", "realtime")) == 3
    frame_equals_batch(small.range("WINZ25"), batch.take(slice(7000, None)))


def test_a_range_frame_can_be_written_back_unchanged(vault: Vault) -> None:
    batch = sim_trades(3000)
    vault.write_trades("WINZ25", batch)
    frame = vault.range("WINZ25")
    vault.write_trades("COPY11", frame, stream="historical")
    copied = vault.range("COPY11")
    pd.testing.assert_frame_equal(
        copied.drop(columns="flags"), frame.drop(columns="flags"), check_freq=False
    )
    assert (copied["flags"].to_numpy() == TradeFlag.HISTORY).all()


def test_naive_frame_times_mean_exchange_time_on_write_and_on_read(vault: Vault) -> None:
    frame = pd.DataFrame({"ts_event": pd.to_datetime(["2025-11-03 10:00", "2025-11-03 10:05"]),
                          "trade_id": [1, 2], "price": [10.0, 11.0], "qty": [1, 1]})  # fmt: skip
    vault.write_trades("PETR4", frame)
    back = vault.range("PETR4", "2025-11-03T10:00", "2025-11-03T10:01")  # naive query: B3 time
    assert list(back["trade_id"]) == [1]
    assert back.index[0] == pd.Timestamp("2025-11-03 13:00", tz="UTC")


def test_same_trade_id_with_another_event_time_is_refused_and_nothing_written(
    vault: Vault,
) -> None:
    batch = sim_trades(50, days=1)
    vault.write_trades("WINZ25", batch)
    moved = batch.take(slice(10, 20))
    moved = TradeBatch(**{**moved.columns(), "ts_event": moved.ts_event + 3_600 * NS_PER_S})
    fresh = sim_trades(5, seed=9, days=1)
    fresh = TradeBatch(**{**fresh.columns(), "trade_id": fresh.trade_id + 10_000})
    with pytest.raises(ValidationError, match=r"trade_id \d+ of .* in the store at .*EDIT"):
        vault.write_trades("WINZ25", TradeBatch.concat([fresh, moved]))
    with pytest.raises(ValidationError, match="trade keeps its event time"):
        vault.write_trades("WINZ25", moved, stream="historical")  # across streams too
    frame_equals_batch(vault.range("WINZ25"), batch)  # neither batch wrote anything
    # The same trades at their own times are repeats, written and read once.
    vault.write_trades("WINZ25", batch.take(slice(10, 20)), stream="historical")
    assert len(vault.range("WINZ25")) == 50


def test_one_batch_giving_a_trade_id_two_times_is_refused(vault: Vault) -> None:
    t = 1_762_175_400_000_000_000
    rows = [dict(ts_event=t, trade_id=7, price=1.0, qty=1),
            dict(ts_event=t + NS_PER_S, trade_id=7, price=1.0, qty=1)]  # fmt: skip
    with pytest.raises(ValidationError, match="in this batch"):
        vault.write_trades("WINZ25", rows)
    assert vault.symbols() == []


def test_corrections_with_the_trades_own_time_are_accepted(vault: Vault) -> None:
    batch = sim_trades(20, days=1)
    vault.write_trades("WINZ25", batch)
    edit = batch.take(slice(3, 4))
    edit = TradeBatch(**{**edit.columns(), "qty": edit.qty + 5,
                         "flags": np.full(1, int(TradeFlag.EDIT), np.uint8)})  # fmt: skip
    vault.write_trades("WINZ25", edit)
    assert int(vault.range("WINZ25")["qty"].iloc[3]) == int(batch.qty[3]) + 5


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    trade_batches(max_size=120),
    st.integers(1, 30),
    st.integers(1, 4),
    st.tuples(st.floats(0, 1), st.floats(0, 1)),
    st.floats(0, 1),
)
def test_range_known_at_over_blocks_of_any_receive_times_matches_the_reference(
    vault: Vault,
    batch: TradeBatch,
    block_max: int,
    writes: int,
    window: tuple[float, float],
    known_q: float,
) -> None:
    # Blocks received wholly after K are not decoded: the answer must not change.
    vault.client.flushdb()
    batch = _distinct_recv(batch)
    small = vault.with_settings(block_max_trades=block_max)
    for part in np.array_split(np.arange(len(batch)), writes):
        if part.size:
            small.write_trades("WINZ25", batch.take(part))
    ts, last = np.sort(batch.ts_event), len(batch) - 1
    start, end = sorted(int(ts[round(q * last)]) for q in window)
    end += 1
    known = int(np.sort(batch.ts_recv)[round(known_q * last)])
    got = _as_rows(vault.range_columns("WINZ25", start, end, known_at=known))
    assert got == _reference(_decoded(batch, block_max), start, end, known)
