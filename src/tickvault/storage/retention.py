"""Retention: drop trades older than ``retention_days`` and blocks beyond
``stream_maxlen``, never a block with a trade still inside the window; offer books
keep what rebuilds them from the cutoff on (``BookStore.trim``). Imported files some
of whose trades go are released from the imports registry.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from tickvault.config import Settings
from tickvault.storage import codec, imports
from tickvault.storage.books import BookStore
from tickvault.storage.keys import (
    STORED_STREAMS,
    StoredStream,
    late_key,
    meta_key,
    trades_key,
)
from tickvault.storage.reads import TradeReads, split_member
from tickvault.timeutil import NS_PER_MS


@dataclasses.dataclass(frozen=True, slots=True)
class TrimItem:
    """What a trim removes (or, in a dry run, would remove) from one stream of a symbol."""

    symbol: str
    stream: StoredStream | Literal["book"]
    blocks: int
    """Stream entries: trade blocks, or for the book its update entries and snapshots."""
    trades: int
    """Trade records (repeats and corrections included); 0 for the book."""
    first_ns: int | None
    last_ns: int | None
    """Event-time span of what goes."""


@dataclasses.dataclass(frozen=True, slots=True)
class TrimReport:
    """The outcome (or, with ``dry_run``, the plan) of ``Vault.trim``."""

    cutoff_ns: int
    """Trades with event times before this are past the retention window."""
    dry_run: bool = False
    items: tuple[TrimItem, ...] = ()
    """One per symbol and stream with something to remove."""
    imports_released: tuple[str, ...] = ()
    """Imported files some of whose trades go: the registry forgets them, so they can be
    imported again."""
    symbols: tuple[str, ...] = ()
    """The symbols looked at."""

    @property
    def blocks_removed(self) -> int:
        return sum(i.blocks for i in self.items if i.stream != "book")

    @property
    def trades_removed(self) -> int:
        return sum(i.trades for i in self.items)

    @property
    def book_entries_removed(self) -> int:
        return sum(i.blocks for i in self.items if i.stream == "book")


@dataclasses.dataclass(frozen=True, slots=True)
class _TrimPlan:
    item: TrimItem
    entry_ids: list[bytes]
    prefix_end: bytes | None
    """Last entry of the prefix that goes with XTRIM MINID (the rest: XDEL)."""
    per_day: dict[int, int] = dataclasses.field(default_factory=dict)
    """Records that go per trading day: the meta hash's ``n:<day>`` counters go down
    with them (so a session aggregate built from them is seen as stale)."""


def trim(
    r: Any,
    settings: Settings,
    reads: TradeReads,
    books: BookStore,
    symbols: list[str],
    cutoff_ns: int,
    *,
    dry_run: bool,
) -> TrimReport:
    """Remove (or, ``dry_run``, plan) what retention drops from ``symbols``."""
    items: list[TrimItem] = []
    released: dict[str, str] = {}
    for sym in symbols:
        for stream in STORED_STREAMS:
            plan = _plan_trim(r, settings, reads, sym, stream, cutoff_ns)
            if plan is None:
                continue
            items.append(plan.item)
            if stream == "historical" and plan.item.first_ns is not None:
                assert plan.item.last_ns is not None
                touched = imports.touched_by(r, sym, plan.item.first_ns, plan.item.last_ns)
                released.update(touched)
            if not dry_run:
                _apply_trim(r, plan)
        book = books.trim(sym, cutoff_ns, dry_run=dry_run)
        if book.entries:
            items.append(TrimItem(sym, "book", book.entries, 0, book.first_ns, book.last_ns))
    if not dry_run:
        imports.release(r, list(released))
    return TrimReport(
        cutoff_ns=cutoff_ns,
        dry_run=dry_run,
        items=tuple(items),
        imports_released=tuple(sorted(set(released.values()))),
        symbols=tuple(symbols),
    )


def _plan_trim(
    r: Any, settings: Settings, reads: TradeReads, symbol: str, stream: StoredStream, cutoff_ns: int
) -> _TrimPlan | None:
    """The blocks of one stream that retention removes (None: nothing)."""
    key, late = trades_key(symbol, stream), late_key(symbol, stream)
    cutoff_ms = cutoff_ns // NS_PER_MS
    removed: dict[bytes, bytes] = {}
    # Late blocks, anywhere in the stream, whose last trade is before the cutoff.
    for member in r.zrangebyscore(late, "-inf", f"({cutoff_ms}"):
        eid = split_member(member)[0]
        removed.update((e, f[b"b"]) for e, f in r.xrange(key, eid, eid))
    # A prefix of the stream, removed with XTRIM MINID. By time: every in-order entry
    # before the last in-order block that starts before the cutoff holds only older
    # trades; a late entry there may not (it starts before the watermark of its write
    # but can end after the cutoff): such an entry stays, and the prefix ends before
    # it (older entries after it go one by one, with XDEL).
    prefix_end: bytes | None = None
    keep = reads.in_order_entry_before(key, f"({cutoff_ms}-0")
    if keep is not None:
        eid, block = keep
        entries = [(e, f[b"b"]) for e, f in r.xrange(key, "-", b"(" + eid)]
        entries.append((eid, block))
        contiguous = True
        for e, b in entries:
            if codec.read_header(b).ts_last < cutoff_ns:
                removed[e] = b
                if contiguous:
                    prefix_end = e
            else:
                contiguous = False
    # By size: the oldest blocks beyond stream_maxlen extend the prefix.
    excess = r.xlen(key) - len(removed) - settings.stream_maxlen
    while excess > 0:
        cursor = "-" if prefix_end is None else b"(" + prefix_end
        page = r.xrange(key, cursor, "+", count=max(excess, 100))
        if not page:
            break
        for eid, fields in page:
            if excess == 0:
                break
            prefix_end = eid
            if eid not in removed:
                removed[eid] = fields[b"b"]
                excess -= 1
    if not removed:
        return None
    headers = [codec.read_header(b) for b in removed.values()]
    item = TrimItem(
        symbol,
        stream,
        blocks=len(removed),
        trades=sum(h.n for h in headers),
        first_ns=min(h.ts_first for h in headers),
        last_ns=max(h.ts_last for h in headers),
    )
    per_day: dict[int, int] = {}
    for h in headers:
        per_day[h.trading_day] = per_day.get(h.trading_day, 0) + h.n
    return _TrimPlan(item, list(removed), prefix_end, per_day)


def _apply_trim(r: Any, plan: _TrimPlan) -> None:
    symbol, stream = plan.item.symbol, plan.item.stream
    assert stream != "book"
    key, late = trades_key(symbol, stream), late_key(symbol, stream)
    removed = set(plan.entry_ids)
    end = _parse_id(plan.prefix_end) if plan.prefix_end is not None else (-1, -1)
    stray = [e for e in plan.entry_ids if _parse_id(e) > end]
    late_members = [m for m in r.zrange(late, 0, -1) if split_member(m)[0] in removed]
    pipe = r.pipeline(transaction=True)
    if plan.prefix_end is not None:
        pipe.xtrim(key, minid=f"{end[0]}-{end[1] + 1}", approximate=False)
    for i in range(0, len(stray), 1000):
        pipe.xdel(key, *stray[i : i + 1000])
    for i in range(0, len(late_members), 1000):
        pipe.zrem(late, *late_members[i : i + 1000])
    pipe.hincrby(meta_key(symbol, stream), "trades", -plan.item.trades)
    for day, n in plan.per_day.items():
        pipe.hincrby(meta_key(symbol, stream), f"n:{day}", -n)
    pipe.hincrby(meta_key(symbol, stream), "trims", 1)
    # Deletions move the generation a compactor reads before it plans (and readers
    # whose read takes two round trips): its swaps then change nothing and it reads again.
    pipe.hincrby(meta_key(symbol, "compacted"), "gen", 1)
    pipe.execute()


def _parse_id(entry_id: bytes) -> tuple[int, int]:
    ms, _, seq = entry_id.partition(b"-")
    return int(ms), int(seq)
