"""Trade writes: a checked batch cut into blocks, encoded, and appended with one server
script call (``append_blocks.lua``) per group of blocks; and the bridge's write cycle,
which sends the calls of several batches (trades and book updates) in one round trip.

Both write paths build their script calls the same way (``_block_groups``,
``_group_args``); a trade id given again with another event time is refused before
anything is written (``storage.identity``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from tickvault.config import Settings
from tickvault.errors import ValidationError
from tickvault.records.trades import TradeBatch
from tickvault.storage import codec, identity
from tickvault.storage.blocks import PlannedBlock, plan_blocks
from tickvault.storage.books import BookStore
from tickvault.storage.cluster import ClusterClient
from tickvault.storage.keys import (
    STORED_STREAMS,
    STREAMS,
    StoreKind,
    StreamKind,
    cursor_key,
    cursor_script_args,
    late_key,
    meta_key,
    trades_key,
)
from tickvault.storage.reads import TradeReads
from tickvault.storage.scripting import lua_source
from tickvault.timeutil import NS_PER_DAY, format_ns, local_to_utc_ns, trading_days

_BLOCKS_PER_SCRIPT = 64
"""Blocks appended per script call: bounds how long one call holds the server."""


@dataclasses.dataclass(frozen=True, slots=True)
class StoreItem:
    """One batch of a bridge write cycle: trades for a stream, or book updates."""

    symbol: str
    stream: StoreKind
    records: npt.NDArray[np.void]
    """``TRADE_DTYPE`` records, or ``records.book.BOOK_DTYPE`` for the book."""
    cursors: Mapping[str, int]


class TradeWrites:
    """Writes to one store's trade streams through the valkey-py client ``r``."""

    def __init__(self, r: Any, settings: Settings, reads: TradeReads):
        self._r = r
        self.settings = settings
        self._reads = reads
        self._tz = settings.tz
        self._append = r.register_script(lua_source("append_blocks.lua", block_append=True))

    def append_batch(
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
            for stream in STORED_STREAMS:
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
        decoded = self._reads.decoded(symbol, int(bounds[0]), int(bounds[1]), STREAMS)
        rows = np.repeat(decoded.days, decoded.counts) == day
        return decoded.columns["trade_id"][rows], decoded.columns["ts_event"][rows]

    def queue_cycle(
        self, pipe: Any, items: Sequence[StoreItem], books: BookStore
    ) -> tuple[int, list[tuple[int, StoreItem]]]:
        """Queue a write cycle's script calls on ``pipe``, trades and book alike: (the
        calls queued, the book items with the index of their call's reply, for
        ``BookStore.applied`` once the pipe has run)."""
        book_calls: list[tuple[int, StoreItem]] = []
        calls = 0
        for item in items:
            if item.stream == "book":
                books.queue(item.symbol, item.records, item.cursors, pipe)
                book_calls.append((calls, item))
                calls += 1
                continue
            batch = TradeBatch.from_structured(item.records)
            for keys, args in self._plan_calls(item.symbol, item.stream, batch, item.cursors):
                self._append(keys=keys, args=args, client=pipe)
                calls += 1
        return calls, book_calls

    def store_cycle(self, items: Sequence[StoreItem], books: BookStore) -> int | None:
        """Store several checked batches (trades of a stream, or book updates) with their
        cursors in one round trip: the bridge's write cycle. Each script call is atomic
        on its own; a failed cycle may be retried whole (repeated trades are resolved
        at read time, and a repeated book call is recognised by its cursor).

        With ``valkey_wait_replicas`` set, the same round trip ends with ``WAIT`` on the
        connection of every primary written to; returns the fewest replicas that
        acknowledged (None: WAIT is off)."""
        pipe = self._r.pipeline(transaction=False)
        calls, book_calls = self.queue_cycle(pipe, items, books)
        waits = self._queue_waits(pipe, items) if calls else 0
        if not book_calls:
            replies = pipe.execute()
        else:
            with books.lock:
                replies = pipe.execute()
                for index, item in book_calls:
                    books.applied(item.symbol, item.records, replies[index])
        if not waits:
            return None
        return min(int(r) for r in replies[len(replies) - waits :])

    def _queue_waits(self, pipe: Any, items: Sequence[StoreItem]) -> int:
        """Queue ``WAIT n timeout`` after the writes of ``items``, on the connection of each
        primary they went to (WAIT covers the writes of its own connection only); how
        many were queued."""
        n, timeout = self.settings.valkey_wait_replicas, self.settings.valkey_wait_timeout_ms
        if not n:
            return 0
        if not isinstance(self._r, ClusterClient):
            pipe.execute_command("WAIT", n, timeout)
            return 1
        nodes = {}
        for item in items:
            node = self._r.node_of_key(cursor_key(item.symbol))  # the symbol's slot
            nodes[node.name] = node
        for node in nodes.values():
            pipe.execute_command("WAIT", n, timeout, target_nodes=node)
        return len(nodes)

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
