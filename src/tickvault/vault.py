"""``Vault``: the public, time-travelling API of the tick store (a facade).

Each public call checks its arguments, converts times, and hands the work to the
storage module that owns it, under ``translate`` (the one seam where valkey-py's
errors become tickvault ``ServerError``s):

- writes (``storage.writes``): a batch validated, cut into blocks, appended with one
  server script call per group of blocks; the bridge's write cycle;
- reads (``storage.reads``): the blocks that can hold a range, decoded and resolved as
  of the knowledge time; ``storage.frames`` turns the columns into pandas or Arrow;
- offer books (``storage.books``), retention (``storage.retention``), the catalogue
  (``storage.catalog``), the live path's markers, gaps and quarantine
  (``storage.markers``), and opening, views and closing (``storage.lifecycle``).

Longer than the ~200 lines aimed at: every method is a delegation of a few lines, and
what remains is the public API's signatures and docstrings (``help(Vault)`` is its
reference), which a split would only scatter.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from tickvault.config import Settings, hide_password, load_settings
from tickvault.errors import QueryError
from tickvault.records.book import BookView
from tickvault.records.events import Gap
from tickvault.records.trades import TRADE_DTYPE, TradeBatch, TradeFlag
from tickvault.records.validate import check_symbol, to_batch
from tickvault.storage import catalog, lifecycle, markers, retention
from tickvault.storage.books import BookStore
from tickvault.storage.catalog import StreamStats
from tickvault.storage.compaction import CompactItem, Compactor, CompactReport
from tickvault.storage.connection import Connection, connect, translate
from tickvault.storage.frames import to_arrow, to_frame
from tickvault.storage.keys import STREAMS, StoredStream, StreamKind
from tickvault.storage.leases import Fence, Leases, fenced, fenced_cycle
from tickvault.storage.markers import GapMarker
from tickvault.storage.reads import TradeReads, bounds
from tickvault.storage.resolve import Columns
from tickvault.storage.retention import TrimItem, TrimReport
from tickvault.storage.writes import StoreItem, TradeWrites
from tickvault.timeutil import NS_PER_DAY, TimeLike, now_ns, to_ns

if TYPE_CHECKING:
    import pyarrow as pa


class Vault:
    """The tick store. Open with ``Vault.open()``; close with ``close()`` or ``with``."""

    def __init__(self, conn: Connection, settings: Settings):
        self._conn = conn
        # valkey-py annotates replies as "Awaitable | Any" (sync and async share stubs),
        # which says nothing; the client is typed Any here and replies are checked by use.
        self._r: Any = conn.client
        self.settings = settings
        self._tz = settings.tz
        self._reads = TradeReads(self._r, settings)
        self._writes = TradeWrites(self._r, settings, self._reads)
        self._closed = False
        self._books: BookStore | None = None
        self._compactor: Compactor | None = None

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
            settings = lifecycle.merged(settings, overrides)
        return cls(connect(settings, url), settings)

    def close(self) -> None:
        """Close the connection; stop the embedded server if this process started it and
        no other tickvault process is connected to it."""
        if not self._closed:
            self._closed = True
            lifecycle.close(self._conn, self.settings.data_dir, self.settings)

    def with_settings(self, **changes: Any) -> Vault:
        """A view of this store with other settings (block size, codec, retention...),
        sharing the connection; closing it never stops the server."""
        return Vault(lifecycle.shared(self._conn), lifecycle.merged(self.settings, changes))

    def __enter__(self) -> Vault:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def url(self) -> str:
        """The server's URL as shown to people: a password in it is ``***``."""
        return hide_password(self._conn.url)

    @property
    def connection_url(self) -> str:
        """The server's URL with any credentials in it: to connect, never to show."""
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
        return self._writes.append_batch(symbol, stream, batch)

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
        return self._writes.append_batch(check_symbol(symbol), stream, batch, cursors, progress)

    @translate
    def store_cycle(self, items: Sequence[StoreItem], *, fence: Fence | None = None) -> int | None:
        """Store several checked batches (trades of a stream, or book updates) with their
        cursors in one round trip: the bridge's write cycle. Each script call is atomic
        on its own; a failed cycle may be retried whole (repeated trades are resolved
        at read time, and a repeated book call is recognised by its cursor). With
        ``valkey_wait_replicas`` set, returns the fewest replicas that acknowledged the
        writes (``WAIT`` on every primary written to); else None.

        ``fence`` (a pool worker's): fenced transactions (``storage.leases.fenced_cycle``:
        one over the cycle on a single server, one per slot on a cluster) that land a
        symbol's items only while the fence holds its lease; ``LeaseLost`` naming the
        symbols refused (nothing of theirs written) once the others are stored
        (``LeaseLost.stored``); no ``WAIT`` then (None)."""
        if fence is None:
            return self._writes.store_cycle(items, self.books)
        fenced_cycle(self._r, self._writes, self.books, items, fence)
        return None

    def leases(self, role: str) -> Leases:
        """The symbol leases and members of the worker pool ``role`` (``storage.leases``)."""
        return Leases(self._r, role)

    def fenced(
        self,
        fence: Fence,
        symbols: Sequence[str],
        queue: Callable[[Any], Callable[[list[Any]], None] | None],
    ) -> None:
        """Run the writes ``queue`` puts on a transaction (a valkey-py pipeline) only while
        ``fence`` holds the lease of each of ``symbols``; else ``LeaseLost``."""
        fenced(self._r, fence, symbols, queue)

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
        """Store offer-book updates (``records.book.BOOK_DTYPE`` records, in feed order)."""
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
    def book_version(self, symbol: str) -> bytes | None:
        """A token that changes whenever an update of ``symbol``'s book is stored (None:
        no stored book): compare it to skip rebuilding a book that has not moved."""
        return self.books.last_id(check_symbol(symbol))

    @translate
    def book_updates(self, symbol: str, start: TimeLike, end: TimeLike) -> npt.NDArray[np.void]:
        """The stored offer-book updates with start <= ts_event < end, in feed order."""
        start_ns, end_ns = to_ns(start, self._tz, name="start"), to_ns(end, self._tz, name="end")
        return self.books.updates(check_symbol(symbol), start_ns, end_ns)

    # ------------------------------------------------------------------ reads
    @translate
    def range_columns(
        self,
        symbol: str,
        start: TimeLike | None = None,
        end: TimeLike | None = None,
        *,
        known_at: TimeLike | None = None,
        streams: Sequence[StreamKind | StoredStream] = STREAMS,
    ) -> Columns:
        """The trades in [start, end) as one numpy array per field (no copies when possible).
        ``streams``: ``realtime`` reads the live trades, compacted or not; ``compacted``
        alone only those compaction rewrote."""
        start_ns, end_ns, known = bounds(start, end, known_at, self.settings)
        return self._reads.range_columns(check_symbol(symbol), start_ns, end_ns, known, streams)

    def range(
        self,
        symbol: str,
        start: TimeLike | None = None,
        end: TimeLike | None = None,
        *,
        known_at: TimeLike | None = None,
        streams: Sequence[StreamKind | StoredStream] = STREAMS,
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
        streams: Sequence[StreamKind | StoredStream] = STREAMS,
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
        streams: Sequence[StreamKind | StoredStream] = STREAMS,
    ) -> pa.Table:
        """Like ``range`` as an Arrow table; columns share memory with the decoded arrays."""
        return to_arrow(self.range_columns(symbol, start, end, known_at=known_at, streams=streams))

    @translate
    def last(self, symbol: str, n: int, *, known_at: TimeLike | None = None) -> pd.DataFrame:
        """The ``n`` most recent trades (by ts_event), as known at ``known_at``."""
        return to_frame(self.last_columns(symbol, n, known_at=known_at))

    @translate
    def last_columns(self, symbol: str, n: int, *, known_at: TimeLike | None = None) -> Columns:
        """Like ``last`` as one numpy array per field."""
        symbol = check_symbol(symbol)
        if n < 0:
            raise QueryError(f"n must be >= 0, got {n}")
        known = None if known_at is None else to_ns(known_at, self._tz, name="known_at")
        return self._reads.last_columns(symbol, n, known)

    # ------------------------------------------------------------------ live-path records
    @translate
    def bridge_cursor(self, symbol: str, name: str) -> int | None:
        """Last sequence number a bridge stored for ``name`` (``<publisher>:<topic>``)."""
        return markers.bridge_cursor(self._r, check_symbol(symbol), name)

    @translate
    def bridge_cursors(self) -> dict[str, int]:
        """Every bridge cursor of every symbol: ``<publisher>:<topic>`` -> last seq stored."""
        return markers.bridge_cursors(self._r)

    @translate
    def record_gap(self, gap: Gap) -> None:
        """Mark [gap.start_ns, gap.end_ns] of a symbol as incomplete (idempotent)."""
        markers.record_gap(self._r, check_symbol(gap.symbol), gap)

    @translate
    def gaps(
        self, symbol: str, start: TimeLike | None = None, end: TimeLike | None = None
    ) -> list[Gap]:
        """Gap markers overlapping [start, end): spans where data is known to be missing."""
        symbol = check_symbol(symbol)
        start_ns, end_ns, _ = bounds(start, end, None, self.settings)
        return markers.gaps(self._r, symbol, start_ns, end_ns)

    @translate
    def quarantine(self, reason: str, detail: str, frames: Sequence[bytes]) -> None:
        """Keep a rejected message, raw, in the ``quarantine`` stream (bounded)."""
        markers.quarantine(self._r, self.settings.quarantine_maxlen, reason, detail, frames)

    @translate
    def quarantined(self, count: int = 100) -> list[dict[str, Any]]:
        """The latest quarantined messages, newest first: reason, detail, ts and raw frames."""
        return markers.quarantined(self._r, count)

    @translate
    def put_status(self, name: str, fields: Mapping[str, Any], *, ttl_s: float = 3600) -> None:
        """Report a process's status as the hash ``status:<name>`` (replaced whole;
        dropped after ``ttl_s`` without a new report). Read with ``statuses``."""
        markers.put_status(self._r, name, dict(fields), ttl_s)

    @translate
    def statuses(self, prefix: str = "") -> dict[str, dict[str, str]]:
        """The status hashes whose name starts with ``prefix``: name -> fields (strings)."""
        return markers.statuses(self._r, prefix)

    # ------------------------------------------------------------------ catalogue
    @translate
    def symbols(self) -> list[str]:
        """Symbols with stored trades, sorted."""
        return catalog.symbols(self._r)

    @translate
    def stats(self, symbol: str) -> list[StreamStats]:
        """Per-stream counts, time span and memory of ``symbol``."""
        return catalog.stats(self._r, self._reads, check_symbol(symbol))

    @translate
    def server_status(self) -> dict[str, Any]:
        """Address, version and persistence mode of the server."""
        return catalog.server_status(self._r, self.url, self.embedded)

    @translate
    def server_run_id(self) -> str:
        """The server's run id: it changes whenever the server process restarts."""
        return catalog.server_run_id(self._r)

    # ------------------------------------------------------------------ compaction
    @translate
    def compact(
        self,
        symbols: Sequence[str] | None = None,
        *,
        now: TimeLike | None = None,
        dry_run: bool = False,
        stop: Callable[[], bool] | None = None,
    ) -> CompactReport:
        """Rewrite the small blocks of settled spans of the realtime stream as full blocks
        (``storage.compaction``): those whose trades are all ``compact_after_minutes`` old
        (event time) before ``now``, and every block of a trading day whose B3 session has
        closed. Readers see every trade once throughout, and every record (repeats,
        corrections, with their receive times) is kept, so ``range(..., known_at=K)`` gives
        the same answer before and after. ``symbols``: default every stored symbol;
        ``dry_run``: change nothing, report what would be done; ``stop`` (checked between
        swaps) ends the run early."""
        now_value = now_ns() if now is None else to_ns(now, self._tz, name="now")
        wanted = [check_symbol(s) for s in symbols] if symbols else self.symbols()
        if self._compactor is None:
            self._compactor = Compactor(self._r, self.settings)
        return self._compactor.compact(wanted, now_value, dry_run=dry_run, stop=stop)

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
        return retention.trim(
            self._r, self.settings, self._reads, self.books, symbols, cutoff_ns, dry_run=dry_run
        )


__all__ = [
    "TRADE_DTYPE",
    "CompactItem",
    "CompactReport",
    "GapMarker",
    "StoreItem",
    "StreamStats",
    "TrimItem",
    "TrimReport",
    "Vault",
    "to_arrow",
    "to_frame",
]
