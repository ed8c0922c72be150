"""Time at the edges: convert what users pass into int64 ns UTC, and trading dates.

Inside tickvault every time is an int64 count of nanoseconds since the Unix
epoch, UTC. A naive time (a datetime, a datetime64 or a string without an
offset) is read in the exchange time zone, because that is what a B3 trader
means by "10:30": on reads and on writes alike.

Strings: ISO 8601 (``2025-11-03``, ``2025-11-03T10:30``, ``2025-11-03 10:30:00.250``,
``2025-11-03T13:30Z``, ``...-03:00``), B3's day-first ``DD/MM/YYYY[ HH:MM[:SS[.fff]]]``
(``01/12/2026`` is 1 December, as ProfitDLL and B3 files write it), ``now``,
``today``, or int nanoseconds. Other orders (``12-01-2026``, ``1.12.26``, month
names) are refused rather than guessed.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
import pandas as pd

from tickvault.errors import QueryError

NS_PER_US = 1_000
NS_PER_MS = 1_000_000
NS_PER_S = 1_000_000_000
NS_PER_DAY = 86_400 * NS_PER_S

TimeLike = int | dt.datetime | dt.date | pd.Timestamp | np.datetime64 | str
"""What time arguments accept: int ns UTC, datetimes, dates, Timestamps, ISO strings."""

# Sanity window for int ns inputs: catches seconds or milliseconds passed as ns.
MIN_SANE_NS = 631_152_000 * NS_PER_S  # 1990-01-01
MAX_SANE_NS = 4_102_444_800 * NS_PER_S  # 2100-01-01


_DAY_FIRST = re.compile(
    r"^(?P<d>\d{1,2})/(?P<m>\d{1,2})/(?P<y>\d{4})"
    r"(?:[ T](?P<H>\d{1,2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?:[.,](?P<f>\d{1,9}))?)?)?$"
)
_ISO_START = re.compile(r"^\d{4}-\d{2}(-\d{2})?([ T]|$)")
ACCEPTED_TIMES = (
    "ISO 8601 such as 2025-11-03, 2025-11-03T10:30 or 2025-11-03T13:30Z, B3's day-first "
    "DD/MM/YYYY [HH:MM[:SS.fff]] such as 03/11/2025 10:30, 'now', 'today', or int nanoseconds"
)


def _parse_time_string(text: str, tz: ZoneInfo, name: str) -> pd.Timestamp:
    """A time string as a Timestamp (naive unless it carries an offset)."""
    value = text.strip()
    if value.lower() in ("now", "today"):
        now = pd.Timestamp.now(tz=tz)
        return now if value.lower() == "now" else now.normalize()
    if m := _DAY_FIRST.match(value):
        try:
            return pd.Timestamp(
                year=int(m["y"]), month=int(m["m"]), day=int(m["d"]), hour=int(m["H"] or 0),
                minute=int(m["M"] or 0), second=int(m["S"] or 0),
                nanosecond=0,
            ) + pd.Timedelta(int((m["f"] or "0").ljust(9, "0")), unit="ns")  # fmt: skip
        except ValueError as exc:
            raise QueryError(
                f"{name}: {text!r} is not a valid date: slashed dates are read day first, "
                f"DD/MM/YYYY, as B3 writes them ({exc}); or use ISO 8601 (YYYY-MM-DD)"
            ) from None
    if not _ISO_START.match(value):
        raise QueryError(f"{name}: cannot read {text!r} as a time; use {ACCEPTED_TIMES}")
    try:
        return pd.Timestamp(value)
    except ValueError:
        raise QueryError(f"{name}: cannot read {text!r} as a time; use {ACCEPTED_TIMES}") from None


def now_ns() -> int:
    import time

    return time.time_ns()


def to_ns(value: Any, tz: ZoneInfo, *, name: str = "time") -> int:
    """Convert one time argument to int ns UTC. Naive values are in ``tz``."""
    if isinstance(value, bool):
        raise QueryError(f"{name}: expected a time, got a bool")
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)  # int nanoseconds, as typed on a command line
    if isinstance(value, str):
        value = _parse_time_string(value, tz, name)
    if isinstance(value, np.datetime64):
        value = pd.Timestamp(value)
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        value = dt.datetime.combine(value, dt.time(0))
    if isinstance(value, dt.datetime):  # includes pd.Timestamp
        ts = pd.Timestamp(value)
        if pd.isna(ts):
            raise QueryError(f"{name}: NaT is not a time")
        ts = ts.tz_localize(tz) if ts.tzinfo is None else ts
        return int(ts.value)
    raise QueryError(
        f"{name}: expected int ns, datetime, Timestamp or ISO string, got {type(value).__name__}"
    )


def trading_days(ts_ns: npt.NDArray[np.int64], tz: ZoneInfo) -> npt.NDArray[np.int64]:
    """The local calendar date of each time, as days since 1970-01-01.

    Vectorised: the UTC offset is looked up once when the span has no offset
    change (true for any batch in Brazil since 2019), else per element.
    """
    if ts_ns.size == 0:
        return np.empty(0, dtype=np.int64)
    lo, hi = int(ts_ns.min()), int(ts_ns.max())
    off_lo, off_hi = _offset_ns(lo, tz), _offset_ns(hi, tz)
    if off_lo == off_hi and hi - lo < 32 * NS_PER_DAY:
        return (ts_ns + off_lo) // NS_PER_DAY
    local = pd.DatetimeIndex(ts_ns.view("M8[ns]"), tz="UTC").tz_convert(tz).tz_localize(None)
    return np.asarray(local.asi8, dtype=np.int64) // NS_PER_DAY


def trading_day(ts_ns: int, tz: ZoneInfo) -> int:
    return (ts_ns + _offset_ns(ts_ns, tz)) // NS_PER_DAY


def _offset_ns(ts_ns: int, tz: ZoneInfo) -> int:
    return _offset_of_quarter_hour(ts_ns // (900 * NS_PER_S), tz)


@functools.lru_cache(maxsize=4096)
def _offset_of_quarter_hour(quarter: int, tz: ZoneInfo) -> int:
    """UTC offset in a 15-minute slot (offset changes fall on such boundaries)."""
    utc = dt.datetime.fromtimestamp(quarter * 900, dt.UTC)
    off = utc.astimezone(tz).utcoffset()
    assert off is not None
    return int(off.total_seconds()) * NS_PER_S


def format_ns(ts_ns: int, tz: ZoneInfo) -> str:
    """Human form of a time in the exchange zone, with ms: 2025-11-03 10:30:00.123."""
    return pd.Timestamp(ts_ns, tz="UTC").tz_convert(tz).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _day_offsets(days: npt.NDArray[np.int64], tz: ZoneInfo) -> npt.NDArray[np.int64]:
    """UTC offset of ``tz`` at 12:00 UTC of each date (days since the epoch)."""
    lo, hi = int(days.min()), int(days.max())

    def offset(d: int) -> int:
        return _offset_ns(d * NS_PER_DAY + 12 * 3600 * NS_PER_S, tz)

    if lo == hi:
        return np.full(days.size, offset(lo), dtype=np.int64)
    if hi - lo <= 400:
        table = np.array([offset(d) for d in range(lo, hi + 1)], dtype=np.int64)
        return table[days - lo]
    distinct, index = np.unique(days, return_inverse=True)
    return np.array([offset(int(d)) for d in distinct], dtype=np.int64)[index]


def local_to_utc_ns(local_ns: npt.NDArray[np.int64], tz: ZoneInfo) -> npt.NDArray[np.int64]:
    """Wall-clock times of ``tz`` (ns since the epoch, as if UTC) to ns UTC, vectorised.

    The offset of each local date is the one in force at 12:00 UTC of that date
    (09:00 in São Paulo): exact for exchange hours, since Brazil's offset never
    changed in the middle of a trading session.
    """
    if local_ns.size == 0:
        return local_ns.astype(np.int64)
    return local_ns - _day_offsets(local_ns // NS_PER_DAY, tz)


def utc_offsets_ns(ts_ns: npt.NDArray[np.int64], tz: ZoneInfo) -> npt.NDArray[np.int64]:
    """The UTC offset of ``tz`` at each time, taken per UTC date like ``local_to_utc_ns``."""
    if ts_ns.size == 0:
        return np.empty(0, dtype=np.int64)
    return _day_offsets(ts_ns // NS_PER_DAY, tz)
