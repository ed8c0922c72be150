"""Which settled realtime entries are swapped together, and the blocks they become (pure).

Compaction (``storage.compaction``) rewrites the small blocks of a settled span of a
symbol's realtime stream as full blocks. Each swap (one script call) removes a set of
realtime entries and appends blocks holding exactly their records, so after every
swap each record is stored once. The sets are chosen here:

1. *Components*: the entries of one trading day, ordered by their first record's
   ``(ts_event, trade_id)``, are cut where an entry starts after everything before it
   ended. Entries written in order (the bridge's) are then each a component of their
   own; a late entry joins the entries it overlaps, so the blocks of different swaps
   do not overlap in time (a read of the day stays a zero-copy slice). A component is
   capped (``COMPONENT_MAX_BLOCKS`` full blocks, ``max_entries`` entries): past the cap
   a new one starts, whose blocks may overlap the previous ones (still correct; a read
   over both sorts the records).
2. *Chunks*: components are packed in order into chunks of at most ``max_trades``
   records and ``max_entries`` entries; a chunk is one swap and, unless one component
   alone is larger, one block. The last chunk of a day is its *tail*: not full, so it is
   left for a later run while the day's session is open (the next run completes it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

COMPONENT_MAX_BLOCKS = 4
"""A component (entries that overlap in time) holds at most this many full blocks'
worth of records: bounds one swap however a late block overlaps the day."""


@dataclass(frozen=True, slots=True)
class EntrySpan:
    """One realtime entry as the planner sees it."""

    first: tuple[int, int]
    """(ts_event, trade_id) of its first record."""
    last: tuple[int, int]
    """(ts_event, trade_id) of its last record."""
    n: int
    """Records in it."""


@dataclass(frozen=True, slots=True)
class Chunk:
    entries: tuple[int, ...]
    """Indices into the spans given to ``plan_chunks``, in time order."""
    trades: int
    full: bool
    """False for a day's tail (the last chunk, ended because the entries ran out)."""


def plan_chunks(spans: Sequence[EntrySpan], max_trades: int, max_entries: int) -> list[Chunk]:
    """The swaps of one trading day's entries (module doc), in time order."""
    order = sorted(range(len(spans)), key=lambda i: (spans[i].first, spans[i].last))
    cap = COMPONENT_MAX_BLOCKS * max_trades
    components: list[list[int]] = []
    current: list[int] = []
    end: tuple[int, int] = (0, 0)
    n = 0
    for i in order:
        s = spans[i]
        if current and (s.first > end or n + s.n > cap or len(current) >= max_entries):
            components.append(current)
            current, n = [], 0
        end = s.last if not current else max(end, s.last)
        current.append(i)
        n += s.n
    if current:
        components.append(current)
    chunks: list[Chunk] = []
    taken: list[int] = []
    n = 0
    for comp in components:
        size = sum(spans[i].n for i in comp)
        if taken and (n + size > max_trades or len(taken) + len(comp) > max_entries):
            chunks.append(Chunk(tuple(taken), n, full=True))
            taken, n = [], 0
        taken += comp
        n += size
    if taken:
        chunks.append(Chunk(tuple(taken), n, full=False))
    return chunks


def merge_order(columns: dict[str, npt.NDArray[Any]]) -> npt.NDArray[np.intp]:
    """The order of records in compacted blocks: (ts_event, trade_id), then ts_recv and
    flags so that a trade's records keep one order whatever blocks they came from."""
    return np.lexsort(
        (columns["flags"], columns["ts_recv"], columns["trade_id"], columns["ts_event"])
    )


def block_cuts(n: int, max_trades: int) -> list[tuple[int, int]]:
    """[lo, hi) of the blocks ``n`` sorted records are cut into: at most ``max_trades``
    each, as few as that allows, their sizes at most one apart."""
    if n == 0:
        return []
    blocks = -(-n // max_trades)
    return [(n * i // blocks, n * (i + 1) // blocks) for i in range(blocks)]
