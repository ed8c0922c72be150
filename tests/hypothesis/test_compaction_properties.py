"""Compaction keeps the bitemporal history, checked against a real Valkey with hypothesis.

Random live writes (small blocks, out of order so some are late, repeats, edits and
cancels, over several trading days), then compaction as of a random time: for many
knowledge times K (before, between and after the receive times) and random ranges,
``range(..., known_at=K)`` is the same before and after; and again after a second
compaction, and after more writes and a third. The records stored (every copy, with
its receive time and flags) are the same multiset throughout, and counted exactly.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tickvault import TradeBatch, Vault
from tickvault.records.trades import TRADE_DTYPE, TRADE_FIELDS
from tickvault.storage import codec
from tickvault.storage.keys import STORED_STREAMS, meta_key, trades_key
from tickvault.testing import BASE_NS, trade_batches

pytestmark = pytest.mark.store_backends  # every test: single server and cluster

PROPERTY = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
SYMBOL = "PROP3"
MINUTE = 60 * 10**9


def stored_records(vault: Vault) -> np.ndarray:
    """Every record of every stored stream of SYMBOL (each copy), sorted."""
    blocks = [
        f[b"b"]
        for stream in STORED_STREAMS
        for _, f in vault.client.xrange(trades_key(SYMBOL, stream))
    ]
    if not blocks:
        return np.empty(0, TRADE_DTYPE)
    cols = codec.decode_blocks(blocks)
    rows = TradeBatch(**{n: cols[n] for n in TRADE_FIELDS}).to_structured()
    return np.sort(rows, order=list(TRADE_FIELDS))


def counted(vault: Vault) -> int:
    return sum(int(vault.client.hget(meta_key(SYMBOL, s), "trades") or 0) for s in STORED_STREAMS)


def answers(
    vault: Vault, ks: list[int | None], ranges: list[tuple[int, int]]
) -> list[pd.DataFrame]:
    return [vault.range(SYMBOL, a, b, known_at=k) for k in ks for a, b in ranges]


def write_small_blocks(vault: Vault, batch: TradeBatch, data: st.DataObject) -> None:
    """``batch`` as chunks of 1 to 8 records in a random order (later chunks first make
    late blocks), some written twice."""
    n = len(batch)
    if n == 0:
        return
    cuts, i = [0], 0
    while i < n:
        i = min(n, i + data.draw(st.integers(1, 8)))
        cuts.append(i)
    chunks = [batch.take(slice(a, b)) for a, b in itertools.pairwise(cuts)]
    order = list(range(len(chunks)))
    swaps = data.draw(st.lists(st.tuples(st.integers(0, len(order) - 1),
                                         st.integers(0, len(order) - 1)), max_size=6))  # fmt: skip
    for a, b in swaps:
        order[a], order[b] = order[b], order[a]
    for j in order:
        vault.store_batch(SYMBOL, chunks[j])
        if data.draw(st.integers(0, 9)) == 0:
            vault.store_batch(SYMBOL, chunks[j])  # a repeat (a bridge retry)


@given(
    batch=trade_batches(min_size=2, max_size=300, flags=True),
    data=st.data(),
)
@PROPERTY
def test_compaction_keeps_every_answer_as_known_at_any_time(
    vault: Vault, batch: TradeBatch, data: st.DataObject
) -> None:
    vault.client.flushdb()
    store = vault.with_settings(
        block_max_trades=data.draw(st.sampled_from([4, 16, 1000])), compact_after_minutes=0
    )
    # Distinct receive times in a random order: corrections come before or after the
    # trade, and every K between two receive times is a different past.
    n = len(batch)
    recv = BASE_NS + np.arange(n, dtype=np.int64) * 1000
    shuffled = np.array(data.draw(st.permutations(recv.tolist())), dtype=np.int64)
    batch = TradeBatch(**{**batch.columns(), "ts_recv": np.maximum(shuffled, 0)})
    # Some records come after the first compaction, anywhere in time (late there too).
    later = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1))).random(n) < 0.3
    first, rest = batch.take(~later), batch.take(later)
    write_small_blocks(store, first, data)

    lo, hi = int(batch.ts_event.min()), int(batch.ts_event.max()) + 1
    ks: list[int | None] = [None, BASE_NS - 1, BASE_NS + n * 1000]
    ks += [BASE_NS + data.draw(st.integers(0, n)) * 1000 + data.draw(st.sampled_from([-1, 0]))
           for _ in range(4)]  # fmt: skip
    ranges = [(lo, hi)]
    for _ in range(3):
        a = data.draw(st.integers(lo - MINUTE, hi))
        ranges.append((a, data.draw(st.integers(a, hi + MINUTE))))
    expected = answers(store, ks, ranges)
    records = stored_records(store)
    assert counted(store) == len(records)

    def check(what: str) -> None:
        for got, want in zip(answers(store, ks, ranges), expected, strict=True):
            pd.testing.assert_frame_equal(got, want, obj=what)
        np.testing.assert_array_equal(stored_records(store), records, err_msg=what)
        assert counted(store) == len(records), what

    # As of a random time: only what is settled then (and days whose session closed).
    now = data.draw(st.integers(lo - MINUTE, hi + 3 * 86_400 * 10**9))
    store.compact([SYMBOL], now=now)
    check("after a compaction")
    report = store.compact([SYMBOL], now=now)
    assert report.trades_compacted == 0  # nothing settled is left to compact
    check("after a second compaction")
    store.compact([SYMBOL], now=2**62)  # everything
    check("after compacting everything")
    assert store.client.xlen(trades_key(SYMBOL, "realtime")) == 0

    # More writes (their trades among the compacted ones: late), then compaction again.
    if len(rest):
        write_small_blocks(store, rest, data)
    expected = answers(store, ks, ranges)
    records = stored_records(store)
    store.compact([SYMBOL], now=2**62)
    check("after more writes and a compaction")
    for stream in ("realtime", "compacted"):
        for _, f in store.client.xrange(trades_key(SYMBOL, stream)):
            assert codec.read_header(f[b"b"]).n <= store.settings.block_max_trades
