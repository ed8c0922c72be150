"""Trade reads: the blocks that can hold a range, fetched in one round trip, decoded,
and resolved as of a knowledge time (``storage.resolve``).

A range [start, end) is served by the stream entries whose ids fall in it, the
in-order block just before it (which may run into the range), and the late-block
index (blocks appended after newer ones). A query of ``realtime`` reads the
``compacted`` stream too (the realtime blocks compaction rewrote,
``storage.compaction``). The callers (``Vault``) check the arguments and translate
Valkey's errors (``storage.connection.translate``).

A compaction swap moves records from ``realtime`` to ``compacted`` in one script call,
so the first round trip of a read is one MULTI/EXEC (every key of a symbol shares its
slot): it sees each record once. A read that needs a second round trip (late entries
fetched by id, stepping back over late entries) reads the compaction generation
(``gen`` of the compacted stream's meta) in both and starts again when it moved.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from tickvault.config import Settings
from tickvault.errors import QueryError, ServerError
from tickvault.records.trades import TradeBatch
from tickvault.storage import codec
from tickvault.storage.keys import (
    STORED_STREAMS,
    STREAMS,
    StoredStream,
    StreamKind,
    late_key,
    meta_key,
    stored_streams,
    trades_key,
)
from tickvault.storage.resolve import Columns, Decoded, resolve
from tickvault.timeutil import NS_PER_MS, TimeLike, to_ns

FAR_FUTURE_NS = 2**62
"""The end of an unbounded range."""
_FETCH_ATTEMPTS = 1000
"""A read restarted this many times by compaction swaps landing inside it gives up (a
swap takes milliseconds and compaction runs every minute or so: never in practice)."""


def bounds(
    start: TimeLike | None, end: TimeLike | None, known_at: TimeLike | None, settings: Settings
) -> tuple[int, int, int | None]:
    """(start_ns, end_ns, known_ns) of a query; QueryError when start is after end."""
    tz = settings.tz
    start_ns = 0 if start is None else to_ns(start, tz, name="start")
    end_ns = FAR_FUTURE_NS if end is None else to_ns(end, tz, name="end")
    if start_ns > end_ns:
        raise QueryError(
            f"start ({pd.Timestamp(start_ns, tz='UTC')}) is after end "
            f"({pd.Timestamp(end_ns, tz='UTC')}); the range is [start, end)"
        )
    known = None if known_at is None else to_ns(known_at, tz, name="known_at")
    return start_ns, end_ns, known


class TradeReads:
    """Reads of one store's trade streams through the valkey-py client ``r``."""

    def __init__(self, r: Any, settings: Settings):
        self._r = r
        self.settings = settings

    def range_columns(
        self,
        symbol: str,
        start_ns: int,
        end_ns: int,
        known: int | None,
        streams: Sequence[StreamKind | StoredStream] = STREAMS,
    ) -> Columns:
        """The trades with start_ns <= ts_event < end_ns as known at ``known``."""
        if start_ns == end_ns:
            return TradeBatch.empty().columns()
        decoded = self.decoded(symbol, start_ns, end_ns, streams, known)
        return resolve(decoded, start_ns, end_ns, known)

    def last_columns(self, symbol: str, n: int, known: int | None) -> Columns:
        """The ``n`` most recent trades (by ts_event) as known at ``known``."""
        end_ns = FAR_FUTURE_NS if known is None else known + 1
        if n == 0:
            return TradeBatch.empty().columns()
        # Look back over more and more blocks until n trades are visible.
        look_back = 2
        while True:
            start_ns, exhausted = self._start_of_last_blocks(symbol, look_back, end_ns)
            if exhausted:
                start_ns = 0  # everything, late blocks with older trades included
            cols = resolve(self.decoded(symbol, start_ns, end_ns, STREAMS), start_ns, end_ns, known)
            if len(cols["ts_event"]) >= n or exhausted:
                return {k: v[-n:] for k, v in cols.items()}
            look_back *= 4

    def _start_of_last_blocks(self, symbol: str, count: int, end_ns: int) -> tuple[int, bool]:
        """(time, exhausted): the start of the ``count``-th last block of each stream;
        exhausted when no stream has that many blocks before ``end_ns``."""
        start = end_ns
        exhausted = True
        end_ms = (end_ns - 1) // NS_PER_MS
        for stream in STORED_STREAMS:
            entries = self._r.xrevrange(trades_key(symbol, stream), f"{end_ms}", "-", count=count)
            if entries:
                start = min(start, entry_ms(entries[-1][0]) * NS_PER_MS)
            exhausted = exhausted and len(entries) < count
        return start, exhausted

    def fetch(
        self, symbol: str, streams: Sequence[StreamKind | StoredStream], start_ns: int, end_ns: int
    ) -> list[bytes]:
        """Blocks that may hold trades in [start_ns, end_ns): one round trip in the usual
        case (the entries in range, the block before them, the late index, per stored
        stream, and the compaction generation, in one MULTI/EXEC)."""
        stored = stored_streams(streams)
        for _ in range(_FETCH_ATTEMPTS):
            blocks = self._fetch_once(symbol, stored, start_ns, end_ns)
            if blocks is not None:
                return blocks
        raise ServerError(
            f"a read of {symbol} was restarted {_FETCH_ATTEMPTS} times by compaction swaps "
            "landing inside it: is a `tickvault compact` looping? Stop it and read again"
        )

    def _fetch_once(
        self, symbol: str, streams: Sequence[StoredStream], start_ns: int, end_ns: int
    ) -> list[bytes] | None:
        """``fetch``'s blocks, or None when a compaction swap landed between its round
        trips (read again)."""
        start_ms, last_ms = start_ns // NS_PER_MS, (end_ns - 1) // NS_PER_MS
        gen_key = meta_key(symbol, "compacted")
        pipe = self._r.pipeline(transaction=True)
        for stream in streams:
            key = trades_key(symbol, stream)
            pipe.xrange(key, f"{start_ms}-0", f"{last_ms}")
            pipe.zrangebyscore(late_key(symbol, stream), start_ms, "+inf")
            pipe.xrevrange(key, f"({start_ms}-0" if start_ms > 0 else "0-0", "-", count=1)
        pipe.hget(gen_key, "gen")
        replies = pipe.execute()
        gen = replies[-1]
        found: dict[tuple[str, bytes], bytes] = {}
        wanted: list[tuple[str, bytes]] = []
        stepped = False
        for i, stream in enumerate(streams):
            key = trades_key(symbol, stream)
            main, late_members, before = replies[3 * i : 3 * i + 3]
            found.update(((key, eid), fields[b"b"]) for eid, fields in main)
            # The in-order block just before start may run into the range; a late
            # entry there does not count, so step back over it (rare).
            if before and b"l" in before[0][1]:
                step = self.in_order_entry_before(key, b"(" + before[0][0])
                before = [(step[0], {b"b": step[1]})] if step else []
                stepped = True
            found.update(((key, eid), fields[b"b"]) for eid, fields in before)
            for member in late_members:
                eid, first_ms = split_member(member)
                if first_ms <= last_ms and (key, eid) not in found:
                    wanted.append((key, eid))
        if wanted:
            pipe = self._r.pipeline(transaction=True)
            for key, eid in wanted:
                pipe.xrange(key, eid, eid)
            pipe.hget(gen_key, "gen")
            *entries_of, gen_after = pipe.execute()
            if gen_after != gen:
                return None
            for (key, _), entries in zip(wanted, entries_of, strict=True):
                found.update(((key, eid), fields[b"b"]) for eid, fields in entries)
        elif stepped and self._r.hget(gen_key, "gen") != gen:
            return None
        return list(found.values())

    def in_order_entry_before(self, key: str, cursor: str | bytes) -> tuple[bytes, bytes] | None:
        """(id, block) of the last in-order entry at or before ``cursor`` (an XREVRANGE
        start such as ``(<ms>-0`` or ``+``), stepping back over late entries (field ``l``)."""
        while entry := self._r.xrevrange(key, cursor, "-", count=1):
            eid, fields = entry[0]
            if b"l" not in fields:
                return eid, fields[b"b"]
            cursor = b"(" + eid
        return None

    def decoded(
        self,
        symbol: str,
        start_ns: int,
        end_ns: int,
        streams: Sequence[StreamKind | StoredStream],
        known: int | None = None,
    ) -> Decoded:
        """The blocks that may hold records of [start_ns, end_ns), decoded; with ``known``,
        not those received wholly after it (none of their records is visible at
        ``known``, and an invisible record changes no visible trade's resolution)."""
        blocks = self.fetch(symbol, streams, start_ns, end_ns)
        headers = [codec.read_header(b) for b in blocks]
        keep = [
            i
            for i, h in enumerate(headers)
            if h.ts_last >= start_ns
            and h.ts_first < end_ns
            and (known is None or h.recv_min <= known)
        ]
        keep.sort(key=lambda i: (headers[i].ts_first, headers[i].ts_last))
        blocks = [blocks[i] for i in keep]
        headers = [headers[i] for i in keep]
        columns = codec.decode_blocks(blocks, threads=self.settings.threads, headers=headers)
        return Decoded(
            columns=columns,
            days=np.array([h.trading_day for h in headers], dtype=np.int64),
            counts=np.array([h.n for h in headers], dtype=np.int64),
            flags_or=functools.reduce(operator.or_, (h.flags_or for h in headers), 0),
            recv_max=max((h.recv_max for h in headers), default=0),
        )


def entry_ms(entry_id: bytes | str) -> int:
    raw = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(raw.split("-", 1)[0])


def split_member(member: bytes) -> tuple[bytes, int]:
    """(entry id, first ms) of a late-index member ``<id>@<first_ms>``."""
    eid, _, first = member.partition(b"@")
    return eid, int(first)
