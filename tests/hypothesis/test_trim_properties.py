"""A dry-run trim, checked against the real trim on a real Valkey with hypothesis."""

from __future__ import annotations

import pandas as pd
import pytest

from hypothesis import given
from hypothesis import strategies as st
from tests.hypothesis.test_store_properties import PROPERTY, write_in_chunks
from tickvault import TradeBatch, Vault
from tickvault.testing import trade_batches
from tickvault.timeutil import NS_PER_DAY

pytestmark = pytest.mark.store_backends  # every test: single server and cluster


@given(batch=trade_batches(max_size=400, unique_ids=True, flags=False), data=st.data())
@PROPERTY
def test_trim_dry_run_removes_nothing_and_plans_exactly_what_trim_removes(
    vault: Vault, batch: TradeBatch, data: st.DataObject
) -> None:
    vault.client.flushdb()
    small = vault.with_settings(
        block_max_trades=data.draw(st.sampled_from([3, 50, 1000])),
        stream_maxlen=data.draw(st.sampled_from([1, 4, 100_000])),
    )
    write_in_chunks(small, batch, data)
    cutoff = data.draw(st.integers(int(batch.ts_event.min()), int(batch.ts_event.max()) + 1))
    now = cutoff + int(small.settings.retention_days * NS_PER_DAY)
    everything = small.range("PROP3")
    stats = small.stats("PROP3")
    plan = small.trim("PROP3", now=now, dry_run=True)
    assert plan.dry_run and plan.cutoff_ns == cutoff
    pd.testing.assert_frame_equal(small.range("PROP3"), everything)
    assert small.stats("PROP3") == stats
    report = small.trim("PROP3", now=now)
    assert not report.dry_run
    assert report.items == plan.items
    # The plan's spans hold what went: every trade still stored or gone is accounted for.
    after = small.stats("PROP3")
    assert sum(s.trades for s in stats) - sum(s.trades for s in after) == plan.trades_removed
    for item in plan.items:
        assert item.first_ns is not None and item.last_ns is not None
        assert batch.ts_event.min() <= item.first_ns <= item.last_ns <= batch.ts_event.max()


def test_trim_keeps_a_late_block_that_ends_after_the_cutoff(vault: Vault) -> None:
    """A late block (it starts before the watermark of its write) that sits before the
    last in-order block older than the cutoff, but ends after the cutoff, stays: the
    prefix that XTRIM MINID removes ends before it (hypothesis found this: the trim
    removed such a block whole, trades after the cutoff with it)."""
    vault.client.flushdb()
    ms = 1_000_000
    base = 1_762_336_490_000 * ms

    def write(tid: int, *offsets_ms: int) -> None:
        n = len(offsets_ms)
        vault.write_trades("PROP3", {
            "ts_event": [base + o * ms for o in offsets_ms],
            "trade_id": list(range(tid, tid + n)), "price": [100.0] * n, "qty": [1] * n,
        })  # fmt: skip

    write(1, 100, 105, 110)  # in order: the watermark goes to 110 ms
    write(10, 50, 200)  # late (starts at 50 < 110), ends after the cutoff
    write(20, 120, 130)  # in order, before the cutoff
    cutoff = base + 150 * ms
    before = vault.range("PROP3", cutoff)
    assert len(before) == 1
    report = vault.trim("PROP3", now=cutoff + int(vault.settings.retention_days * NS_PER_DAY))
    pd.testing.assert_frame_equal(vault.range("PROP3", cutoff), before)
    # the in-order blocks before the cutoff went; the late one stayed whole
    assert report.trades_removed == 5
    assert sorted(vault.range("PROP3")["trade_id"].tolist()) == [10, 11]
