"""Cut a batch of trades into blocks (pure).

A block holds trades of one trading date, sorted by (ts_event, trade_id), at
most ``max_trades`` of them. A write of one trade makes a one-trade block at
once; a burst is packed into as few blocks as the limit allows.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import numpy as np

from tickvault.records.trades import TradeBatch
from tickvault.timeutil import NS_PER_MS, trading_days


@dataclass(frozen=True, slots=True)
class PlannedBlock:
    trades: TradeBatch
    trading_day: int
    first_ms: int
    last_ms: int


def sort_by_time(batch: TradeBatch) -> TradeBatch:
    """Rows ordered by (ts_event, trade_id); returns the batch itself when already so."""
    ts, tid = batch.ts_event, batch.trade_id
    if len(batch) < 2:
        return batch
    dts = np.diff(ts)
    if (dts > 0).all() or ((dts >= 0).all() and not ((dts == 0) & (np.diff(tid) <= 0)).any()):
        return batch
    return batch.take(np.lexsort((tid, ts)))


def plan_blocks(batch: TradeBatch, tz: ZoneInfo, max_trades: int) -> list[PlannedBlock]:
    """Blocks for ``batch``, in time order."""
    if len(batch) == 0:
        return []
    batch = sort_by_time(batch)
    days = trading_days(batch.ts_event, tz)
    cuts = [0, *(np.flatnonzero(np.diff(days)) + 1).tolist(), len(batch)]
    blocks: list[PlannedBlock] = []
    for lo, hi in itertools.pairwise(cuts):
        n_blocks = -(-(hi - lo) // max_trades)
        size = -(-(hi - lo) // n_blocks)  # even sizes: no tiny tail block
        for start in range(lo, hi, size):
            part = batch.take(slice(start, min(start + size, hi)))
            blocks.append(
                PlannedBlock(
                    trades=part,
                    trading_day=int(days[start]),
                    first_ms=int(part.ts_event[0]) // NS_PER_MS,
                    last_ms=int(part.ts_event[-1]) // NS_PER_MS,
                )
            )
    return blocks
