"""ProfitDLL values to tickvault records, and the history request rules (pure).

Dates from the DLL are São Paulo wall-clock times (``SYSTEMTIME`` fields or
``DD/MM/YYYY HH:MM:SS.ZZZ`` strings) and become int64 ns UTC. Trade numbers,
types and edit flags map onto ``TRADE_DTYPE``; ``TradeNumbers`` tells an edit of
a trade seen from one of a trade never seen. Full-book arrays are parsed here;
``book.ProfitBook`` turns offer-book callbacks into ``wire.BOOK_DTYPE`` records.
"""

from __future__ import annotations

import datetime as dt
import functools
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from tickvault.errors import FeedError, ValidationError
from tickvault.feeds.profitdll.types import TRADE_TYPES
from tickvault.records.trades import TRADE_DTYPE, TradeFlag, TradeType
from tickvault.timeutil import NS_PER_DAY, NS_PER_MS, NS_PER_S

HISTORY_MAX_AGE_DAYS = 30
"""ProfitDLL refuses a history start older than this (NL_HISTORY_PERIOD_LIMIT)."""
ONE_DAY_PREFIXES = ("WIN", "WDO")
"""Contracts whose history must be requested one day at a time."""
_KNOWN_TYPES = frozenset(TRADE_TYPES)
"""Trade types stored as they come; any other code is stored as ``TradeType.UNKNOWN``."""


class ProfitDateParser:
    """``DD/MM/YYYY HH:MM:SS.ZZZ`` local time to int64 ns UTC (cached per second)."""

    def __init__(self, tz: ZoneInfo):
        self.tz = tz
        self._cache: dict[str, int] = {}

    def __call__(self, text: str) -> int:
        head, _, ms = text.partition(".")
        base = self._cache.get(head)
        if base is None:
            try:
                local = dt.datetime.strptime(head, "%d/%m/%Y %H:%M:%S").replace(tzinfo=self.tz)
            except ValueError:
                raise ValidationError(
                    f"date {text!r} is not DD/MM/YYYY HH:MM:SS.ZZZ", field="date"
                ) from None
            base = int(local.timestamp()) * NS_PER_S
            if len(self._cache) > 100_000:
                self._cache.clear()
            self._cache[head] = base
        return base + int(ms or 0) * NS_PER_MS


@functools.lru_cache(maxsize=4096)
def _local_day_utc_ns(year: int, month: int, day: int, tz: ZoneInfo) -> int:
    """ns UTC of local midnight (the offset of that date taken at noon, as B3 never changes
    offset during a session)."""
    noon = dt.datetime(year, month, day, 12, tzinfo=tz)
    offset = noon.utcoffset()
    assert offset is not None
    midnight_as_utc = (noon.date() - dt.date(1970, 1, 1)).days * NS_PER_DAY
    return midnight_as_utc - int(offset.total_seconds()) * NS_PER_S


def systemtime_ns(fields: Sequence[int], tz: ZoneInfo) -> int:
    """A ``SYSTEMTIME`` (year, month, day, hour, minute, second, ms) in exchange local
    time to int64 ns UTC."""
    year, month, day, hour, minute, second, ms = fields
    try:
        base = _local_day_utc_ns(year, month, day, tz)
    except ValueError as exc:
        raise ValidationError(f"bad trade date {year}-{month}-{day}: {exc}", field="date") from exc
    return base + ((hour * 60 + minute) * 60 + second) * NS_PER_S + ms * NS_PER_MS


def format_request_date(ts_ns: int, tz: ZoneInfo) -> str:
    """int ns UTC to the ``DD/MM/YYYY HH:mm:SS`` local string ``GetHistoryTrades`` takes."""
    return dt.datetime.fromtimestamp(ts_ns / NS_PER_S, tz).strftime("%d/%m/%Y %H:%M:%S")


@dataclass(frozen=True, slots=True)
class RawTrade:
    """A trade copied out of a callback, before conversion."""

    ts_event: int
    ts_recv: int
    trade_number: int
    price: float
    quantity: int
    volume: float
    buy_agent: int
    sell_agent: int
    trade_type: int
    dll_flags: int


def trade_records(trades: Sequence[RawTrade], *, history: bool) -> npt.NDArray[np.void]:
    """``TRADE_DTYPE`` records: an edit flag becomes ``TradeFlag.EDIT``, history trades
    get ``TradeFlag.HISTORY``, undocumented trade types become ``TradeType.UNKNOWN``."""
    out = np.zeros(len(trades), dtype=TRADE_DTYPE)
    for i, tr in enumerate(trades):
        flags = int(TradeFlag.HISTORY) if history else 0
        if tr.dll_flags & 1:
            flags |= int(TradeFlag.EDIT)
        ttype = tr.trade_type if tr.trade_type in _KNOWN_TYPES else int(TradeType.UNKNOWN)
        out[i] = (tr.ts_event, tr.ts_recv, tr.trade_number, tr.price, tr.quantity, tr.volume,
                  tr.buy_agent, tr.sell_agent, ttype, flags)  # fmt: skip
    return out


class TradeNumbers:
    """The trade numbers seen, per symbol and trading day (``tradeNumber`` is unique per
    symbol and session). A bitmap in chunks of 65,536 numbers, created as numbers come
    (8 KiB per chunk): a day of a busy contract takes a few MiB. Only the ``days`` latest
    trading days of each symbol are kept."""

    _CHUNK_BITS = 16

    def __init__(self, days: int = 2):
        self.days = days
        self._seen: dict[str, dict[tuple[int, int, int], dict[int, bytearray]]] = {}

    def add(self, symbol: str, day: tuple[int, int, int], number: int) -> None:
        per_day = self._seen.setdefault(symbol, {})
        chunks = per_day.get(day)
        if chunks is None:
            chunks = per_day[day] = {}
            while len(per_day) > self.days:
                del per_day[min(per_day)]
            if day not in per_day:
                return
        chunk = chunks.get(number >> self._CHUNK_BITS)
        if chunk is None:
            chunk = chunks[number >> self._CHUNK_BITS] = bytearray(1 << (self._CHUNK_BITS - 3))
        low = number & ((1 << self._CHUNK_BITS) - 1)
        chunk[low >> 3] |= 1 << (low & 7)

    def seen(self, symbol: str, day: tuple[int, int, int], number: int) -> bool:
        chunk = self._seen.get(symbol, {}).get(day, {}).get(number >> self._CHUNK_BITS)
        low = number & ((1 << self._CHUNK_BITS) - 1)
        return chunk is not None and bool(chunk[low >> 3] & (1 << (low & 7)))


# ---------------------------------------------------------------------- offer book
_ARRAY_HEADER = struct.Struct("<ii")
_ENTRY = struct.Struct("<dqiqH")
_FLAGS = struct.Struct("<I")
ARRAY_MIN_SIZE = _ARRAY_HEADER.size + _FLAGS.size
ARRAY_MAX_SIZE = 1 << 28
"""A full-book array's total size is trusted only within these bounds (a bigger one
would be a corrupt header: copying it could read past the DLL's memory)."""

Entry = tuple[float, int, int, int, str]
"""A full-book entry: (price, qty, agent, offer_id, date text)."""


@dataclass(frozen=True, slots=True)
class BookArray:
    """One page of a full-book side as sent by the offer-book callback (list order)."""

    entries: list[Entry] = field(default_factory=list)
    flags: int = 0
    """1 last page, 2 first page."""


def parse_book_array(raw: bytes) -> BookArray:
    """Parse the packed layout: int32 count, int32 total size, entries (double price,
    int64 qty, int32 agent, int64 offer id, uint16 n, n bytes of date), uint32 flags."""
    if len(raw) < ARRAY_MIN_SIZE:
        raise ValidationError(f"offer-book array of {len(raw)} bytes is too short", field="book")
    count, total = _ARRAY_HEADER.unpack_from(raw, 0)
    if total != len(raw) or count < 0:
        raise ValidationError(
            f"offer-book array header says {count} entries in {total} bytes, got {len(raw)} bytes",
            field="book",
        )
    pos = _ARRAY_HEADER.size
    entries = []
    for _ in range(count):
        if pos + _ENTRY.size > total - _FLAGS.size:
            raise ValidationError("offer-book array ends inside an entry", field="book")
        price, qty, agent, offer_id, n = _ENTRY.unpack_from(raw, pos)
        pos += _ENTRY.size
        date = raw[pos : pos + n].decode("ascii", "replace")
        pos += n
        entries.append((price, qty, agent, offer_id, date))
    (flags,) = _FLAGS.unpack_from(raw, pos)
    return BookArray(entries, flags)


def array_size(header: bytes) -> int:
    """Total size in bytes from the first 8 bytes of a full-book array."""
    return int(_ARRAY_HEADER.unpack_from(header, 0)[1])


# ---------------------------------------------------------------------- history rules
def plan_history(
    symbol: str, start_ns: int, end_ns: int, *, now_ns: int, tz: ZoneInfo
) -> list[tuple[int, int]]:
    """The requests that fetch [start_ns, end_ns) within ProfitDLL's rules.

    A start older than 30 days is refused (with what to do instead). WIN and WDO
    contracts are split at local midnights, one day per request.
    """
    if end_ns <= start_ns:
        return []
    oldest = now_ns - HISTORY_MAX_AGE_DAYS * NS_PER_DAY
    if start_ns < oldest:
        raise FeedError(
            f"history for {symbol} from {format_request_date(start_ns, tz)} is older than "
            f"ProfitDLL's {HISTORY_MAX_AGE_DAYS}-day limit (NL_HISTORY_PERIOD_LIMIT); ask for "
            f"at most {HISTORY_MAX_AGE_DAYS} days, or import B3 trade files for older data"
        )
    if not symbol.upper().startswith(ONE_DAY_PREFIXES):
        return [(start_ns, end_ns)]
    windows = []
    lo = start_ns
    while lo < end_ns:
        local = dt.datetime.fromtimestamp(lo / NS_PER_S, tz)
        next_midnight = dt.datetime.combine(local.date() + dt.timedelta(days=1), dt.time(0), tz)
        hi = min(end_ns, int(next_midnight.timestamp()) * NS_PER_S)
        windows.append((lo, hi))
        lo = hi
    return windows
