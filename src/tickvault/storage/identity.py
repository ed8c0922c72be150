"""A trade keeps its event time: checks that a write cannot store a trade twice (pure).

A trade is identified by (symbol, trading date, trade_id). Reads fetch blocks
by event time, so two records of one identity with different ``ts_event``
would put the trade in two places: a full-day read would resolve them to one,
a read over only the new time would show the other. So every record of an
identity (a repeat, an ``EDIT``, a ``CANCEL``) must carry the trade's event
time, and a write that breaks this is refused whole.

``Vault.write_trades`` and ``Vault.store_batch`` apply these checks. The meta
hash of each stream keeps the largest trade_id stored per trading day, so the
stored trades are read only when a batch reuses ids of a day (a repeat, a
correction, a re-import), never for new trades.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True, slots=True)
class Conflict:
    """One trade id given two event times."""

    day: int
    trade_id: int
    ts_first: int
    ts_second: int


def within_batch(
    days: npt.NDArray[np.int64], trade_id: npt.NDArray[np.int64], ts: npt.NDArray[np.int64]
) -> Conflict | None:
    """The first identity of the batch that appears with two event times, if any."""
    if days.size < 2:
        return None
    same_day = days[1:] == days[:-1]
    if (days[1:] >= days[:-1]).all() and not (same_day & (trade_id[1:] <= trade_id[:-1])).any():
        return None  # days in order and ids rising within each: no repeats (the usual case)
    order = np.lexsort((ts, trade_id, days))
    d, t, e = days[order], trade_id[order], ts[order]
    bad = np.flatnonzero((d[1:] == d[:-1]) & (t[1:] == t[:-1]) & (e[1:] != e[:-1]))
    if bad.size == 0:
        return None
    i = int(bad[0])
    return Conflict(int(d[i]), int(t[i]), int(e[i]), int(e[i + 1]))


def against_stored(
    day: int,
    trade_id: npt.NDArray[np.int64],
    ts: npt.NDArray[np.int64],
    stored_id: npt.NDArray[np.int64],
    stored_ts: npt.NDArray[np.int64],
) -> Conflict | None:
    """The first trade of one day's batch rows stored before with another event time."""
    if stored_id.size == 0 or trade_id.size == 0:
        return None
    order = np.lexsort((stored_ts, stored_id))
    sid, sts = stored_id[order], stored_ts[order]
    pos = np.clip(np.searchsorted(sid, trade_id), 0, sid.size - 1)
    found = sid[pos] == trade_id
    # Every stored record of an id must match: within an id's run the times are
    # sorted, so comparing the run's first (earliest) and last (latest) covers all.
    last = np.clip(np.searchsorted(sid, trade_id, side="right") - 1, 0, sid.size - 1)
    bad = found & ((sts[pos] != ts) | (sts[last] != ts))
    if not bad.any():
        return None
    i = int(np.flatnonzero(bad)[0])
    stored = int(sts[pos[i]]) if sts[pos[i]] != ts[i] else int(sts[last[i]])
    return Conflict(day, int(trade_id[i]), stored, int(ts[i]))


def days_to_check(
    batch_days: npt.NDArray[np.int64],
    trade_id: npt.NDArray[np.int64],
    stored_max: dict[int, int | None],
) -> list[int]:
    """Trading days of the batch whose ids may repeat stored ones.

    ``stored_max[day]``: the largest trade_id stored that day, -1 when the store
    has nothing of that day, None when unknown (a store written before the
    per-day maximum was kept): such a day is checked.
    """
    out = []
    for day, known in stored_max.items():
        if known is not None and known < 0:
            continue
        if known is None or int(trade_id[batch_days == day].min()) <= known:
            out.append(day)
    return out
