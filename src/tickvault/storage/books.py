"""Offer books in Valkey: updates plus periodic snapshots, and the book at any past time.

``book:{SYM}`` holds the updates as they arrived, each entry a run of
``records.book.BOOK_DTYPE`` records (field ``r`` raw, or ``z`` lz4-compressed when
large), with an id from the event time of its first record.
``book:{SYM}:snapshots`` holds, every ``book_snapshot_every`` updates, the whole
book (``SNAPSHOT_DTYPE`` records, lz4) with ``u``, the id of the last update entry
it includes, and ``t``, the event time of that update.

The book at time t is the latest snapshot taken at or before t, plus the
updates after it up to t: at most ``book_snapshot_every`` updates are replayed,
however long the day.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

import lz4.block
import numpy as np
import numpy.typing as npt
import valkey

from tickvault.errors import FormatError
from tickvault.records.book import ASK, BID, BOOK_DTYPE, SNAPSHOT_DTYPE, BookState, BookView
from tickvault.records.validate import validate_book
from tickvault.storage.keys import (
    book_key,
    book_snapshots_key,
    cursor_key,
    cursor_script_args,
)
from tickvault.timeutil import NS_PER_MS

log = logging.getLogger(__name__)

_COMPRESS_FROM = 512
"""Entries of at least this many bytes are stored lz4-compressed."""
_MAX_RECORDS_PER_ENTRY = 4096
_READ_PAGE = 512
_COUNT_PAGE = 10_000


def _pack(records: npt.NDArray[np.void]) -> tuple[str, bytes]:
    raw = np.ascontiguousarray(records, dtype=BOOK_DTYPE).tobytes()
    if len(raw) < _COMPRESS_FROM:
        return "r", raw
    return "z", lz4.block.compress(raw, store_size=True)


def _unpack(fields: Mapping[bytes, bytes], dtype: np.dtype[Any]) -> npt.NDArray[np.void]:
    try:
        raw = fields[b"r"] if b"r" in fields else lz4.block.decompress(fields[b"z"])
        return np.frombuffer(raw, dtype=dtype)
    except (KeyError, ValueError, lz4.block.LZ4BlockError) as exc:
        raise FormatError(f"a stored book entry is corrupt: {exc}") from exc


@dataclass(frozen=True, slots=True)
class BookTrim:
    """What a book trim removed (or would remove)."""

    entries: int
    """Update entries and snapshots."""
    first_ns: int | None
    last_ns: int | None
    """Event-time span of the updates that go."""


@dataclass(frozen=True, slots=True)
class BookStats:
    symbol: str
    entries: int
    """Update entries (each a run of updates)."""
    snapshots: int
    memory_bytes: int


class BookStore:
    """Writes and reads offer books. One per Vault; the writer side keeps each symbol's
    current book in memory to take snapshots."""

    def __init__(self, client: Any, snapshot_every: int):
        self._r = client
        self.snapshot_every = snapshot_every
        lua = resources.files("tickvault.storage").joinpath("append_book.lua").read_text()
        self._append = client.register_script(lua)
        count = resources.files("tickvault.storage").joinpath("count_entries.lua").read_text()
        self._count_entries = client.register_script(count)
        self._live: dict[str, tuple[BookState, int]] = {}
        """symbol -> (current book, updates since its last snapshot)"""
        self.lock = threading.Lock()
        """Held while an append and its in-memory book update run."""

    # ------------------------------------------------------------------ writes
    def append(
        self,
        symbol: str,
        records: npt.NDArray[np.void],
        cursors: Mapping[str, int] | None = None,
    ) -> int:
        """Store updates (in feed order) and move ``cursors`` in the same atomic step;
        take a snapshot when ``snapshot_every`` updates have passed since the last."""
        keys, args = self.plan(symbol, records, cursors)
        with self.lock:
            self.prepare(symbol)
            ids = self._append(keys=keys, args=args)
            self.applied(symbol, records, ids)
        return len(records)

    def queue(
        self,
        symbol: str,
        records: npt.NDArray[np.void],
        cursors: Mapping[str, int] | None,
        pipe: Any,
    ) -> None:
        """Queue the append of ``records`` on ``pipe`` (a pipeline of a write cycle):
        checked, planned, and ``symbol``'s book loaded. Once the pipeline has run, call
        ``applied`` with this call's reply while holding ``lock``."""
        keys, args = self.plan(symbol, records, cursors)
        self.prepare(symbol)
        self.call(keys, args, pipe)

    def plan(
        self, symbol: str, records: npt.NDArray[np.void], cursors: Mapping[str, int] | None
    ) -> tuple[list[str], list[Any]]:
        """The keys and arguments of the append script call for ``records`` (checked)."""
        validate_book(records)
        args = cursor_script_args(cursors)
        for lo in range(0, len(records), _MAX_RECORDS_PER_ENTRY):
            part = records[lo : lo + _MAX_RECORDS_PER_ENTRY]
            field, payload = _pack(part)
            args += [int(part["ts_event"][0]) // NS_PER_MS, field, payload]
        return [book_key(symbol), cursor_key(symbol)], args

    def call(self, keys: list[str], args: list[Any], client: Any) -> Any:
        """Queue the append script on ``client`` (a pipeline)."""
        return self._append(keys=keys, args=args, client=client)

    def prepare(self, symbol: str) -> None:
        """Load ``symbol``'s current book (once per process) before its next append."""
        if symbol not in self._live:
            self._live[symbol] = (self._load_latest(symbol), 0)

    def applied(self, symbol: str, records: npt.NDArray[np.void], ids: list[Any]) -> None:
        """Bring the in-memory book up to date after an append; snapshot when due."""
        state, since = self._live[symbol]
        state.apply(records)
        since += len(records)
        if since >= self.snapshot_every and ids:
            try:
                self._snapshot(symbol, state, ids[-1])
                since = 0
            except valkey.ValkeyError as exc:  # the updates are in; snapshot next time
                log.warning("book: snapshot of %s failed, will retry: %s", symbol, exc)
        self._live[symbol] = (state, since)

    def _snapshot(self, symbol: str, state: BookState, last_id: bytes | str) -> None:
        raw = state.to_snapshot().tobytes()
        ms = state.ts_event // NS_PER_MS
        key = book_snapshots_key(symbol)
        top = self._r.xrevrange(key, "+", "-", count=1)
        if top:
            ms = max(ms, int(top[0][0].split(b"-")[0]))
        self._r.xadd(
            key,
            {"z": lz4.block.compress(raw, store_size=True), "u": last_id, "t": state.ts_event},
            id=f"{ms}-*",
        )

    def _load_latest(self, symbol: str) -> BookState:
        state, _ = self._rebuild(symbol, None)
        return state

    def trim(self, symbol: str, cutoff_ns: int, *, dry_run: bool = False) -> BookTrim:
        """Drop what only serves times before ``cutoff_ns``: the snapshots before the last
        one taken at or before it, and the updates that snapshot already includes. The
        book at any time from that snapshot on is unchanged. ``dry_run``: count what
        would go, remove nothing."""
        snap_key, key = book_snapshots_key(symbol), book_key(symbol)
        base = self._r.xrevrange(snap_key, str(cutoff_ns // NS_PER_MS), "-", count=1)
        if not base:
            return BookTrim(0, None, None)
        snap_id, fields = base[0]
        last_update = fields[b"u"]
        first = self._r.xrange(key, "-", last_update, count=1)
        if dry_run:
            removed = self._count(key, "-", last_update)
            removed += self._count(snap_key, "-", b"(" + snap_id)
        else:
            ms, seq = (int(x) for x in last_update.split(b"-"))
            removed = int(self._r.xtrim(key, minid=f"{ms}-{seq + 1}", approximate=False))
            removed += int(self._r.xtrim(snap_key, minid=snap_id, approximate=False))
        if not removed:
            return BookTrim(0, None, None)
        first_ns = int(_unpack(first[0][1], BOOK_DTYPE)["ts_event"][0]) if first else None
        return BookTrim(removed, first_ns, int(fields[b"t"]))

    def _count(self, key: str, start: str | bytes, end: str | bytes) -> int:
        """Entries of stream ``key`` between XRANGE bounds ``start`` and ``end``, counted
        by the server a page at a time."""
        total, cursor = 0, start
        while True:
            n, last = self._count_entries(keys=[key], args=[cursor, end, _COUNT_PAGE])
            total += int(n)
            if int(n) < _COUNT_PAGE:
                return total
            cursor = b"(" + (last if isinstance(last, bytes) else str(last).encode())

    def last_id(self, symbol: str) -> bytes | None:
        """The id of ``symbol``'s latest stored book entry (None: no book): it changes
        with every stored update, so a reader can tell the book moved without rebuilding
        it."""
        top = self._r.xrevrange(book_key(symbol), "+", "-", count=1)
        return bytes(top[0][0]) if top else None

    def stats(self, symbol: str) -> BookStats:
        """Entries, snapshots and memory of ``symbol``'s stored book."""
        pipe = self._r.pipeline(transaction=False)
        for key in (book_key(symbol), book_snapshots_key(symbol)):
            pipe.xlen(key)
            pipe.memory_usage(key, samples=0)
        entries, entries_mem, snaps, snaps_mem = pipe.execute()
        return BookStats(symbol, int(entries), int(snaps), int(entries_mem or 0) +
                         int(snaps_mem or 0))  # fmt: skip

    # ------------------------------------------------------------------ reads
    def _rebuild(
        self, symbol: str, at_ns: int | None, *, use_snapshots: bool = True
    ) -> tuple[BookState, int]:
        """The book at ``at_ns`` (None: after the last update), and updates replayed.
        Without snapshots every update from the first is replayed (the benchmark's
        baseline)."""
        snap_key, key = book_snapshots_key(symbol), book_key(symbol)
        top = "+" if at_ns is None else str(at_ns // NS_PER_MS)
        state, after = BookState(), "-"
        snapshots = self._r.xrevrange(snap_key, top, "-", count=4) if use_snapshots else []
        for _id, fields in snapshots:
            t = int(fields[b"t"])
            if at_ns is None or t <= at_ns:
                state = BookState.from_snapshot(_unpack(fields, SNAPSHOT_DTYPE), t)
                after = "(" + fields[b"u"].decode()
                break
        replayed = 0
        end = "+" if at_ns is None else str(at_ns // NS_PER_MS + 1)
        while True:
            page = self._r.xrange(key, after, end, count=_READ_PAGE)
            for _entry_id, fields in page:
                records = _unpack(fields, BOOK_DTYPE)
                if at_ns is not None:
                    records = records[records["ts_event"] <= at_ns]
                state.apply(records)
                replayed += len(records)
            if len(page) < _READ_PAGE:
                return state, replayed
            after = "(" + page[-1][0].decode()

    def state_at(self, symbol: str, at_ns: int) -> BookState:
        """The book state after every update with ts_event <= at_ns (the latest snapshot
        before it, then the updates after that snapshot)."""
        return self._rebuild(symbol, at_ns)[0]

    def at(
        self, symbol: str, at_ns: int, depth: int | None, *, use_snapshots: bool = True
    ) -> BookView:
        state, replayed = self._rebuild(symbol, at_ns, use_snapshots=use_snapshots)
        return BookView(
            symbol=symbol,
            at=at_ns,
            bids=state.side_frame(BID, depth),
            asks=state.side_frame(ASK, depth),
            last_update=state.ts_event,
            updates_applied=replayed,
        )

    def updates(self, symbol: str, start_ns: int, end_ns: int) -> npt.NDArray[np.void]:
        """Every stored update with start_ns <= ts_event < end_ns, in feed order."""
        parts = []
        after = str(start_ns // NS_PER_MS)
        while True:
            page = self._r.xrange(book_key(symbol), after, str(end_ns // NS_PER_MS),
                                  count=_READ_PAGE)  # fmt: skip
            parts += [_unpack(fields, BOOK_DTYPE) for _, fields in page]
            if len(page) < _READ_PAGE:
                break
            after = "(" + page[-1][0].decode()
        if not parts:
            return np.zeros(0, dtype=BOOK_DTYPE)
        out = np.concatenate(parts)
        return out[(out["ts_event"] >= start_ns) & (out["ts_event"] < end_ns)]
