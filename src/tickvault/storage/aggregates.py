"""Per-session aggregates materialised in Valkey: bytes in, bytes out (no feature code).

One key per symbol and trading day, under the symbol's hash tag so a Valkey
Cluster keeps it beside the symbol's trades: ``agg:{SYMBOL}:<YYYYMMDD>``. The value
is a self-describing record of named numpy arrays and scalar fields:

    b"TVAG" | u8 version | u32 header length | header (JSON) | body

The header holds ``records`` (how many raw records of that trading day, both
streams, the aggregate was built from), the scalar fields and, per array, its
name, dtype and length; the body is the arrays' bytes, concatenated in that order,
zstd-compressed (level 3). What the arrays mean is the engine's business
(``tickvault.engine.aggregates``): this layer never imports feature code.

Freshness: ``append_blocks.lua`` counts the records stored per trading day in the
stream's meta hash (``n:<day>``, on both write paths: bulk writes and the bridge's
write cycle) and retention counts them down (``storage.retention``). An aggregate
is *fresh* when the sum of the stored streams' counters (``realtime``, ``historical``
and ``compacted``: a compaction swap moves a day's count from realtime to compacted in
the same call) equals the ``records`` it was built from; otherwise records came (or
went) since and it must be rebuilt. Data
written before the counters existed has no ``n:<day>`` field: its aggregates are
never fresh (always rebuilt, which is slower but never wrong).

Each read or write is one round trip: ``read`` fetches the counters of both
streams, whether the symbol has any trades, and the aggregates wanted, in one
pipeline; ``write`` sends any number of aggregates in one pipeline. ``totals``
(records stored and trims applied per stream) is the cheaper check a caller
holding decoded aggregates in memory makes first: unchanged totals mean nothing
was written or trimmed since its last ``read``.
"""

from __future__ import annotations

import datetime as dt
import struct
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
import zstandard

from tickvault.config import Settings
from tickvault.errors import ServerError
from tickvault.storage.connection import translate
from tickvault.storage.keys import STORED_STREAMS, STREAMS, meta_key, trades_key
from tickvault.storage.reads import TradeReads
from tickvault.storage.resolve import Columns
from tickvault.timeutil import NS_PER_DAY, local_to_utc_ns

MAGIC = b"TVAG"
VERSION = 1
_HEAD = struct.Struct("<4sBI")
_EPOCH = dt.date(1970, 1, 1)


def day_number(day: dt.date) -> int:
    """A date as the trading-day number the write path uses (days since 1970-01-01)."""
    return (day - _EPOCH).days


def aggregate_key(symbol: str, day: dt.date) -> str:
    """``agg:{SYMBOL}:<YYYYMMDD>``: the aggregates of one session."""
    return f"agg:{{{symbol}}}:{day:%Y%m%d}"


def aggregate_pattern(symbol: str) -> str:
    """SCAN pattern of every aggregate key of ``symbol``."""
    return f"agg:{{{symbol}}}:*"


@dataclass(frozen=True, slots=True)
class StoredAggregate:
    """One decoded aggregate record."""

    records: int
    """Raw records of the trading day (both streams) it was built from."""
    scalars: dict[str, Any]
    arrays: dict[str, npt.NDArray[Any]]


def encode(
    arrays: Mapping[str, npt.NDArray[Any]], scalars: Mapping[str, Any], records: int
) -> bytes:
    """The stored bytes of one aggregate record (see the module docstring)."""
    specs = []
    parts = []
    for name, arr in arrays.items():
        a = np.ascontiguousarray(arr)
        specs.append([name, a.dtype.str, int(a.size)])
        parts.append(a.tobytes())
    header = orjson.dumps({"records": int(records), "scalars": dict(scalars), "arrays": specs})
    body = zstandard.ZstdCompressor(level=3).compress(b"".join(parts))
    return _HEAD.pack(MAGIC, VERSION, len(header)) + header + body


def decode(raw: bytes) -> StoredAggregate:
    """The record ``encode`` wrote; ServerError when the bytes are not one."""
    if len(raw) < _HEAD.size:
        raise ServerError("a stored aggregate is truncated: delete the agg:* key to rebuild it")
    magic, version, n = _HEAD.unpack_from(raw)
    if magic != MAGIC or version != VERSION:
        raise ServerError(
            f"a stored aggregate has format {magic!r} v{version}, this tickvault reads "
            f"{MAGIC!r} v{VERSION}: delete the agg:* keys to rebuild them"
        )
    header = orjson.loads(raw[_HEAD.size : _HEAD.size + n])
    body = zstandard.ZstdDecompressor().decompress(raw[_HEAD.size + n :])
    arrays: dict[str, npt.NDArray[Any]] = {}
    pos = 0
    for name, dtype, size in header["arrays"]:
        d = np.dtype(dtype)
        arrays[name] = np.frombuffer(body, dtype=d, count=size, offset=pos)
        pos += d.itemsize * size
    return StoredAggregate(int(header["records"]), dict(header["scalars"]), arrays)


@dataclass(frozen=True, slots=True)
class AggregateRead:
    """What one ``read`` found."""

    has_trades: bool
    """False when neither trade stream of the symbol exists (an unknown symbol)."""
    counts: dict[dt.date, int]
    """Per day asked: raw records stored now, both streams (0 without a counter)."""
    counted: dict[dt.date, bool]
    """Per day asked: True when some stream has an ``n:<day>`` counter for it."""
    stored: dict[dt.date, bytes | None]
    """Per day fetched: the stored aggregate bytes, None when there are none."""
    totals: tuple[int, ...] = ()
    """``totals(r, symbol)`` as read at the start of the same round trip."""


def _totals_queue(pipe: Any, symbol: str) -> None:
    for stream in STORED_STREAMS:
        pipe.hmget(meta_key(symbol, stream), ["trades", "trims"])


def _totals_of(replies: Sequence[Any]) -> tuple[int, ...]:
    return tuple(int(v) if v is not None else -1 for pair in replies for v in pair)


@translate
def totals(r: Any, symbol: str) -> tuple[int, ...]:
    """A cheap change detector for every trade record of ``symbol``: per stream, the
    records stored (``trades``) and the trims applied (``trims``), -1 when absent.
    Unchanged totals mean no record was written or trimmed since (one round trip)."""
    pipe = r.pipeline(transaction=True)  # one snapshot: a compaction swap moves counts
    _totals_queue(pipe, symbol)
    return _totals_of(pipe.execute())


@translate
def read(
    r: Any, symbol: str, days: Sequence[dt.date], *, fetch: Collection[dt.date] | None = None
) -> AggregateRead:
    """Counters of ``days`` and the stored aggregates of ``fetch`` (default: all of
    ``days``), in one round trip."""
    fetch_days = list(days if fetch is None else fetch)
    fields = [f"n:{day_number(d)}" for d in days]
    pipe = r.pipeline(transaction=True)  # one snapshot: a compaction swap moves counts
    _totals_queue(pipe, symbol)  # first: a write after this is seen by the next check
    for stream in STORED_STREAMS:
        pipe.exists(trades_key(symbol, stream))
        if fields:
            pipe.hmget(meta_key(symbol, stream), fields)
    for d in fetch_days:
        pipe.get(aggregate_key(symbol, d))
    replies = pipe.execute()
    head = _totals_of(replies[: len(STORED_STREAMS)])
    replies = replies[len(STORED_STREAMS) :]
    step = 2 if fields else 1
    has_trades = any(bool(replies[i * step]) for i in range(len(STORED_STREAMS)))
    counts = dict.fromkeys(days, 0)
    counted = dict.fromkeys(days, False)
    if fields:
        for i in range(len(STORED_STREAMS)):
            for d, raw in zip(days, replies[i * step + 1], strict=True):
                if raw is not None:
                    counts[d] += int(raw)
                    counted[d] = True
    got = replies[len(STORED_STREAMS) * step :]
    stored = {
        d: (bytes(v) if v is not None else None) for d, v in zip(fetch_days, got, strict=True)
    }
    return AggregateRead(has_trades, counts, counted, stored, head)


@translate
def write(r: Any, symbol: str, items: Mapping[dt.date, bytes]) -> None:
    """Store aggregate records (``encode``'s bytes) for the given days, one round trip."""
    if not items:
        return
    pipe = r.pipeline(transaction=False)
    for d, raw in items.items():
        pipe.set(aggregate_key(symbol, d), raw)
    pipe.execute()


@translate
def delete(r: Any, symbol: str) -> int:
    """Delete every stored aggregate of ``symbol``; returns how many keys went."""
    keys = list(r.scan_iter(match=aggregate_pattern(symbol), count=1000))
    return int(r.delete(*keys)) if keys else 0


@translate
def day_records(r: Any, settings: Settings, symbol: str, day: dt.date) -> Columns:
    """Every raw record stored for ``symbol`` on the trading day ``day`` (local date in the
    store's time zone), both streams: trades, repeats, edits and cancels, unresolved,
    in no particular order. One read (two round trips when late blocks are involved)."""
    n = day_number(day)
    lo, hi = (int(x) for x in local_to_utc_ns(np.array([n, n + 1], np.int64) * NS_PER_DAY,
                                              settings.tz))  # fmt: skip
    decoded = TradeReads(r, settings).decoded(symbol, lo, hi, STREAMS)
    rows = np.flatnonzero(np.repeat(decoded.days, decoded.counts) == n)
    return {name: col[rows] for name, col in decoded.columns.items()}
