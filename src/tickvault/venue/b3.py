"""B3 trading sessions (pure): which days trade, and when a symbol's session opens and closes.

Days come from the maintained ``exchange_calendars`` package, calendar ``BVMF``
(weekends, national and B3 holidays such as 2025-11-20, ad-hoc closures). Hours
are a per-symbol setting on top of those days, in America/Sao_Paulo:

- futures roots WIN, WDO, IND, DOL (any maturity: WINZ25, WDOF26, WINSIM...):
  09:00-18:25 (``FUTURES_HOURS``);
- equities (four letters and a one- or two-digit class, optionally ``F`` for the
  odd-lot market: PETR4, VALE3, BOVA11, PETR4F): 10:00-17:55 (``EQUITY_HOURS``);
- anything else has no default: pass ``hours=SessionHours(...)`` (a QueryError says so).

Where the calendar has a late open (Ash Wednesday opens at 13:00 for every
market) or an early close, the session opens at the later and closes at the
earlier of the symbol's hours and the calendar's time that day.

A time ``ts`` belongs to a session when ``open_ns <= ts <= close_ns`` (the close is
included: a print at exactly the close belongs to the session). Sessions are
looked up in a sorted array of the calendar's days, built once per process
(importing the calendar costs about a second, the first ``get_calendar`` call
0.2 s); every function here is then a pure function of its arguments. The
calendar covers 2000-01-03 to 2035-12-28; dates outside raise QueryError.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import warnings
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from tickvault.errors import QueryError
from tickvault.timeutil import NS_PER_S, trading_day

B3_TZ_NAME = "America/Sao_Paulo"
"""B3's time zone: the default of the ``exchange_tz`` setting and of every B3 fact here."""
B3_TZ = ZoneInfo(B3_TZ_NAME)
CALENDAR_NAME = "BVMF"
CALENDAR_START = "2000-01-01"
CALENDAR_END = "2035-12-31"
FUTURES_ROOTS = frozenset({"WIN", "WDO", "IND", "DOL"})
_EQUITY_RE = re.compile(r"^[A-Z]{4}\d{1,2}F?$")
_EPOCH = dt.date(1970, 1, 1)


@dataclass(frozen=True, slots=True)
class SessionHours:
    """A symbol's regular session, as local times of day in America/Sao_Paulo."""

    open: dt.time
    close: dt.time

    def __post_init__(self) -> None:
        if not self.open < self.close:
            raise QueryError(
                f"session hours: open {self.open} must be before close {self.close}; "
                "give times of one day in America/Sao_Paulo"
            )


FUTURES_HOURS = SessionHours(dt.time(9, 0), dt.time(18, 25))
EQUITY_HOURS = SessionHours(dt.time(10, 0), dt.time(17, 55))


@dataclass(frozen=True, slots=True)
class Session:
    """One trading session of one symbol: its local date and its bounds in ns UTC."""

    date: dt.date
    open_ns: int
    close_ns: int

    def contains(self, ts_ns: int) -> bool:
        return self.open_ns <= ts_ns <= self.close_ns


def default_hours(symbol: str) -> SessionHours:
    """The default hours of a symbol: futures roots 09:00-18:25, equities 10:00-17:55."""
    s = symbol.strip().upper()
    if s[:3] in FUTURES_ROOTS:
        return FUTURES_HOURS
    if _EQUITY_RE.match(s):
        return EQUITY_HOURS
    raise QueryError(
        f"no default session hours for symbol {symbol!r}: defaults exist for the futures "
        f"roots {', '.join(sorted(FUTURES_ROOTS))} and equities such as PETR4; "
        "pass hours=SessionHours(open, close)"
    )


@dataclass(frozen=True, slots=True)
class _Calendar:
    days: npt.NDArray[np.int64]
    """Session dates, as days since 1970-01-01, sorted."""
    late_open: dict[int, dt.time]
    early_close: dict[int, dt.time]


@functools.cache
def _calendar() -> _Calendar:
    with warnings.catch_warnings():
        # exchange_calendars 4.13 reads Series.values, deprecated by pandas 3.1
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        import exchange_calendars as xcals

        cal = xcals.get_calendar(CALENDAR_NAME, start=CALENDAR_START, end=CALENDAR_END)
    days = np.asarray(cal.sessions.asi8, dtype=np.int64) // (86_400 * NS_PER_S)

    def local_times(index: object, series: object) -> dict[int, dt.time]:
        out: dict[int, dt.time] = {}
        for day in index:  # type: ignore[attr-defined]
            ts = series[day].tz_convert(B3_TZ)  # type: ignore[index]
            out[(day.date() - _EPOCH).days] = ts.time()
        return out

    return _Calendar(
        days=days,
        late_open=local_times(cal.late_opens, cal.opens),
        early_close=local_times(cal.early_closes, cal.closes),
    )


def _day_number(day: dt.date) -> int:
    if not isinstance(day, dt.date) or isinstance(day, dt.datetime):
        raise QueryError(f"expected a date such as datetime.date(2025, 11, 3), got {day!r}")
    n = (day - _EPOCH).days
    days = _calendar().days
    if not int(days[0]) <= n <= int(days[-1]) + 7:
        raise QueryError(
            f"date {day} is outside the B3 calendar ({CALENDAR_START} to {CALENDAR_END}); "
            "ask for dates in that range"
        )
    return n


def _date(n: int) -> dt.date:
    return _EPOCH + dt.timedelta(days=n)


def is_session(day: dt.date) -> bool:
    """True when B3 trades on ``day`` (a local date)."""
    n = _day_number(day)
    days = _calendar().days
    i = int(np.searchsorted(days, n))
    return i < days.size and int(days[i]) == n


def sessions(symbol: str, start_date: dt.date, end_date: dt.date) -> list[dt.date]:
    """The session dates from ``start_date`` to ``end_date``, both included, oldest first."""
    lo, hi = _day_number(start_date), _day_number(end_date)
    _check_symbol(symbol)
    days = _calendar().days
    i = int(np.searchsorted(days, lo, side="left"))
    j = int(np.searchsorted(days, hi, side="right"))
    return [_date(int(d)) for d in days[i:j]]


def previous_sessions(symbol: str, session_date: dt.date, n: int) -> list[dt.date]:
    """The ``n`` sessions strictly before ``session_date``, oldest first.

    ``session_date`` need not be a session itself. Fewer than ``n`` come back only
    at the start of the calendar.
    """
    if n < 0:
        raise QueryError(f"previous_sessions: n must be >= 0, got {n}")
    _check_symbol(symbol)
    return list(_previous(_day_number(session_date), n))


@functools.lru_cache(maxsize=4096)
def _previous(day: int, n: int) -> tuple[dt.date, ...]:
    days = _calendar().days
    i = int(np.searchsorted(days, day, side="left"))
    return tuple(_date(int(d)) for d in days[max(0, i - n) : i])


def session(symbol: str, day: dt.date, hours: SessionHours | None = None) -> Session:
    """The session of ``symbol`` on ``day``; QueryError when B3 does not trade that day."""
    if not is_session(day):
        raise QueryError(
            f"{day} is not a B3 trading session (weekend or holiday); "
            "use sessions() or previous_sessions() to find one"
        )
    return _bounds(day, hours or default_hours(symbol))


def session_open_ns(symbol: str, day: dt.date, hours: SessionHours | None = None) -> int:
    return session(symbol, day, hours).open_ns


def session_close_ns(symbol: str, day: dt.date, hours: SessionHours | None = None) -> int:
    return session(symbol, day, hours).close_ns


def session_of(symbol: str, ts_ns: int, hours: SessionHours | None = None) -> Session | None:
    """The session that contains ``ts_ns`` (open <= ts <= close), or None outside any."""
    h = hours or default_hours(symbol)
    n = trading_day(int(ts_ns), B3_TZ)
    days = _calendar().days
    if not int(days[0]) <= n <= int(days[-1]):
        return None
    i = int(np.searchsorted(days, n))
    if i >= days.size or int(days[i]) != n:
        return None
    s = _bounds(_date(n), h)
    return s if s.contains(int(ts_ns)) else None


@functools.lru_cache(maxsize=65_536)
def _bounds(day: dt.date, hours: SessionHours) -> Session:
    cal = _calendar()
    n = (day - _EPOCH).days
    open_t, close_t = hours.open, hours.close
    if (late := cal.late_open.get(n)) is not None:
        open_t = max(open_t, late)
    if (early := cal.early_close.get(n)) is not None:
        close_t = min(close_t, early)
    if not open_t < close_t:  # a late open after this symbol's close: no trading
        close_t = open_t
    o = dt.datetime.combine(day, open_t, tzinfo=B3_TZ)
    c = dt.datetime.combine(day, close_t, tzinfo=B3_TZ)
    return Session(day, _ns(o), _ns(c))


def _ns(value: dt.datetime) -> int:
    delta = value - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return (delta.days * 86_400 + delta.seconds) * NS_PER_S + delta.microseconds * 1_000


def _check_symbol(symbol: str) -> None:
    if not isinstance(symbol, str) or not symbol.strip():
        raise QueryError(f"symbol must be a non-empty string such as 'WINZ25', got {symbol!r}")
