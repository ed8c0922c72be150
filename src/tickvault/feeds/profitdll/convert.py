"""ProfitDLL values to tickvault records, and the history request rules (pure).

Dates from the DLL are São Paulo wall-clock times (``SYSTEMTIME`` fields or
``DD/MM/YYYY HH:MM:SS.ZZZ`` strings) and become int64 ns UTC. Trade numbers,
types and edit flags map onto ``TRADE_DTYPE``; offer-book callbacks and their
packed full-book arrays map onto ``wire.BOOK_DTYPE``.
"""

from __future__ import annotations

import datetime as dt
import functools
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from tickvault.errors import FeedError, ValidationError
from tickvault.model.trades import TRADE_DTYPE, TradeFlag, TradeType
from tickvault.timeutil import NS_PER_DAY, NS_PER_MS, NS_PER_S
from tickvault.transport.wire import BOOK_DTYPE

HISTORY_MAX_AGE_DAYS = 30
"""ProfitDLL refuses a history start older than this (NL_HISTORY_PERIOD_LIMIT)."""
ONE_DAY_PREFIXES = ("WIN", "WDO")
"""Contracts whose history must be requested one day at a time."""
_KNOWN_TYPES = frozenset(int(t) for t in TradeType)


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
    get ``TradeFlag.HISTORY``, unknown trade types become ``TradeType.UNKNOWN``."""
    out = np.zeros(len(trades), dtype=TRADE_DTYPE)
    for i, tr in enumerate(trades):
        flags = int(TradeFlag.HISTORY) if history else 0
        if tr.dll_flags & 1:
            flags |= int(TradeFlag.EDIT)
        ttype = tr.trade_type if tr.trade_type in _KNOWN_TYPES else int(TradeType.UNKNOWN)
        out[i] = (tr.ts_event, tr.ts_recv, tr.trade_number, tr.price, tr.quantity, tr.volume,
                  tr.buy_agent, tr.sell_agent, ttype, flags)  # fmt: skip
    return out


# ---------------------------------------------------------------------- offer book
_ARRAY_HEADER = struct.Struct("<ii")
_ENTRY = struct.Struct("<dqiqH")
_FLAGS = struct.Struct("<I")


@dataclass(frozen=True, slots=True)
class BookArray:
    """A full-book side as sent by the offer-book callback (list order)."""

    entries: list[tuple[float, int, int, int, str]]
    """(price, qty, agent, offer_id, date text)"""
    flags: int


def parse_book_array(raw: bytes) -> BookArray:
    """Parse the packed layout: int32 count, int32 total size, entries (double price,
    int64 qty, int32 agent, int64 offer id, uint16 n, n bytes of date), uint32 flags."""
    if len(raw) < _ARRAY_HEADER.size + _FLAGS.size:
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


def full_book_records(
    buy: BookArray | None, sell: BookArray | None, ts_event: int, ts_recv: int
) -> npt.NDArray[np.void]:
    """Action-4 records for each side sent, positions counted from the end of the list.
    A side sent empty becomes one action-4 record with price 0 (the side is cleared)."""
    rows = []
    for side, array in ((0, buy), (1, sell)):
        if array is None:
            continue
        n = len(array.entries)
        if n == 0:
            rows.append((ts_event, ts_recv, 0, 0.0, 0, 0, 0, side, 4))
        for i, (price, qty, agent, offer_id, _date) in enumerate(array.entries):
            rows.append((ts_event, ts_recv, offer_id, price, qty, agent, n - i - 1, side, 4))
    return np.array(rows, dtype=BOOK_DTYPE)


def book_update_record(
    *,
    action: int,
    position: int,
    side: int,
    qty: int,
    agent: int,
    offer_id: int,
    price: float,
    has: tuple[bool, bool, bool, bool],
    ts_event: int,
    ts_recv: int,
) -> npt.NDArray[np.void]:
    """One add/edit/delete record. ``has``: price, qty, offer id, agent present; absent
    fields become the 'keep' values of the book (price 0, qty -1, offer id 0, agent 0)."""
    has_price, has_qty, has_offer, has_agent = has
    return np.array(
        [(ts_event, ts_recv, offer_id if has_offer else 0, price if has_price else 0.0,
          qty if has_qty else -1, agent if has_agent else 0, position, side, action)],
        dtype=BOOK_DTYPE,
    )  # fmt: skip


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
