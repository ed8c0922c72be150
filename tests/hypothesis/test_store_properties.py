"""Properties of the store, checked against a real Valkey with hypothesis.

- any range equals filtering the full answer;
- under any interleaving of writes (chunks, order, streams, repeats) no trade is
  lost or duplicated;
- with edits, cancels and any known_at, the store agrees with a plain-Python oracle.
"""

from __future__ import annotations

import contextlib
import itertools
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.conftest import frame_equals_batch
from tickvault import TradeBatch, TradeFlag, Vault
from tickvault.storage import codec
from tickvault.storage.keys import trades_key
from tickvault.testing import BASE_NS, trade_batches
from tickvault.timeutil import trading_days

pytestmark = pytest.mark.store_backends  # every test: single server and cluster

SP = ZoneInfo("America/Sao_Paulo")
PROPERTY = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def write_in_chunks(vault: Vault, batch: TradeBatch, data: st.DataObject) -> None:
    """Write ``batch`` as random chunks, in random order, to random streams, with repeats."""
    n = len(batch)
    cuts = sorted(data.draw(st.lists(st.integers(0, n), max_size=6)))
    bounds = [0, *cuts, n]
    chunks = [batch.take(slice(a, b)) for a, b in itertools.pairwise(bounds) if b > a]
    order = data.draw(st.permutations(range(len(chunks))))
    for i in order:
        stream = data.draw(st.sampled_from(["realtime", "historical"]))
        vault.write_trades("PROP3", chunks[i], stream=stream)
        if data.draw(st.booleans()):  # a repeat, maybe through the other stream
            vault.write_trades(
                "PROP3", chunks[i], stream=data.draw(st.sampled_from(["realtime", "historical"]))
            )


def strip_history_flag(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(flags=frame["flags"].to_numpy() & ~np.uint8(TradeFlag.HISTORY))


@given(batch=trade_batches(max_size=400, unique_ids=True, flags=False), data=st.data())
@PROPERTY
def test_no_trade_lost_or_duplicated_under_any_interleaving(
    vault: Vault, batch: TradeBatch, data: st.DataObject
) -> None:
    vault.client.flushdb()
    write_in_chunks(vault, batch, data)
    frame_equals_batch(strip_history_flag(vault.range("PROP3")), batch)


@given(batch=trade_batches(max_size=400, unique_ids=True, flags=False), data=st.data())
@PROPERTY
def test_any_range_equals_filtering_everything(
    vault: Vault, batch: TradeBatch, data: st.DataObject
) -> None:
    vault.client.flushdb()
    write_in_chunks(vault, batch, data)
    everything = vault.range("PROP3")
    lo = int(batch.ts_event.min()) - 10
    hi = int(batch.ts_event.max()) + 10
    for _ in range(3):
        a = data.draw(st.integers(lo, hi))
        b = data.draw(st.integers(a, hi))
        part = vault.range("PROP3", a, b)
        mask = (everything.index.asi8 >= a) & (everything.index.asi8 < b)
        pd.testing.assert_frame_equal(part, everything[mask])


def oracle(batch: TradeBatch, known_at: int | None) -> set[tuple[int, ...]]:
    """The documented resolution rule, one record at a time."""
    days = trading_days(batch.ts_event, SP)
    best: dict[tuple[int, int], tuple[tuple[int, int, int, int], int]] = {}
    for i in range(len(batch)):
        if known_at is not None and batch.ts_recv[i] > known_at:
            continue
        flags = int(batch.flags[i])
        klass = 2 if flags & TradeFlag.CANCEL else 1 if flags & TradeFlag.EDIT else 0
        recv = int(batch.ts_recv[i])
        rank = (klass, -recv if klass == 0 else recv, int(not flags & TradeFlag.HISTORY), 0)
        key = (int(days[i]), int(batch.trade_id[i]))
        if key not in best or rank > best[key][0]:
            best[key] = (rank, i)
    return {
        (
            int(batch.ts_event[i]),
            int(batch.trade_id[i]),
            float(batch.price[i]),
            int(batch.qty[i]),
            int(batch.flags[i]),
        )
        for rank, i in best.values()
        if rank[0] != 2
    }


@given(batch=trade_batches(max_size=300, flags=True), data=st.data())
@PROPERTY
def test_corrections_and_known_at_agree_with_the_oracle(
    vault: Vault, batch: TradeBatch, data: st.DataObject
) -> None:
    vault.client.flushdb()
    # Distinct receive times keep "earliest copy" unambiguous, as in a live feed.
    recv = BASE_NS + np.arange(len(batch), dtype=np.int64) * 1000
    shuffled = np.array(data.draw(st.permutations(recv.tolist())), dtype=np.int64)
    batch = TradeBatch(**{**batch.columns(), "ts_recv": shuffled})
    n = len(batch)
    cut = data.draw(st.integers(0, n))
    vault.write_trades("PROP3", batch.take(slice(cut, None)))
    vault.write_trades("PROP3", batch.take(slice(0, cut)))
    known_at = data.draw(st.none() | st.integers(BASE_NS - 1, BASE_NS + n * 1000))
    frame = vault.range("PROP3", known_at=known_at)
    got = {
        (int(t), int(r.trade_id), float(r.price), int(r.qty), int(r.flags))
        for t, r in zip(frame.index.asi8, frame.itertuples(), strict=True)
    }
    assert len(got) == len(frame)
    assert got == oracle(batch, known_at)


@given(batch=trade_batches(max_size=400, unique_ids=True, flags=False), data=st.data())
@PROPERTY
def test_trim_keeps_everything_from_the_cutoff_and_counts_exactly(
    vault: Vault, batch: TradeBatch, data: st.DataObject
) -> None:
    vault.client.flushdb()
    small = vault.with_settings(block_max_trades=data.draw(st.sampled_from([3, 50, 1000])))
    write_in_chunks(small, batch, data)
    cutoff = data.draw(st.integers(int(batch.ts_event.min()), int(batch.ts_event.max()) + 1))
    before = small.range("PROP3", cutoff)
    days = small.settings.retention_days
    small.trim("PROP3", now=cutoff + int(days * 86_400 * 1_000_000_000))
    pd.testing.assert_frame_equal(small.range("PROP3", cutoff), before)
    headers = [
        codec.read_header(f[b"b"])
        for stream in ("realtime", "historical")
        for _, f in small.client.xrange(trades_key("PROP3", stream))
    ]
    assert sum(s.trades for s in small.stats("PROP3")) == sum(h.n for h in headers)
    # And it did trim: no block that ended before the cutoff's millisecond is left.
    cutoff_ms_ns = cutoff // 1_000_000 * 1_000_000
    assert all(h.ts_last >= cutoff_ms_ns for h in headers)


@given(
    writes=st.lists(
        st.lists(st.tuples(st.integers(1, 30), st.integers(0, 5)), min_size=1, max_size=12),
        min_size=1,
        max_size=6,
    ),
    split=st.integers(1, 5),
)
@PROPERTY
def test_a_trade_is_never_in_two_places_whatever_ids_and_times_are_written(
    vault: Vault, writes: list[list[tuple[int, int]]], split: int
) -> None:
    """Writes of (trade_id, minute) pairs: each is refused or stored, and afterwards every
    trade id has one event time, so a full read equals the union of sub-range reads."""
    from tickvault import ValidationError

    vault.client.flushdb()
    for rows in writes:
        records = [dict(ts_event=BASE_NS + minute * 60 * 10**9, trade_id=tid, price=1.0, qty=1)
                   for tid, minute in rows]  # fmt: skip
        with contextlib.suppress(ValidationError):  # refused whole, or stored
            vault.write_trades("PROP3", records)
    full = vault.range("PROP3")
    assert full["trade_id"].is_unique
    cut = BASE_NS + split * 60 * 10**9
    parts = pd.concat([vault.range("PROP3", None, cut), vault.range("PROP3", cut, None)])
    assert list(parts["trade_id"]) == list(full["trade_id"])
    assert list(parts.index.asi8) == list(full.index.asi8)
