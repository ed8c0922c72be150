"""Compaction: the small blocks of a settled span of a symbol's realtime stream rewritten
as full blocks in its ``compacted`` stream (docs/storage-format.md, "Compaction").

A realtime entry is *settled* when every trade in it is ``compact_after_minutes`` old
(event time) or its trading day's B3 session has closed. Per symbol and trading day the
settled entries are read, planned into swaps (``storage.compactplan``) and each swap is
one ``compact_blocks.lua`` call: it checks that no entry was deleted since the scan
read the stream (the compaction generation, which every swap and trim moves; else it
changes nothing and the symbol is read again), deletes the entries (one XTRIM MINID
for those at the start of the stream, XDEL for the others), and
appends blocks holding exactly their records (every repeat and correction, with its
own ``ts_recv`` and flags) to the compacted stream, moving the record counters and
bumping the compaction generation. So at every instant each record is stored once: a
compactor killed anywhere loses or doubles nothing, and two compactors at once are safe.
Entries the bridge appends meanwhile are not touched (no WATCH, which a steady stream
of appends would defeat). While a day's session is open, only full chunks are swapped;
the day's tail waits for the next run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from tickvault.config import Settings
from tickvault.errors import QueryError
from tickvault.records.trades import TRADE_FIELDS, TradeBatch
from tickvault.storage import codec
from tickvault.storage.compactplan import EntrySpan, block_cuts, merge_order, plan_chunks
from tickvault.storage.keys import StoredStream, late_key, meta_key, trades_key
from tickvault.storage.reads import split_member
from tickvault.storage.scripting import lua_source
from tickvault.timeutil import NS_PER_DAY, NS_PER_MS, local_to_utc_ns, trading_day
from tickvault.venue import b3

SWAP_MAX_ENTRIES = 16_384
"""Realtime entries removed by one swap. Entries at the start of the stream (the usual
case: settled spans are the oldest) go with one XTRIM MINID, which frees whole stream
nodes; others go with XDEL, a few microseconds each, at most ``XDEL_MAX`` per swap."""
XDEL_MAX = 1024
"""Entries one swap removes one by one (XDEL): bounds how long one script call holds
the server (about 4 ms) when the entries are not the start of the stream."""
_PAGE = 2000
"""Entries per XRANGE page of the scan."""
_ATTEMPTS = 3
"""Scans of a symbol in one run when another compactor or a trim deletes entries
under it (its swaps then change nothing, and it reads the stream again)."""


@dataclasses.dataclass(frozen=True, slots=True)
class CompactItem:
    """What compaction did (or, in a dry run, would do) to one symbol. ``*_before`` and
    ``*_after``: the realtime and compacted streams together (blocks = entries, trades =
    records stored, bytes = Valkey's MEMORY USAGE of their keys)."""

    symbol: str
    blocks_before: int
    trades_before: int
    bytes_before: int
    entries_compacted: int
    """Realtime entries removed (or that would be)."""
    trades_compacted: int
    blocks_written: int
    """Compacted blocks appended (or that would be)."""
    swaps: int
    swaps_lost: int
    """Swaps that changed nothing because entries were deleted since the scan read them
    (another compactor or a trim got there first); the symbol was then read again."""
    blocks_after: int
    trades_after: int
    bytes_after: int
    """Equal to before in a dry run."""


@dataclasses.dataclass(frozen=True, slots=True)
class CompactReport:
    now_ns: int
    cutoff_ns: int
    """Entries whose trades are all before this are settled (plus closed sessions)."""
    dry_run: bool
    items: tuple[CompactItem, ...] = ()

    @property
    def trades_compacted(self) -> int:
        return sum(i.trades_compacted for i in self.items)

    @property
    def entries_compacted(self) -> int:
        return sum(i.entries_compacted for i in self.items)


@dataclasses.dataclass(slots=True)
class _Entry:
    eid: bytes
    member: bytes | None
    """Its late-index member (late entries only)."""
    block: bytes
    header: codec.BlockHeader


class Compactor:
    """Compaction of one store through the valkey-py client ``r``."""

    def __init__(self, r: Any, settings: Settings):
        self._r = r
        self.settings = settings
        self._tz = settings.tz
        self._swap = r.register_script(lua_source("compact_blocks.lua", block_append=True))

    def compact(
        self,
        symbols: Sequence[str],
        now_ns: int,
        *,
        dry_run: bool = False,
        stop: Callable[[], bool] | None = None,
    ) -> CompactReport:
        """Compact the settled realtime blocks of ``symbols`` as of ``now_ns``; ``stop``
        (checked between swaps) ends the run early."""
        cutoff = now_ns - int(self.settings.compact_after_minutes * 60 * 1e9)
        items = []
        for symbol in symbols:
            if stop is not None and stop():
                break
            items.append(self._symbol(symbol, now_ns, cutoff, dry_run, stop))
        return CompactReport(now_ns, cutoff, dry_run, tuple(items))

    # ------------------------------------------------------------------ one symbol
    def _symbol(
        self, symbol: str, now_ns: int, cutoff: int, dry_run: bool, stop: Callable[[], bool] | None
    ) -> CompactItem:
        before = self._footprint(symbol)
        totals = [0, 0, 0, 0, 0]  # entries, trades, blocks, swaps, lost
        for _ in range(_ATTEMPTS):
            run = _Run(self, symbol, now_ns, cutoff, dry_run, stop, totals)
            try:
                run.scan()
                break
            except _Stale:
                totals[4] += 1  # another compactor or a trim deleted entries: read again
        after = before if dry_run else self._footprint(symbol)
        return CompactItem(symbol, before[0], before[1], before[2], totals[0], totals[1],
                           totals[2], totals[3], totals[4], after[0], after[1],
                           after[2])  # fmt: skip

    # ------------------------------------------------------------------ helpers
    def _footprint(self, symbol: str) -> tuple[int, int, int]:
        """(blocks, trades, bytes) of the realtime and compacted streams of ``symbol``."""
        pipe = self._r.pipeline(transaction=True)
        keys = []
        streams: tuple[StoredStream, ...] = ("realtime", "compacted")
        for stream in streams:
            pipe.xlen(trades_key(symbol, stream))
            pipe.hget(meta_key(symbol, stream), "trades")
            keys += [trades_key(symbol, stream), late_key(symbol, stream), meta_key(symbol, stream)]
        for k in keys:
            pipe.memory_usage(k, samples=0)
        replies = pipe.execute()
        blocks = int(replies[0] or 0) + int(replies[2] or 0)
        trades = int(replies[1] or 0) + int(replies[3] or 0)
        return blocks, trades, sum(int(v or 0) for v in replies[4:])

    def _day_start(self, day: int) -> int:
        return int(local_to_utc_ns(np.array([day * NS_PER_DAY], dtype=np.int64), self._tz)[0])

    def _close_of(self, symbol: str, day: int) -> int:
        """When trading day ``day`` of ``symbol`` is over: its B3 session's close, or the
        end of the local day (no session that day, or no default hours for the symbol)."""
        date = np.datetime64(day, "D").astype(object)
        try:
            return b3.session_close_ns(symbol, date)
        except QueryError:
            return self._day_start(day + 1)


class _Stale(Exception):
    """A swap found another generation: entries were deleted since the scan read them."""


class _Run:
    """One scan of a symbol's realtime stream and the swaps of what is settled in it."""

    def __init__(
        self,
        owner: Compactor,
        symbol: str,
        now_ns: int,
        cutoff: int,
        dry_run: bool,
        stop: Callable[[], bool] | None,
        totals: list[int],
    ):
        self._r, self.settings, self._tz = owner._r, owner.settings, owner._tz
        self._owner = owner
        self.symbol, self.cutoff, self.dry_run, self.stop = symbol, cutoff, dry_run, stop
        self.totals = totals
        self.today = trading_day(now_ns, self._tz)
        self.today_closed = now_ns >= owner._close_of(symbol, self.today)
        self.key = trades_key(symbol, "realtime")
        self.order: list[bytes] = []
        """Every entry id of the stream's start, as scanned, in stream order."""
        self.removed: set[bytes] = set()
        self.head = 0
        """``order[head]`` is the stream's first entry (those before it are removed)."""
        self.gen = "0"

    def stopped(self) -> bool:
        return self.stop is not None and self.stop()

    def closed(self, day: int) -> bool:
        return day < self.today or (day == self.today and self.today_closed)

    def scan(self) -> None:
        """Read the stream from its start and swap what is settled, day by day."""
        # The generation first: any deletion after this makes every swap of this scan
        # change nothing (so what the scan read is what is there when a swap lands).
        meta = meta_key(self.symbol, "compacted")
        if not self.dry_run:
            self._r.hsetnx(meta, "gen", 1)  # never 0 again: deleted keys read as 0
        self.gen = (self._r.hget(meta, "gen") or b"0").decode()
        # Every in-order entry of a settled span starts before ``bound``; a late one (its
        # id at a later watermark) is found through the late index, by its last trade.
        today = self.today
        start = self._owner._day_start(today + 1 if self.today_closed else today)
        bound_ms = max(self.cutoff, start) // NS_PER_MS
        late_by_day: dict[int, list[tuple[bytes, bytes]]] = {}
        late = late_key(self.symbol, "realtime")
        for member in self._r.zrangebyscore(late, "-inf", f"({bound_ms}"):
            eid, first_ms = split_member(member)
            day = trading_day(first_ms * NS_PER_MS, self._tz)
            late_by_day.setdefault(day, []).append((eid, member))

        def settle(day: int, entries: list[_Entry]) -> None:
            entries += self._late_entries(late_by_day.pop(day, []))
            ripe = [e for e in entries if self.closed(day) or e.header.ts_last < self.cutoff]
            self._day(day, ripe)

        current: list[_Entry] = []
        current_day: int | None = None
        cursor = "-"
        while not self.stopped():
            page = self._r.xrange(self.key, cursor, f"{bound_ms - 1}", count=_PAGE)
            for eid, fields in page:
                self.order.append(eid)
                if b"l" in fields:
                    continue  # late: found through the index
                header = codec.read_header(fields[b"b"])
                if current_day is not None and header.trading_day != current_day:
                    settle(current_day, current)
                    current = []
                current_day = header.trading_day
                current.append(_Entry(eid, None, fields[b"b"], header))
            if len(page) < _PAGE:
                break
            cursor = "(" + page[-1][0].decode()
        if current_day is not None and not self.stopped():
            settle(current_day, current)
        for day in sorted(late_by_day):
            if self.stopped():
                break
            settle(day, [])

    def _late_entries(self, wanted: list[tuple[bytes, bytes]]) -> list[_Entry]:
        if not wanted:
            return []
        pipe = self._r.pipeline(transaction=False)
        for eid, _ in wanted:
            pipe.xrange(self.key, eid, eid)
        out = []
        for (eid, member), found in zip(wanted, pipe.execute(), strict=True):
            for _, fields in found:  # gone: compacted or trimmed since (the swap will know)
                out.append(_Entry(eid, member, fields[b"b"], codec.read_header(fields[b"b"])))
        return out

    def _day(self, day: int, entries: list[_Entry]) -> None:
        """Swap the settled ``entries`` of one trading day, chunk by chunk."""
        if not entries:
            return
        headers = [e.header for e in entries]
        cols = codec.decode_blocks([e.block for e in entries], headers=headers)
        counts = np.array([h.n for h in headers], dtype=np.int64)
        ends = np.cumsum(counts)
        starts = ends - counts
        ts, tid = cols["ts_event"], cols["trade_id"]
        spans = [
            EntrySpan((int(ts[lo]), int(tid[lo])), (int(ts[hi - 1]), int(tid[hi - 1])), int(n))
            for lo, hi, n in zip(starts, ends, counts, strict=True)
        ]
        closed = self.closed(day)
        for chunk in plan_chunks(spans, self.settings.block_max_trades, SWAP_MAX_ENTRIES):
            if self.stopped():
                return
            if not chunk.full and not closed:
                continue  # the day's tail: a later run completes it
            for part in self._bounded(list(chunk.entries), entries):
                rows = np.concatenate([np.arange(starts[i], ends[i]) for i in part])
                picked = {name: cols[name][rows] for name in TRADE_FIELDS}
                order = merge_order(picked)
                batch = TradeBatch(**{name: picked[name][order] for name in TRADE_FIELDS})
                self._swap(day, [entries[i] for i in part], batch)

    def _bounded(self, chunk: list[int], entries: list[_Entry]) -> list[list[int]]:
        """``chunk`` as is when it takes the stream's start, else in parts of at most
        ``XDEL_MAX`` entries each (their blocks may then overlap: still correct)."""
        if self.dry_run:
            return [chunk]  # an estimate: nothing is removed, so no prefix moves
        prefix, _ = self._prefix({entries[i].eid for i in chunk})
        rest = len(chunk) - prefix
        if rest <= XDEL_MAX:
            return [chunk]
        return [chunk[i : i + XDEL_MAX] for i in range(0, len(chunk), XDEL_MAX)]

    def _prefix(self, ids: set[bytes]) -> tuple[int, int]:
        """(how many of ``ids`` are the stream's first entries, the index in ``order``
        just past them)."""
        k = self.head
        while k < len(self.order) and self.order[k] in ids:
            k += 1
        return k - self.head, k

    def _swap(self, day: int, entries: list[_Entry], batch: TradeBatch) -> None:
        """One swap (``compact_blocks.lua``); _Stale when the generation moved."""
        s = self.settings
        cuts = block_cuts(len(batch), s.block_max_trades)
        self.totals[3] += 1
        if self.dry_run:
            self.totals[0] += len(entries)
            self.totals[1] += len(batch)
            self.totals[2] += len(cuts)
            return
        ids = {e.eid for e in entries}
        n_prefix, k = self._prefix(ids)
        prefix = set(self.order[self.head : k])
        first = last = minid = b""
        if n_prefix:
            first, last = self.order[self.head], self.order[k - 1]
            ms, _, seq = last.partition(b"-")
            minid = b"%s-%d" % (ms, int(seq) + 1)
        rest = [e.eid for e in entries if e.eid not in prefix]
        members = [e.member for e in entries if e.member is not None]
        keys = [trades_key(self.symbol, "realtime"), meta_key(self.symbol, "realtime"),
                late_key(self.symbol, "realtime"), trades_key(self.symbol, "compacted"),
                meta_key(self.symbol, "compacted"), late_key(self.symbol, "compacted")]  # fmt: skip
        args: list[Any] = [self.gen, first, last, minid, len(rest), *rest, len(members), *members,
                           1, day, len(batch)]  # fmt: skip
        for lo, hi in cuts:
            b = batch.take(slice(lo, hi))
            args += [int(b.ts_event[0]) // NS_PER_MS, int(b.ts_event[-1]) // NS_PER_MS, len(b),
                     day, int(b.trade_id.max()),
                     codec.encode_block(b, day, compression=s.compression,
                                        level=s.compression_level)]  # fmt: skip
        reply = self._owner._swap(keys=keys, args=args)
        if int(reply[0]) != 1:
            raise _Stale
        self.gen = str(int(reply[1]))
        self.removed |= ids
        while self.head < len(self.order) and self.order[self.head] in self.removed:
            self.head += 1
        self.totals[0] += len(entries)
        self.totals[1] += len(batch)
        self.totals[2] += len(cuts)
