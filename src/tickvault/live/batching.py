"""What the bridge holds between writes, and what one write takes (pure: no I/O, no clock).

The subscriber thread adds each message's records to the pending batch of its
(symbol, stream), with the cursor it moves; the writer thread takes everything
pending whenever it is free (``take``), so a lone trade goes out at once and what
arrives while a write is in flight is packed into the next one. There is no timer:
nothing waits for company, so no batch ages. The bound is on bytes: once what is
held plus what is in flight reaches ``max_held_bytes``, the subscriber stops reading
(``full``) until the write in flight is done (``written``). How the records are cut
into blocks is the store's job (``block_max_trades``). The ``Batches`` object is not
thread-safe: the bridge calls it holding its lock.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from tickvault.records.events import Gap
from tickvault.records.trades import TRADE_DTYPE
from tickvault.storage.keys import StoreKind
from tickvault.storage.writes import StoreItem
from tickvault.transport.wire import BOOK_DTYPE

BatchKey = tuple[str, StoreKind]
"""(symbol, stream)."""


@dataclass(slots=True)
class Pending:
    """The records of one (symbol, stream) held for the next write."""

    arrays: list[npt.NDArray[np.void]] = field(default_factory=list)
    cursors: dict[str, int] = field(default_factory=dict)
    recv_ns: list[int] = field(default_factory=list)
    first: dict[str, int] = field(default_factory=dict)
    """The first sequence number held per cursor (for the report of what was not stored)."""


@dataclass(slots=True)
class Cycle:
    """What one write stores: rejected messages, gap markers, then the data."""

    pending: dict[BatchKey, Pending]
    gaps: list[Gap]
    rejects: list[tuple[str, str, list[bytes]]]

    def items(self) -> list[StoreItem]:
        """One store item per (symbol, stream), trades before book updates (so a book
        call never delays the trades that arrived with it)."""
        items = []
        for symbol, stream in sorted(self.pending, key=lambda k: k[1] == "book"):
            p = self.pending[(symbol, stream)]
            dtype = BOOK_DTYPE if stream == "book" else TRADE_DTYPE
            records = np.concatenate(p.arrays) if p.arrays else np.zeros(0, dtype)
            items.append(StoreItem(symbol, stream, records, p.cursors))
        return items

    def unstored(self) -> tuple[int, int, dict[str, tuple[int, int]]]:
        """What is left if this cycle is never written: trades, book updates, and the
        sequence range per cursor."""
        trades = book = 0
        ranges: dict[str, tuple[int, int]] = {}
        for (_, stream), p in self.pending.items():
            n = sum(len(a) for a in p.arrays)
            if stream == "book":
                book += n
            else:
                trades += n
            for name, last in p.cursors.items():
                ranges[name] = (p.first.get(name, last), last)
        return trades, book, ranges


class Batches:
    """Everything held for the next write, and the bytes held and in flight."""

    def __init__(self, max_held_bytes: int):
        self.max_held_bytes = max_held_bytes
        self.held_bytes = 0
        self.inflight_bytes = 0
        self._pending: dict[BatchKey, Pending] = {}
        self._gaps: list[Gap] = []
        self._rejects: list[tuple[str, str, list[bytes]]] = []

    def empty(self) -> bool:
        return not (self._pending or self._gaps or self._rejects)

    def full(self) -> bool:
        """Held and in flight reach the bound: stop reading until the write is done."""
        return self.held_bytes + self.inflight_bytes >= self.max_held_bytes

    def add(
        self,
        key: BatchKey,
        records: npt.NDArray[np.void],
        cursor: str,
        seq: int,
        *,
        size_bytes: int,
        recv_ns: int | None = None,
    ) -> None:
        """Message ``seq`` of ``cursor`` (``size_bytes`` on the wire): its records, if any,
        and the cursor it moves; ``recv_ns`` for the lag of a live trade message."""
        pending = self._pending.get(key)
        if pending is None:
            pending = self._pending[key] = Pending()
        if len(records):
            pending.arrays.append(records)
            self.held_bytes += size_bytes
            if recv_ns is not None:
                pending.recv_ns.append(recv_ns)
        pending.first.setdefault(cursor, seq)
        pending.cursors[cursor] = seq

    def add_gaps(self, key: BatchKey, gaps: list[Gap], cursor: str, first: int, last: int) -> None:
        """Gap markers, with the cursor they move past: seqs ``first..last`` of it."""
        self._gaps.extend(gaps)
        pending = self._pending.setdefault(key, Pending())
        pending.first.setdefault(cursor, first)
        pending.cursors[cursor] = max(pending.cursors.get(cursor, 0), last)

    def add_reject(self, reason: str, detail: str, frames: list[bytes]) -> None:
        self._rejects.append((reason, detail, list(frames)))

    def take(self) -> Cycle:
        """Everything held, for one write; what was held is now in flight."""
        cycle = Cycle(self._pending, self._gaps, self._rejects)
        self._pending, self._gaps, self._rejects = {}, [], []
        self.inflight_bytes, self.held_bytes = self.held_bytes, 0
        return cycle

    def written(self) -> None:
        """The write in flight is done (stored or given up)."""
        self.inflight_bytes = 0

    def clear(self) -> None:
        """Drop what is held (every topic restarts from the store)."""
        self._pending.clear()
        self._gaps.clear()
        self.held_bytes = 0
