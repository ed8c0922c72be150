"""From decoded records to the answer of a query (pure).

The store is an append-only log of records: trades, repeats of trades (the
same trade through the realtime and historical streams, or written twice),
edits and cancels, each with the ``ts_recv`` at which tickvault saw it. A
query at knowledge time K sees the records with ``ts_recv <= K`` and, for
each trade identity (trading date, trade_id):

- if a CANCEL is visible, the trade is gone;
- else if an EDIT is visible, the latest visible edit is the trade;
- else the earliest-received copy is the trade (on a tie, the live one).

Rows come out sorted by (ts_event, trade_id). When the records are already
sorted, unique and free of corrections (the usual case of one stream) the
answer is a zero-copy slice of the decoded columns (as known at K: that slice filtered
by ``ts_recv <= K``, no identity sort).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from tickvault.records.trades import TRADE_FIELDS, TradeFlag

Columns = dict[str, npt.NDArray[Any]]
_CORRECTION = int(TradeFlag.EDIT | TradeFlag.CANCEL)


@dataclass(frozen=True, slots=True)
class Decoded:
    """Decoded records of several blocks, with per-block metadata."""

    columns: Columns
    days: npt.NDArray[np.int64]
    """Trading day of each block (days since epoch)."""
    counts: npt.NDArray[np.int64]
    """Trades in each block."""
    flags_or: int
    recv_max: int

    @property
    def size(self) -> int:
        return int(self.counts.sum())


def _is_sorted_unique(d: Decoded) -> bool:
    """True when rows are in (ts_event, trade_id) order and every identity is unique."""
    ts, tid = d.columns["ts_event"], d.columns["trade_id"]
    if ts.size < 2:
        return True
    if (np.diff(d.days) < 0).any():
        return False
    if (np.diff(ts) < 0).any():
        return False
    # trade_id must rise strictly, except where a block starts a later trading day.
    bad = np.flatnonzero(np.diff(tid) <= 0) + 1
    if bad.size == 0:
        return True
    block_starts = np.cumsum(d.counts) - d.counts
    day_change_rows = block_starts[1:][np.diff(d.days) > 0]
    return bool(np.isin(bad, day_change_rows).all())


def resolve(d: Decoded, start_ns: int, end_ns: int, known_at_ns: int | None) -> Columns:
    """The trades visible in [start_ns, end_ns) as known at ``known_at_ns`` (None: now)."""
    cols = d.columns
    ts = cols["ts_event"]
    needs_known = known_at_ns is not None and known_at_ns < d.recv_max
    if not (d.flags_or & _CORRECTION) and _is_sorted_unique(d):
        lo, hi = np.searchsorted(ts, [start_ns, end_ns], side="left")
        if not needs_known:
            return {name: cols[name][lo:hi] for name in TRADE_FIELDS}
        # One record per identity and no corrections: a trade is visible at K exactly
        # when its one record is, so K only filters (order kept, no identity sort).
        visible = np.flatnonzero(cols["ts_recv"][lo:hi] <= known_at_ns) + lo
        return {name: cols[name][visible] for name in TRADE_FIELDS}

    mask = (ts >= start_ns) & (ts < end_ns)
    if needs_known:
        mask &= cols["ts_recv"] <= known_at_ns
    idx = np.flatnonzero(mask)
    flags = cols["flags"][idx]
    recv = cols["ts_recv"][idx]
    day_rows = np.repeat(d.days, d.counts)[idx]
    key = (day_rows << 43) | cols["trade_id"][idx]
    klass = np.where(flags & TradeFlag.CANCEL, 2, np.where(flags & TradeFlag.EDIT, 1, 0))
    secondary = np.where(klass == 0, -recv, recv)
    live_first = (flags & TradeFlag.HISTORY) == 0  # on a tie, the live copy wins
    order = np.lexsort((live_first, secondary, klass, key))
    sorted_key = key[order]
    last_of_key = np.ones(order.size, dtype=bool)
    last_of_key[:-1] = sorted_key[1:] != sorted_key[:-1]
    winners = order[last_of_key]
    winners = winners[klass[winners] != 2]
    rows = idx[winners]
    rows = rows[np.lexsort((cols["trade_id"][rows], ts[rows]))]
    return {name: cols[name][rows] for name in TRADE_FIELDS}
