"""B3 sessions: calendar days from exchange_calendars, hours per symbol, pure look-ups."""

from __future__ import annotations

import datetime as dt

import pytest

from hypothesis import given
from hypothesis import strategies as st
from tickvault.errors import QueryError
from tickvault.venue import b3

NS = 1_000_000_000
HOLIDAY = dt.date(2025, 11, 20)  # Dia da Consciência Negra: B3 closed


def _weekdays(start: dt.date, end: dt.date) -> list[dt.date]:
    days, d = [], start
    while d <= end:
        if d.weekday() < 5:
            days.append(d)
        d += dt.timedelta(days=1)
    return days


def test_sessions_in_november_2025_skip_weekends_and_the_holiday() -> None:
    start, end = dt.date(2025, 11, 3), dt.date(2025, 11, 28)
    expected = [d for d in _weekdays(start, end) if d != HOLIDAY]
    assert b3.sessions("WINZ25", start, end) == expected
    assert not b3.is_session(HOLIDAY)
    assert not b3.is_session(dt.date(2025, 11, 22))  # a Saturday


def test_previous_session_of_a_monday_is_the_friday_and_skips_the_holiday() -> None:
    assert b3.previous_sessions("WINZ25", dt.date(2025, 11, 24), 1) == [dt.date(2025, 11, 21)]
    assert b3.previous_sessions("WINZ25", dt.date(2025, 11, 21), 2) == [
        dt.date(2025, 11, 18),
        dt.date(2025, 11, 19),
    ]
    assert b3.previous_sessions("WINZ25", dt.date(2025, 11, 21), 0) == []


def test_futures_session_is_0900_to_1825_sao_paulo() -> None:
    s = b3.session("WINZ25", dt.date(2025, 11, 19))
    # 09:00 in Sao Paulo (UTC-3) is 12:00 UTC
    assert s.open_ns == int(dt.datetime(2025, 11, 19, 12, 0, tzinfo=dt.UTC).timestamp()) * NS
    assert s.close_ns == int(dt.datetime(2025, 11, 19, 21, 25, tzinfo=dt.UTC).timestamp()) * NS
    assert b3.session_open_ns("WDOF26", dt.date(2025, 11, 19)) == s.open_ns
    assert b3.session_close_ns("WINSIM", dt.date(2025, 11, 19)) == s.close_ns


def test_equity_session_is_1000_to_1755_and_custom_hours_override_it() -> None:
    s = b3.session("PETR4", dt.date(2025, 11, 19))
    assert s.close_ns - s.open_ns == (7 * 3600 + 55 * 60) * NS
    custom = b3.SessionHours(dt.time(9, 30), dt.time(16, 0))
    c = b3.session("PETR4", dt.date(2025, 11, 19), custom)
    assert c.open_ns == s.open_ns - 30 * 60 * NS


def test_ash_wednesday_opens_at_1300_for_futures_too() -> None:
    s = b3.session("WINH25", dt.date(2025, 3, 5))
    regular = b3.session("WINH25", dt.date(2025, 3, 6))
    assert (s.open_ns - regular.open_ns) % (86_400 * NS) == 4 * 3600 * NS
    assert s.close_ns - regular.close_ns == -86_400 * NS


def test_session_of_includes_open_and_close_and_nothing_outside() -> None:
    s = b3.session("WINZ25", dt.date(2025, 11, 19))
    assert b3.session_of("WINZ25", s.open_ns) == s
    assert b3.session_of("WINZ25", s.close_ns) == s
    assert b3.session_of("WINZ25", s.open_ns - 1) is None
    assert b3.session_of("WINZ25", s.close_ns + 1) is None
    holiday_noon = s.open_ns + 86_400 * NS + 3 * 3600 * NS
    assert b3.session_of("WINZ25", holiday_noon) is None


@given(st.integers(0, 40 * 86_400).map(lambda s: 1_760_000_000 * NS + s * NS))
def test_session_of_agrees_with_sessions_and_bounds(ts: int) -> None:
    found = b3.session_of("WINZ25", ts)
    day = dt.datetime.fromtimestamp(ts / NS, b3.B3_TZ).date()
    if found is None:
        assert not b3.is_session(day) or not b3.session("WINZ25", day).contains(ts)
    else:
        assert found.date == day
        assert b3.sessions("WINZ25", day, day) == [day]
        assert found.open_ns <= ts <= found.close_ns


def test_unknown_symbol_without_hours_is_a_clear_error() -> None:
    with pytest.raises(QueryError, match=r"no default session hours.*hours=SessionHours"):
        b3.session("XYZ", dt.date(2025, 11, 19))


def test_a_holiday_is_not_a_session_error_names_the_date() -> None:
    with pytest.raises(QueryError, match="2025-11-20 is not a B3 trading session"):
        b3.session("WINZ25", HOLIDAY)


def test_dates_outside_the_calendar_are_refused() -> None:
    with pytest.raises(QueryError, match="outside the B3 calendar"):
        b3.sessions("WINZ25", dt.date(1999, 1, 1), dt.date(1999, 2, 1))


def test_session_hours_must_open_before_they_close() -> None:
    with pytest.raises(QueryError, match="must be before close"):
        b3.SessionHours(dt.time(18, 0), dt.time(9, 0))
