"""Knowledge time: when a live system could have known each record, and trades as known at T.

Two questions, two times (docs/features.md, "Knowledge time"):

- ``mode="store"``: what the store held at T, a record counts from its
  ``ts_recv`` (the store's ``known_at``): for auditing what a live model saw.
- ``mode="knowledge"`` (the default for features, frames and labels' inputs):
  what a live system could have known at T, per record:

  ===========================================  ==========================================
  record                                        known at
  ===========================================  ==========================================
  live (no HISTORY flag), any kind              ``ts_recv``
  history/imported trade (HISTORY, no EDIT or   ``min(ts_recv, ts_event + feed_latency_ns)``
  CANCEL)
  history/imported EDIT or CANCEL               ``ts_recv``
  ===========================================  ==========================================

  An imported trade was public at its event time: the market saw it then, a
  live feed ``feed_latency_ns`` later. A correction carries the ``ts_event``
  of the trade it corrects, not a time of its own, and B3's trade files give
  no time for a cancel row (``AcaoAtualizacao`` 2 has the original trade's
  ``HoraFechamento``), so nothing says when it became public: it counts from
  when tickvault received it. That is never earlier than the truth, so it never
  leaks the future; its cost is that a frame over imported history sees a
  live-fed trade as uncancelled until the file arrived. (The file importer
  already drops the file's own cancelled trades, so a frame over a file alone
  never holds them: a live system would have seen them until the cancel, a
  small look-ahead no file can avoid.)

``as_known_at`` then resolves the visible records with the store's rules
(``tickvault.storage.resolve``): per identity (trading date, trade_id), a
visible CANCEL removes the trade, else the latest-known visible EDIT is the
trade, else the earliest-known copy (on a tie the live one). It is a small
pure equivalent written here, because feature code may not import the storage
layer; tests/unit/features/test_features_known.py checks it against
``storage.resolve`` in ``store`` mode.
"""

from __future__ import annotations

from typing import Literal
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from tickvault.errors import QueryError
from tickvault.records.trades import TradeBatch, TradeFlag
from tickvault.timeutil import NS_PER_MS, trading_days
from tickvault.venue.b3 import B3_TZ

DEFAULT_FEED_LATENCY_NS = 5 * NS_PER_MS
"""How long after an event a live feed delivers it: imported trades count as known then."""
Mode = Literal["knowledge", "store"]
I64 = npt.NDArray[np.int64]
_CORRECTION = np.uint8(TradeFlag.EDIT | TradeFlag.CANCEL)


def knowledge_time(records: TradeBatch, feed_latency_ns: int = DEFAULT_FEED_LATENCY_NS) -> I64:
    """Per record, the time a live system could have known it (see the module docstring)."""
    if feed_latency_ns < 0:
        raise QueryError(f"feed_latency_ns must be >= 0, got {feed_latency_ns}")
    recv = np.asarray(records.ts_recv, dtype=np.int64)
    history = (records.flags & np.uint8(TradeFlag.HISTORY)) != 0
    plain = (records.flags & _CORRECTION) == 0
    early = np.minimum(recv, np.asarray(records.ts_event, np.int64) + feed_latency_ns)
    return np.where(history & plain, early, recv)


def as_known_at(
    records: TradeBatch,
    t_ns: int,
    *,
    mode: Mode = "knowledge",
    feed_latency_ns: int = DEFAULT_FEED_LATENCY_NS,
    start_ns: int | None = None,
    tz: ZoneInfo = B3_TZ,
) -> TradeBatch:
    """The trades with ``start_ns <= ts_event < t_ns`` as known at ``t_ns``, resolved.

    Rows come out sorted by (ts_event, trade_id), free of EDIT/CANCEL records,
    ready for the feature functions.
    """
    if mode == "knowledge":
        known = knowledge_time(records, feed_latency_ns)
    elif mode == "store":
        known = np.asarray(records.ts_recv, dtype=np.int64)
    else:
        raise QueryError(f"mode must be 'knowledge' or 'store', got {mode!r}")
    ts = records.ts_event
    mask = (ts < t_ns) & (known <= t_ns)
    if start_ns is not None:
        mask &= ts >= start_ns
    return resolve_records(records.take(np.flatnonzero(mask)), known[mask], tz)


def resolve_records(records: TradeBatch, known: I64, tz: ZoneInfo = B3_TZ) -> TradeBatch:
    """Apply the store's resolution rules to visible records, ordered by ``known``."""
    if len(records) == 0:
        return records
    flags = records.flags
    if not bool((flags & _CORRECTION).any()):
        keyed = (trading_days(records.ts_event, tz) << 43) | records.trade_id
        if np.unique(keyed).size == keyed.size:
            order = np.lexsort((records.trade_id, records.ts_event))
            return records.take(order)
    key = (trading_days(records.ts_event, tz) << 43) | records.trade_id
    klass = np.where(flags & TradeFlag.CANCEL, 2, np.where(flags & TradeFlag.EDIT, 1, 0))
    secondary = np.where(klass == 0, -known, known)
    live_first = (flags & TradeFlag.HISTORY) == 0
    order = np.lexsort((live_first, secondary, klass, key))
    sorted_key = key[order]
    last_of_key = np.ones(order.size, dtype=bool)
    last_of_key[:-1] = sorted_key[1:] != sorted_key[:-1]
    winners = order[last_of_key]
    winners = winners[klass[winners] != 2]
    winners = winners[np.lexsort((records.trade_id[winners], records.ts_event[winners]))]
    out = records.take(winners)
    if bool((out.flags & _CORRECTION).any()):  # an edit is the trade now: drop its flag
        out = TradeBatch(**{**out.columns(), "flags": out.flags & ~_CORRECTION})
    return out
