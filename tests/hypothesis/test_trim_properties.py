"""A dry-run trim, checked against the real trim on a real Valkey with hypothesis."""

from __future__ import annotations

import pandas as pd

from hypothesis import given
from hypothesis import strategies as st
from tests.hypothesis.test_store_properties import PROPERTY, write_in_chunks
from tickvault import TradeBatch, Vault
from tickvault.testing import trade_batches
from tickvault.timeutil import NS_PER_DAY


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
