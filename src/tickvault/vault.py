"""``Vault``: the public, time-travelling API of the tick store.

Writes validate a batch, cut it into blocks and append them with one server
script call per group of blocks. Reads fetch the blocks that can hold trades of the
range (by entry id, the block before it, and the late-block index), decode
them, and resolve duplicates and corrections as of the knowledge time.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import operator
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from importlib import resources
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import orjson
import pandas as pd
import valkey

from tickvault.config import Settings, load_settings
from tickvault.errors import QueryError, ValidationError
from tickvault.records.book import BookView
from tickvault.records.trades import TRADE_DTYPE, TRADE_FIELDS, TradeBatch, TradeFlag
from tickvault.records.validate import check_symbol, to_batch
from tickvault.storage import codec, identity, imports
from tickvault.storage.blocks import PlannedBlock, plan_blocks
from tickvault.storage.books import BookStore
from tickvault.storage.connection import (
    Connection,
    connect,
    other_tickvault_clients,
    translate,
)
from tickvault.storage.keys import (
    QUARANTINE_KEY,
    STREAMS,
    StoreKind,
    StreamKind,
    cursor_key,
    cursor_script_args,
    gaps_key,
    late_key,
    meta_key,
    parse_trades_key,
    trades_key,
)
from tickvault.storage.resolve import Columns, Decoded, resolve
from tickvault.storage.server import kept_running, stop_server
from tickvault.timeutil import (
    NS_PER_DAY,
    NS_PER_MS,
    TimeLike,
    format_ns,
    local_to_utc_ns,
    now_ns,
    to_ns,
    trading_days,
)

if TYPE_CHECKING:
    import pyarrow as pa

_BLOCKS_PER_SCRIPT = 64
"""Blocks appended per script call: bounds how long one call holds the server."""
_FAR_FUTURE_NS = 2**62
_UTC_NS = pd.DatetimeTZDtype("ns", "UTC")


@dataclasses.dataclass(frozen=True, slots=True)
class StreamStats:
    symbol: str
    stream: StreamKind
    trades: int
    """Records stored (repeats and corrections included)."""
    blocks: int
    memory_bytes: int
    first_ns: int | None
    last_ns: int | None

    @property
    def bytes_per_trade(self) -> float:
        return self.memory_bytes / self.trades if self.trades else math.nan


@dataclasses.dataclass(frozen=True, slots=True)
class GapMarker:
    """A span of one symbol's data known to be incomplete (messages lost in transport)."""

    symbol: str
    stream: str
    start_ns: int
    end_ns: int
    publisher: str
    topic: str
    seq_first: int
    seq_last: int
    reason: str


@dataclasses.dataclass(frozen=True, slots=True)
class TrimItem:
    """What a trim removes (or, in a dry run, would remove) from one stream of a symbol."""

    symbol: str
    stream: StoreKind
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


def _entry_ms(entry_id: bytes | str) -> int:
    raw = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(raw.split("-", 1)[0])


class Vault:
    """The tick store. Open with ``Vault.open()``; close with ``close()`` or ``with``."""

    def __init__(self, conn: Connection, settings: Settings):
        self._conn = conn
        # valkey-py annotates replies as "Awaitable | Any" (sync and async share stubs),
        # which says nothing; the client is typed Any here and replies are checked by use.
        self._r: Any = conn.client
        self.settings = settings
        self._tz = settings.tz
        lua = resources.files("tickvault.storage").joinpath("append_blocks.lua").read_text()
        self._append = self._r.register_script(lua)
        self._closed = False
        self._books: BookStore | None = None

    # ------------------------------------------------------------------ lifecycle
    @classmethod
    def open(
        cls, url: str | None = None, *, settings: Settings | None = None, **overrides: Any
    ) -> Vault:
        """Open the store at ``url``, the configured URL, or the embedded server.

        ``overrides`` are settings (for example ``data_dir=...``) applied on top
        of the config file and environment.
        """
        if settings is None:
            settings = load_settings(**overrides)
        elif overrides:
            settings = Settings(**{**settings.model_dump(), **overrides})
        return cls(connect(settings, url), settings)

    def close(self) -> None:
        """Close the connection; stop the embedded server if this process started it and
        no other tickvault process is connected to it."""
        if self._closed:
            return
        self._closed = True
        conn = self._conn
        try:
            if (
                conn.started_here
                and conn.embedded is not None
                and not kept_running(self.settings.data_dir)
            ):
                others = 0
                with contextlib.suppress(valkey.ValkeyError):
                    others = other_tickvault_clients(self._r)
                if others == 0:
                    self._r.close()
                    stop_server(self.settings.data_dir)
                    return
        finally:
            self._r.close()

    def with_settings(self, **changes: Any) -> Vault:
        """A view of this store with other settings (block size, codec, retention...),
        sharing the connection; closing it never stops the server."""
        settings = Settings(**{**self.settings.model_dump(), **changes})
        conn = dataclasses.replace(self._conn, started_here=False)
        return Vault(conn, settings)

    def __enter__(self) -> Vault:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def url(self) -> str:
        return self._conn.url

    @property
    def embedded(self) -> bool:
        return self._conn.embedded is not None

    @property
    def client(self) -> Any:
        """The underlying valkey-py client (for tools and tests)."""
        return self._r

    # ------------------------------------------------------------------ writes
    @translate
    def write_trades(self, symbol: str, trades: Any, *, stream: StreamKind = "realtime") -> int:
        """Store ``trades`` for ``symbol``; returns how many records were written.

        ``trades``: a numpy structured array (``tickvault.TRADE_DTYPE`` fields), a
        DataFrame with those columns (``ts_event`` may be the index), or an
        iterable of ``Trade``/dict. ``ts_recv`` defaults to now. Writes to the
        ``historical`` stream get ``TradeFlag.HISTORY``. The whole batch is
        validated before anything is written.
        """
        symbol = check_symbol(symbol)
        if stream not in STREAMS:
            raise QueryError(f"stream must be one of {STREAMS}, got {stream!r}")
        extra = int(TradeFlag.HISTORY) if stream == "historical" else 0
        batch = to_batch(trades, default_ts_recv=now_ns(), tz=self._tz, extra_flags=extra)
        return self._append_batch(symbol, stream, batch)

    @translate
    def store_batch(
        self,
        symbol: str,
        batch: TradeBatch,
        *,
        stream: StreamKind = "realtime",
        cursors: Mapping[str, int] | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Store a checked ``TradeBatch`` as is (no defaults or flags added) and move
        ``cursors`` in the same atomic step. For imports; users call ``write_trades``,
        the bridge ``store_cycle``. ``progress`` is called with the number of records
        stored so far, after each group of blocks is stored."""
        return self._append_batch(check_symbol(symbol), stream, batch, cursors, progress)

    def _append_batch(
        self,
        symbol: str,
        stream: StreamKind,
        batch: TradeBatch,
        cursors: Mapping[str, int] | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Append ``batch``; ``cursors`` (bridge position per publisher:topic) move in the
        same atomic script call as the last group of blocks."""
        keys = _append_keys(symbol, stream)
        cursor_args = cursor_script_args(cursors)
        if len(batch) == 0:
            if cursors:
                self._append(keys=keys, args=cursor_args)
            return 0
        self._check_identities(symbol, batch)
        encode = self._encode
        stored = 0

        def append(group: list[PlannedBlock], blocks: list[bytes], last: bool) -> None:
            nonlocal stored
            self._append(keys=keys, args=_group_args(group, blocks, cursor_args, last))
            if progress is not None:
                stored += sum(len(p.trades) for p in group)
                progress(stored)

        # Groups are sent in order, one in flight, by a sender thread: the server
        # appends one group while this thread encodes the next, and memory stays
        # bounded by two groups however large the batch.
        groups = self._block_groups(batch)
        # A one-group write (a live batch) starts no thread at all.
        encoders = ThreadPoolExecutor(self.settings.threads) if self.settings.threads > 1 else None
        sender = ThreadPoolExecutor(1) if len(groups) > 1 else None
        in_flight: Future[None] | None = None
        try:
            for i, group in enumerate(groups):
                last = i == len(groups) - 1
                blocks = list(encoders.map(encode, group)) if encoders else list(map(encode, group))
                if in_flight is not None:
                    in_flight.result()
                if sender is None:
                    append(group, blocks, last)
                else:
                    in_flight = sender.submit(append, group, blocks, last)
            if in_flight is not None:
                in_flight.result()
        finally:
            for pool in (encoders, sender):
                if pool is not None:
                    pool.shutdown()
        return len(batch)

    def _check_identities(self, symbol: str, batch: TradeBatch) -> None:
        """Refuse a batch that gives a trade id of a day another event time than the
        batch itself or the store does (``storage.identity``); nothing is written then."""
        days = trading_days(batch.ts_event, self._tz)
        conflict = identity.within_batch(days, batch.trade_id, batch.ts_event)
        where = "in this batch"
        if conflict is None:
            lo = int(days.min())
            wanted = (np.flatnonzero(np.bincount(days - lo)) + lo).tolist()  # no sort
            fields = [f"tid:{d}" for d in wanted]
            pipe = self._r.pipeline(transaction=False)
            for stream in STREAMS:
                pipe.exists(trades_key(symbol, stream))
                pipe.hmget(meta_key(symbol, stream), fields)
            replies = pipe.execute()
            stored_max: dict[int, int | None] = dict.fromkeys(wanted, -1)
            for exists, values in zip(replies[::2], replies[1::2], strict=True):
                if not exists:
                    continue
                for day, raw in zip(wanted, values, strict=True):
                    old = stored_max[day]
                    stored_max[day] = None if raw is None or old is None else max(old, int(raw))
            for day in identity.days_to_check(days, batch.trade_id, stored_max):
                rows = days == day
                stored = self._stored_identities(symbol, day)
                conflict = identity.against_stored(day, batch.trade_id[rows],
                                                   batch.ts_event[rows], *stored)  # fmt: skip
                if conflict is not None:
                    where = "in the store"
                    break
        if conflict is not None:
            date = pd.Timestamp(conflict.day * NS_PER_DAY).date()
            raise ValidationError(
                f"{symbol} trade_id {conflict.trade_id} of {date} is {where} at "
                f"{format_ns(conflict.ts_first, self._tz)} and given again at "
                f"{format_ns(conflict.ts_second, self._tz)} ({self._tz.key}): a trade keeps "
                "its event time. Write corrections (flags=EDIT) and cancels (flags=CANCEL) "
                "with the trade's own ts_event, or give a new trade its own trade_id; "
                "nothing was written",
                field="ts_event",
            )

    def _stored_identities(
        self, symbol: str, day: int
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """(trade_id, ts_event) of every record stored for ``symbol`` on ``day``."""
        bounds = local_to_utc_ns(np.array([day, day + 1], dtype=np.int64) * NS_PER_DAY, self._tz)
        decoded = self._decoded(symbol, int(bounds[0]), int(bounds[1]), STREAMS)
        rows = np.repeat(decoded.days, decoded.counts) == day
        return decoded.columns["trade_id"][rows], decoded.columns["ts_event"][rows]

    @translate
    def store_cycle(self, items: Sequence[StoreItem]) -> None:
        """Store several checked batches (trades of a stream, or book updates) with their
        cursors in one round trip: the bridge's write cycle. Each script call is atomic
        on its own; a failed cycle may be retried whole (repeated trades are resolved
        at read time, and a repeated book call is recognised by its cursor)."""
        pipe = self._r.pipeline(transaction=False)
        books: list[tuple[int, StoreItem]] = []
        calls = 0
        for item in items:
            if item.stream == "book":
                keys, args = self.books.plan(item.symbol, item.records, item.cursors)
                self.books.prepare(item.symbol)
                self.books.call(keys, args, pipe)
                books.append((calls, item))
                calls += 1
                continue
            batch = TradeBatch.from_structured(item.records)
            for keys, args in self._plan_calls(item.symbol, item.stream, batch, item.cursors):
                self._append(keys=keys, args=args, client=pipe)
                calls += 1
        if not books:
            pipe.execute()
            return
        with self.books.lock:
            replies = pipe.execute()
            for index, item in books:
                self.books.applied(item.symbol, item.records, replies[index])

    def _plan_calls(
        self, symbol: str, stream: StreamKind, batch: TradeBatch, cursors: Mapping[str, int]
    ) -> list[tuple[list[str], list[Any]]]:
        """The append script calls for ``batch`` (encoded here), cursors on the last."""
        keys = _append_keys(symbol, stream)
        cursor_args = cursor_script_args(cursors)
        if len(batch) == 0:
            return [(keys, cursor_args)] if cursors else []
        groups = self._block_groups(batch)
        return [
            (keys, _group_args(group, [self._encode(p) for p in group], cursor_args,
                               i == len(groups) - 1))
            for i, group in enumerate(groups)
        ]  # fmt: skip

    def _block_groups(self, batch: TradeBatch) -> list[list[PlannedBlock]]:
        """``batch`` cut into blocks, and the blocks into groups of one script call each."""
        planned = plan_blocks(batch, self._tz, self.settings.block_max_trades)
        return [
            planned[i : i + _BLOCKS_PER_SCRIPT] for i in range(0, len(planned), _BLOCKS_PER_SCRIPT)
        ]

    def _encode(self, p: PlannedBlock) -> bytes:
        s = self.settings
        return codec.encode_block(
            p.trades, p.trading_day, compression=s.compression, level=s.compression_level
        )

    # ------------------------------------------------------------------ offer book
    @property
    def books(self) -> BookStore:
        """The offer-book store (updates and snapshots) of this Vault."""
        if self._books is None:
            self._books = BookStore(self._r, self.settings.book_snapshot_every)
        return self._books

    @translate
    def write_book(
        self,
        symbol: str,
        updates: npt.NDArray[np.void],
        *,
        cursors: Mapping[str, int] | None = None,
    ) -> int:
        """Store offer-book updates (``wire.BOOK_DTYPE`` records, in feed order)."""
        return self.books.append(check_symbol(symbol), updates, cursors)

    @translate
    def book(self, symbol: str, at: TimeLike | None = None, *, depth: int | None = 10) -> BookView:
        """The offer book of ``symbol`` as it stood at ``at`` (default: now): the best
        ``depth`` offers per side (None: all) with price, qty, agent, offer_id and the
        time each offer last changed. ``BookView.levels()`` aggregates by price."""
        at_ns = now_ns() if at is None else to_ns(at, self._tz, name="at")
        if depth is not None and depth < 1:
            raise QueryError(f"depth must be at least 1 (or None for the whole book), got {depth}")
        return self.books.at(check_symbol(symbol), at_ns, depth)

    @translate
    def book_updates(self, symbol: str, start: TimeLike, end: TimeLike) -> npt.NDArray[np.void]:
        """The stored offer-book updates with start <= ts_event < end, in feed order."""
        start_ns, end_ns = to_ns(start, self._tz, name="start"), to_ns(end, self._tz, name="end")
        return self.books.updates(check_symbol(symbol), start_ns, end_ns)

    # ------------------------------------------------------------------ reads
    def _fetch(
        self, symbol: str, streams: Sequence[StreamKind], start_ns: int, end_ns: int
    ) -> list[bytes]:
        """Blocks that may hold trades in [start_ns, end_ns): one round trip in the usual
        case (the entries in range, the block before them, the late index, per stream)."""
        start_ms, last_ms = start_ns // NS_PER_MS, (end_ns - 1) // NS_PER_MS
        pipe = self._r.pipeline(transaction=False)
        for stream in streams:
            key = trades_key(symbol, stream)
            pipe.xrange(key, f"{start_ms}-0", f"{last_ms}")
            pipe.zrangebyscore(late_key(symbol, stream), start_ms, "+inf")
            pipe.xrevrange(key, f"({start_ms}-0" if start_ms > 0 else "0-0", "-", count=1)
        replies = pipe.execute()
        found: dict[tuple[str, bytes], bytes] = {}
        wanted: list[tuple[str, bytes]] = []
        for i, stream in enumerate(streams):
            key = trades_key(symbol, stream)
            main, late_members, before = replies[3 * i : 3 * i + 3]
            found.update(((key, eid), fields[b"b"]) for eid, fields in main)
            # The in-order block just before start may run into the range; a late
            # entry there does not count, so step back over it (rare).
            if before and b"l" in before[0][1]:
                step = self._in_order_entry_before(key, b"(" + before[0][0])
                before = [(step[0], {b"b": step[1]})] if step else []
            found.update(((key, eid), fields[b"b"]) for eid, fields in before)
            for member in late_members:
                eid, first_ms = _split_member(member)
                if first_ms <= last_ms and (key, eid) not in found:
                    wanted.append((key, eid))
        if wanted:
            pipe = self._r.pipeline(transaction=False)
            for key, eid in wanted:
                pipe.xrange(key, eid, eid)
            for (key, _), entries in zip(wanted, pipe.execute(), strict=True):
                found.update(((key, eid), fields[b"b"]) for eid, fields in entries)
        return list(found.values())

    def _in_order_entry_before(self, key: str, cursor: str | bytes) -> tuple[bytes, bytes] | None:
        """(id, block) of the last in-order entry at or before ``cursor`` (an XREVRANGE
        start such as ``(<ms>-0`` or ``+``), stepping back over late entries (field ``l``)."""
        while entry := self._r.xrevrange(key, cursor, "-", count=1):
            eid, fields = entry[0]
            if b"l" not in fields:
                return eid, fields[b"b"]
            cursor = b"(" + eid
        return None

    def _decoded(
        self, symbol: str, start_ns: int, end_ns: int, streams: Sequence[StreamKind]
    ) -> Decoded:
        blocks = self._fetch(symbol, streams, start_ns, end_ns)
        headers = [codec.read_header(b) for b in blocks]
        keep = [i for i, h in enumerate(headers) if h.ts_last >= start_ns and h.ts_first < end_ns]
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

    def _bounds(
        self, start: TimeLike | None, end: TimeLike | None, known_at: TimeLike | None
    ) -> tuple[int, int, int | None]:
        start_ns = 0 if start is None else to_ns(start, self._tz, name="start")
        end_ns = _FAR_FUTURE_NS if end is None else to_ns(end, self._tz, name="end")
        if start_ns > end_ns:
            raise QueryError(
                f"start ({pd.Timestamp(start_ns, tz='UTC')}) is after end "
                f"({pd.Timestamp(end_ns, tz='UTC')}); the range is [start, end)"
            )
        known = None if known_at is None else to_ns(known_at, self._tz, name="known_at")
        return start_ns, end_ns, known

    @translate
    def range_columns(
        self,
        symbol: str,
        start: TimeLike | None = None,
        end: TimeLike | None = None,
        *,
        known_at: TimeLike | None = None,
        streams: Sequence[StreamKind] = STREAMS,
    ) -> Columns:
        """The trades in [start, end) as one numpy array per field (no copies when possible)."""
        symbol = check_symbol(symbol)
        start_ns, end_ns, known = self._bounds(start, end, known_at)
        if start_ns == end_ns:
            return TradeBatch.empty().columns()
        decoded = self._decoded(symbol, start_ns, end_ns, streams)
        return resolve(decoded, start_ns, end_ns, known)

    def range(
        self,
        symbol: str,
        start: TimeLike | None = None,
        end: TimeLike | None = None,
        *,
        known_at: TimeLike | None = None,
        streams: Sequence[StreamKind] = STREAMS,
    ) -> pd.DataFrame:
        """Trades with start <= ts_event < end, as known at ``known_at`` (default: now).

        Times: int ns UTC, aware datetimes, pandas Timestamps, ISO strings; a
        naive datetime is in the exchange time zone. None means unbounded. An
        unknown symbol gives an empty frame; start after end raises QueryError.
        The frame's index is ``ts_event`` (UTC), sorted, one row per trade.
        """
        return to_frame(self.range_columns(symbol, start, end, known_at=known_at, streams=streams))

    def range_numpy(
        self,
        symbol: str,
        start: TimeLike | None = None,
        end: TimeLike | None = None,
        *,
        known_at: TimeLike | None = None,
        streams: Sequence[StreamKind] = STREAMS,
    ) -> npt.NDArray[np.void]:
        """Like ``range`` as a structured array of ``TRADE_DTYPE`` (a row-major copy)."""
        cols = self.range_columns(symbol, start, end, known_at=known_at, streams=streams)
        return TradeBatch(**cols).to_structured()

    def range_arrow(
        self,
        symbol: str,
        start: TimeLike | None = None,
        end: TimeLike | None = None,
        *,
        known_at: TimeLike | None = None,
        streams: Sequence[StreamKind] = STREAMS,
    ) -> pa.Table:
        """Like ``range`` as an Arrow table; columns share memory with the decoded arrays."""
        return to_arrow(self.range_columns(symbol, start, end, known_at=known_at, streams=streams))

    @translate
    def last(self, symbol: str, n: int, *, known_at: TimeLike | None = None) -> pd.DataFrame:
        """The ``n`` most recent trades (by ts_event), as known at ``known_at``."""
        return to_frame(self.last_columns(symbol, n, known_at=known_at))

    def last_columns(self, symbol: str, n: int, *, known_at: TimeLike | None = None) -> Columns:
        symbol = check_symbol(symbol)
        if n < 0:
            raise QueryError(f"n must be >= 0, got {n}")
        known = None if known_at is None else to_ns(known_at, self._tz, name="known_at")
        end_ns = _FAR_FUTURE_NS if known is None else known + 1
        if n == 0:
            return TradeBatch.empty().columns()
        # Look back over more and more blocks until n trades are visible.
        look_back = 2
        while True:
            start_ns, exhausted = self._start_of_last_blocks(symbol, look_back, end_ns)
            if exhausted:
                start_ns = 0  # everything, late blocks with older trades included
            cols = resolve(
                self._decoded(symbol, start_ns, end_ns, STREAMS), start_ns, end_ns, known
            )
            if len(cols["ts_event"]) >= n or exhausted:
                return {k: v[-n:] for k, v in cols.items()}
            look_back *= 4

    def _start_of_last_blocks(self, symbol: str, count: int, end_ns: int) -> tuple[int, bool]:
        """(time, exhausted): the start of the ``count``-th last block of each stream;
        exhausted when no stream has that many blocks before ``end_ns``."""
        start = end_ns
        exhausted = True
        end_ms = (end_ns - 1) // NS_PER_MS
        for stream in STREAMS:
            entries = self._r.xrevrange(trades_key(symbol, stream), f"{end_ms}", "-", count=count)
            if entries:
                start = min(start, _entry_ms(entries[-1][0]) * NS_PER_MS)
            exhausted = exhausted and len(entries) < count
        return start, exhausted

    # ------------------------------------------------------------------ live-path records
    @translate
    def bridge_cursor(self, symbol: str, name: str) -> int | None:
        """Last sequence number a bridge stored for ``name`` (``<publisher>:<topic>``)."""
        raw = self._r.hget(cursor_key(check_symbol(symbol)), name)
        return None if raw is None else int(raw)

    @translate
    def record_gap(self, gap: GapMarker) -> None:
        """Mark [gap.start_ns, gap.end_ns] of a symbol as incomplete (idempotent)."""
        member = orjson.dumps(dataclasses.asdict(gap), option=orjson.OPT_SORT_KEYS)
        self._r.zadd(gaps_key(check_symbol(gap.symbol)), {member: gap.start_ns // NS_PER_MS})

    @translate
    def gaps(
        self, symbol: str, start: TimeLike | None = None, end: TimeLike | None = None
    ) -> list[GapMarker]:
        """Gap markers overlapping [start, end): spans where data is known to be missing."""
        symbol = check_symbol(symbol)
        start_ns, end_ns, _ = self._bounds(start, end, None)
        raw = self._r.zrangebyscore(gaps_key(symbol), "-inf", f"({-(-end_ns // NS_PER_MS)}")
        found = [GapMarker(**orjson.loads(m)) for m in raw]
        return [g for g in found if g.end_ns >= start_ns and g.start_ns < end_ns]

    @translate
    def quarantine(self, reason: str, detail: str, frames: Sequence[bytes]) -> None:
        """Keep a rejected message, raw, in the ``quarantine`` stream (bounded)."""
        fields: dict[str, Any] = {"reason": reason, "detail": detail, "ts": now_ns()}
        fields.update({f"f{i}": frame for i, frame in enumerate(frames)})
        self._r.xadd(
            QUARANTINE_KEY, fields, maxlen=self.settings.quarantine_maxlen, approximate=True
        )

    @translate
    def quarantined(self, count: int = 100) -> list[dict[str, Any]]:
        """The latest quarantined messages, newest first: reason, detail, ts and raw frames."""
        out = []
        for _, fields in self._r.xrevrange(QUARANTINE_KEY, "+", "-", count=count):
            item: dict[str, Any] = {k.decode(): v for k, v in fields.items()}
            item["reason"] = item["reason"].decode()
            item["detail"] = item["detail"].decode()
            item["ts"] = int(item["ts"])
            out.append(item)
        return out

    # ------------------------------------------------------------------ catalogue
    @translate
    def symbols(self) -> list[str]:
        """Symbols with stored trades, sorted."""
        found = set()
        for key in self._r.scan_iter(match="ticks:{*}:*", count=1000):
            parsed = parse_trades_key(key.decode())
            if parsed:
                found.add(parsed[0])
        return sorted(found)

    @translate
    def stats(self, symbol: str) -> list[StreamStats]:
        """Per-stream counts, time span and memory of ``symbol``."""
        symbol = check_symbol(symbol)
        out = []
        for stream in STREAMS:
            key = trades_key(symbol, stream)
            if not self._r.exists(key):
                continue
            trades = int(self._r.hget(meta_key(symbol, stream), "trades") or 0)
            first = self._r.xrange(key, "-", "+", count=1)
            last = self._in_order_entry_before(key, "+")
            late_first_ms = [
                _split_member(m)[1] for m in self._r.zrange(late_key(symbol, stream), 0, -1)
            ]
            memory = sum(
                self._r.memory_usage(k, samples=0) or 0
                for k in (key, late_key(symbol, stream), meta_key(symbol, stream))
            )
            out.append(
                StreamStats(
                    symbol=symbol,
                    stream=stream,
                    trades=trades,
                    blocks=self._r.xlen(key),
                    memory_bytes=memory,
                    first_ns=min(
                        [codec.read_header(first[0][1][b"b"]).ts_first]
                        + [ms * NS_PER_MS for ms in late_first_ms]
                    )
                    if first
                    else None,
                    last_ns=codec.read_header(last[1]).ts_last if last else None,
                )
            )
        return out

    @translate
    def server_status(self) -> dict[str, Any]:
        """Address, version and persistence mode of the server."""
        info = self._r.info("server")
        persistence = self._r.info("persistence")
        conf = self._r.config_get("appendfsync")
        policy = self._r.config_get("maxmemory-policy")
        return {
            "url": self.url,
            "embedded": self.embedded,
            "version": info.get("valkey_version", info.get("redis_version")),
            "aof": bool(persistence.get("aof_enabled")),
            "appendfsync": conf.get("appendfsync"),
            "maxmemory_policy": policy.get("maxmemory-policy"),
            "used_memory": self._r.info("memory").get("used_memory"),
        }

    # ------------------------------------------------------------------ retention
    @translate
    def trim(
        self, symbol: str | None = None, *, now: TimeLike | None = None, dry_run: bool = False
    ) -> TrimReport:
        """Apply retention: drop trades with event times older than ``retention_days``
        before ``now`` and keep at most ``stream_maxlen`` blocks per stream. Never drops
        a block with a trade that is still inside the retention window. Offer books keep
        everything needed to rebuild them from the cutoff on (``BookStore.trim``).

        Retention counts event age, so imported or backfilled history older than the
        window goes too; imported files whose trades are removed are forgotten by the
        import registry, so they can be imported again. ``dry_run``: remove nothing,
        return what would be removed. An unknown symbol gives an empty report."""
        now_value = now_ns() if now is None else to_ns(now, self._tz, name="now")
        cutoff_ns = now_value - int(self.settings.retention_days * NS_PER_DAY)
        symbols = [check_symbol(symbol)] if symbol else self.symbols()
        items: list[TrimItem] = []
        released: dict[str, str] = {}
        for sym in symbols:
            for stream in STREAMS:
                plan = self._plan_trim(sym, stream, cutoff_ns)
                if plan is None:
                    continue
                items.append(plan.item)
                if stream == "historical" and plan.item.first_ns is not None:
                    assert plan.item.last_ns is not None
                    touched = imports.touched_by(
                        self._r, sym, plan.item.first_ns, plan.item.last_ns
                    )
                    released.update(touched)
                if not dry_run:
                    self._apply_trim(plan)
            book = self.books.trim(sym, cutoff_ns, dry_run=dry_run)
            if book.entries:
                items.append(TrimItem(sym, "book", book.entries, 0, book.first_ns, book.last_ns))
        if not dry_run:
            imports.release(self._r, list(released))
        return TrimReport(
            cutoff_ns=cutoff_ns,
            dry_run=dry_run,
            items=tuple(items),
            imports_released=tuple(sorted(set(released.values()))),
            symbols=tuple(symbols),
        )

    def _plan_trim(self, symbol: str, stream: StreamKind, cutoff_ns: int) -> _TrimPlan | None:
        """The blocks of one stream that retention removes (None: nothing)."""
        key, late = trades_key(symbol, stream), late_key(symbol, stream)
        cutoff_ms = cutoff_ns // NS_PER_MS
        removed: dict[bytes, bytes] = {}
        # Late blocks, anywhere in the stream, whose last trade is before the cutoff.
        for member in self._r.zrangebyscore(late, "-inf", f"({cutoff_ms}"):
            eid = _split_member(member)[0]
            removed.update((e, f[b"b"]) for e, f in self._r.xrange(key, eid, eid))
        # A prefix of the stream, removed with XTRIM MINID. By time: every entry before
        # the last in-order block that starts before the cutoff holds only older trades.
        prefix_end: bytes | None = None
        keep = self._in_order_entry_before(key, f"({cutoff_ms}-0")
        if keep is not None:
            eid, block = keep
            entries = [(e, f[b"b"]) for e, f in self._r.xrange(key, "-", b"(" + eid)]
            if codec.read_header(block).ts_last < cutoff_ns:
                entries.append((eid, block))
            removed.update(entries)
            prefix_end = entries[-1][0] if entries else None
        # By size: the oldest blocks beyond stream_maxlen extend the prefix.
        excess = self._r.xlen(key) - len(removed) - self.settings.stream_maxlen
        while excess > 0:
            cursor = "-" if prefix_end is None else b"(" + prefix_end
            page = self._r.xrange(key, cursor, "+", count=max(excess, 100))
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
        return _TrimPlan(item, list(removed), prefix_end)

    def _apply_trim(self, plan: _TrimPlan) -> None:
        symbol, stream = plan.item.symbol, plan.item.stream
        assert stream != "book"
        key, late = trades_key(symbol, stream), late_key(symbol, stream)
        removed = set(plan.entry_ids)
        end = _parse_id(plan.prefix_end) if plan.prefix_end is not None else (-1, -1)
        stray = [e for e in plan.entry_ids if _parse_id(e) > end]
        late_members = [m for m in self._r.zrange(late, 0, -1) if _split_member(m)[0] in removed]
        pipe = self._r.pipeline(transaction=True)
        if plan.prefix_end is not None:
            pipe.xtrim(key, minid=f"{end[0]}-{end[1] + 1}", approximate=False)
        for i in range(0, len(stray), 1000):
            pipe.xdel(key, *stray[i : i + 1000])
        for i in range(0, len(late_members), 1000):
            pipe.zrem(late, *late_members[i : i + 1000])
        pipe.hincrby(meta_key(symbol, stream), "trades", -plan.item.trades)
        pipe.execute()


@dataclasses.dataclass(frozen=True, slots=True)
class _TrimPlan:
    item: TrimItem
    entry_ids: list[bytes]
    prefix_end: bytes | None
    """Last entry of the prefix that goes with XTRIM MINID (the rest: XDEL)."""


def _append_keys(symbol: str, stream: StreamKind) -> list[str]:
    """KEYS of append_blocks.lua."""
    return [
        trades_key(symbol, stream),
        meta_key(symbol, stream),
        late_key(symbol, stream),
        cursor_key(symbol),
    ]


def _group_args(
    group: Sequence[PlannedBlock], blocks: Sequence[bytes], cursor_args: list[Any], last: bool
) -> list[Any]:
    """Arguments of one append script call. The cursors ride on the last group only:
    they move once all data is in."""
    args: list[Any] = list(cursor_args) if last else [0]
    for p, block in zip(group, blocks, strict=True):
        args += [p.first_ms, p.last_ms, len(p.trades), p.trading_day,
                 int(p.trades.trade_id.max()), block]  # fmt: skip
    return args


@dataclasses.dataclass(frozen=True, slots=True)
class StoreItem:
    """One batch of a bridge write cycle: trades for a stream, or book updates."""

    symbol: str
    stream: StoreKind
    records: npt.NDArray[np.void]
    """``TRADE_DTYPE`` records, or ``wire.BOOK_DTYPE`` for the book."""
    cursors: Mapping[str, int]


def _parse_id(entry_id: bytes) -> tuple[int, int]:
    ms, _, seq = entry_id.partition(b"-")
    return int(ms), int(seq)


def _split_member(member: bytes) -> tuple[bytes, int]:
    """(entry id, first ms) of a late-index member ``<id>@<first_ms>``."""
    eid, _, first = member.partition(b"@")
    return eid, int(first)


def to_frame(cols: Columns) -> pd.DataFrame:
    """Columns as a DataFrame indexed by ts_event (tz-aware UTC)."""
    index = pd.DatetimeIndex(
        cols["ts_event"].view("M8[ns]"), dtype=_UTC_NS, name="ts_event", copy=False
    )
    data: dict[str, Any] = {}
    for name in TRADE_FIELDS[1:]:
        col = cols[name]
        if name == "ts_recv":
            data[name] = pd.DatetimeIndex(col.view("M8[ns]"), dtype=_UTC_NS, copy=False)
        else:
            data[name] = col
    return pd.DataFrame(data, index=index, copy=False)


def to_arrow(cols: Columns) -> pa.Table:
    import pyarrow as pa

    arrays = []
    for name in TRADE_FIELDS:
        col = cols[name]
        if name in ("ts_event", "ts_recv"):
            arrays.append(pa.array(col.view("M8[ns]"), type=pa.timestamp("ns", tz="UTC")))
        else:
            arrays.append(pa.array(col))
    return pa.Table.from_arrays(arrays, names=list(TRADE_FIELDS))


__all__ = ["TRADE_DTYPE", "StreamStats", "TrimItem", "TrimReport", "Vault", "to_arrow", "to_frame"]
