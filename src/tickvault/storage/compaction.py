"""Compaction: the small blocks of a settled span of a symbol's realtime stream rewritten
as full blocks in its ``compacted`` stream (docs/storage-format.md, "Compaction").

A realtime entry is *settled* when every trade in it is ``compact_after_minutes`` old
(event time) or its trading day's B3 session has closed. Per symbol and trading day the
settled entries are read, planned into swaps (``storage.compactplan``) and each swap is
one ``compact_blocks.lua`` call: it checks that every entry read is still there (else
it changes nothing: another compactor or a trim got there first), deletes them, and
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
from importlib import resources
from typing import Any

import numpy as np

from tickvault.config import Settings
from tickvault.errors import QueryError
from tickvault.records.trades import TRADE_FIELDS, TradeBatch
from tickvault.storage import codec
from tickvault.storage.compactplan import EntrySpan, block_cuts, merge_order, plan_chunks
from tickvault.storage.keys import StoredStream, late_key, meta_key, trades_key
from tickvault.storage.reads import split_member
from tickvault.timeutil import NS_PER_DAY, NS_PER_MS, local_to_utc_ns, trading_day
from tickvault.venue import b3

SWAP_MAX_ENTRIES = 16_384
"""Realtime entries removed by one swap: with at most ``block_max_trades`` records, bounds
how long one script call holds the server (about 10 ms for 16,384 one-trade entries)."""
_PAGE = 2000
"""Entries per XRANGE page of the scan."""


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
    """Swaps that changed nothing because an entry read was gone (another compactor or
    a trim got there first); a later run compacts what is left."""
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
        lua = resources.files("tickvault.storage").joinpath("compact_blocks.lua").read_text()
        self._swap = r.register_script(lua)

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
        today = trading_day(now_ns, self._tz)
        today_closed = now_ns >= self._close_of(symbol, today)
        # Every in-order entry of a settled span starts before this; a late one (id at
        # a later watermark) is found through the late index, by its last trade.
        bound = max(cutoff, self._day_start(today + 1 if today_closed else today))
        bound_ms = bound // NS_PER_MS

        def closed(day: int) -> bool:
            return day < today or (day == today and today_closed)

        rt, late = trades_key(symbol, "realtime"), late_key(symbol, "realtime")
        late_by_day: dict[int, list[tuple[bytes, bytes]]] = {}
        for member in self._r.zrangebyscore(late, "-inf", f"({bound_ms}"):
            eid, first_ms = split_member(member)
            day = trading_day(first_ms * NS_PER_MS, self._tz)
            late_by_day.setdefault(day, []).append((eid, member))
        totals = [0, 0, 0, 0, 0]  # entries, trades, blocks, swaps, lost

        def settle(day: int, entries: list[_Entry]) -> None:
            entries += self._late_entries(rt, late_by_day.pop(day, []))
            ripe = [e for e in entries if closed(day) or e.header.ts_last < cutoff]
            for i, v in enumerate(self._day(symbol, day, ripe, closed(day), dry_run, stop)):
                totals[i] += v

        current: list[_Entry] = []
        current_day: int | None = None
        cursor = "-"
        while not (stop is not None and stop()):
            page = self._r.xrange(rt, cursor, f"{bound_ms - 1}", count=_PAGE)
            for eid, fields in page:
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
        if current_day is not None:
            settle(current_day, current)
        for day in sorted(late_by_day):
            if stop is not None and stop():
                break
            settle(day, [])
        after = before if dry_run else self._footprint(symbol)
        return CompactItem(symbol, before[0], before[1], before[2], totals[0], totals[1],
                           totals[2], totals[3], totals[4], after[0], after[1],
                           after[2])  # fmt: skip

    def _late_entries(self, key: str, wanted: list[tuple[bytes, bytes]]) -> list[_Entry]:
        if not wanted:
            return []
        pipe = self._r.pipeline(transaction=False)
        for eid, _ in wanted:
            pipe.xrange(key, eid, eid)
        out = []
        for (eid, member), found in zip(wanted, pipe.execute(), strict=True):
            for _, fields in found:  # gone: trimmed or compacted since the index was read
                out.append(_Entry(eid, member, fields[b"b"], codec.read_header(fields[b"b"])))
        return out

    def _day(
        self,
        symbol: str,
        day: int,
        entries: list[_Entry],
        closed: bool,
        dry_run: bool,
        stop: Callable[[], bool] | None,
    ) -> tuple[int, int, int, int, int]:
        """Swap the settled ``entries`` of one trading day: (entries, trades, blocks,
        swaps, swaps lost)."""
        if not entries:
            return 0, 0, 0, 0, 0
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
        max_trades = self.settings.block_max_trades
        done = [0, 0, 0, 0, 0]
        for chunk in plan_chunks(spans, max_trades, SWAP_MAX_ENTRIES):
            if stop is not None and stop():
                break
            if not chunk.full and not closed:
                continue  # the day's tail: the next run completes it
            if len(chunk.entries) == 1 and headers[chunk.entries[0]].n >= max_trades:
                continue  # already a full block
            rows = np.concatenate([np.arange(starts[i], ends[i]) for i in chunk.entries])
            part = {name: cols[name][rows] for name in TRADE_FIELDS}
            order = merge_order(part)
            batch = TradeBatch(**{name: part[name][order] for name in TRADE_FIELDS})
            blocks = [batch.take(slice(lo, hi)) for lo, hi in block_cuts(len(batch), max_trades)]
            lost = 0
            if not dry_run:
                lost = 0 if self._apply(symbol, day, [entries[i] for i in chunk.entries],
                                        blocks) else 1  # fmt: skip
            if not lost:
                done[0] += len(chunk.entries)
                done[1] += chunk.trades
                done[2] += len(blocks)
            done[3] += 1
            done[4] += lost
        return done[0], done[1], done[2], done[3], done[4]

    def _apply(
        self, symbol: str, day: int, entries: list[_Entry], blocks: list[TradeBatch]
    ) -> bool:
        """One swap; False when an entry read was gone (nothing changed)."""
        s = self.settings
        keys = [trades_key(symbol, "realtime"), meta_key(symbol, "realtime"),
                late_key(symbol, "realtime"), trades_key(symbol, "compacted"),
                meta_key(symbol, "compacted"), late_key(symbol, "compacted")]  # fmt: skip
        members = [e.member for e in entries if e.member is not None]
        trades = sum(len(b) for b in blocks)
        args: list[Any] = [len(entries), *(e.eid for e in entries), len(members), *members,
                           1, day, trades]  # fmt: skip
        for b in blocks:
            args += [int(b.ts_event[0]) // NS_PER_MS, int(b.ts_event[-1]) // NS_PER_MS, len(b),
                     day, int(b.trade_id.max()),
                     codec.encode_block(b, day, compression=s.compression,
                                        level=s.compression_level)]  # fmt: skip
        reply = self._swap(keys=keys, args=args)
        return int(reply[0]) == 1

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
