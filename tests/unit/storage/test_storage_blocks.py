"""Block planning (``storage.blocks``, pure): how a batch is cut into blocks."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import numpy as np

from hypothesis import given
from hypothesis import strategies as st
from tickvault.records.trades import TRADE_DTYPE, TRADE_FIELDS, TradeBatch
from tickvault.storage.blocks import plan_blocks, sort_by_time
from tickvault.testing import trade_batches
from tickvault.timeutil import NS_PER_MS, trading_days

SP = ZoneInfo("America/Sao_Paulo")


@given(trade_batches(max_size=300), st.integers(1, 64))
def test_plan_blocks_any_batch_every_trade_once_in_time_order(
    batch: TradeBatch, max_trades: int
) -> None:
    blocks = plan_blocks(batch, SP, max_trades)
    joined = TradeBatch.concat([b.trades for b in blocks])
    expected = sort_by_time(batch)
    for name in TRADE_FIELDS:
        np.testing.assert_array_equal(getattr(joined, name), getattr(expected, name))
    keys = list(zip(joined.ts_event.tolist(), joined.trade_id.tolist(), strict=True))
    assert keys == sorted(keys)


@given(trade_batches(max_size=300), st.integers(1, 64))
def test_plan_blocks_any_batch_blocks_hold_one_day_within_the_limit(
    batch: TradeBatch, max_trades: int
) -> None:
    for block in plan_blocks(batch, SP, max_trades):
        assert 1 <= len(block.trades) <= max_trades
        days = trading_days(block.trades.ts_event, SP)
        assert (days == block.trading_day).all()
        assert block.first_ms == int(block.trades.ts_event[0]) // NS_PER_MS
        assert block.last_ms == int(block.trades.ts_event[-1]) // NS_PER_MS


@given(trade_batches(max_size=300), st.integers(1, 64))
def test_plan_blocks_one_day_even_sizes_no_tiny_tail(batch: TradeBatch, max_trades: int) -> None:
    by_day: dict[int, list[int]] = {}
    for block in plan_blocks(batch, SP, max_trades):
        by_day.setdefault(block.trading_day, []).append(len(block.trades))
    for sizes in by_day.values():
        # as few blocks as the limit allows, all of one size but the last, which is
        # short by less than one trade per block (never a tiny tail)
        assert len(sizes) == -(-sum(sizes) // max_trades)
        assert len(set(sizes[:-1])) <= 1
        assert sizes[-1] <= sizes[0] and sizes[0] - sizes[-1] < len(sizes)


def test_plan_blocks_empty_or_one_trade_no_block_or_one_block() -> None:
    assert plan_blocks(TradeBatch.empty(), SP, 10) == []
    record = np.zeros(1, dtype=TRADE_DTYPE)
    record["ts_event"] = record["ts_recv"] = 1_762_171_200 * 10**9
    blocks = plan_blocks(TradeBatch.from_structured(record), SP, 4096)
    assert len(blocks) == 1 and len(blocks[0].trades) == 1
