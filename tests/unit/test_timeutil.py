"""Time arguments become int ns UTC; naive times are in the exchange zone."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest

from tickvault import QueryError
from tickvault.timeutil import to_ns, trading_days

SP = ZoneInfo("America/Sao_Paulo")
T = 1_762_175_400_000_000_000  # 2025-11-03 13:10 UTC == 10:10 in Sao Paulo


@pytest.mark.parametrize(
    "value",
    [
        T,
        np.int64(T),
        dt.datetime(2025, 11, 3, 10, 10),  # naive: exchange time
        dt.datetime(2025, 11, 3, 13, 10, tzinfo=dt.UTC),
        pd.Timestamp("2025-11-03 13:10", tz="UTC"),
        pd.Timestamp("2025-11-03 10:10"),
        "2025-11-03T10:10",
        "2025-11-03T13:10Z",
        str(T),
        np.datetime64("2025-11-03T10:10"),
        "03/11/2025 10:10",  # B3's day-first form
        "3/11/2025 10:10:00.000",
        "2025-11-03 10:10:00-03:00",
    ],
)
def test_to_ns_accepts_every_time_form(value: object) -> None:
    assert to_ns(value, SP) == T


def test_to_ns_rejects_nonsense() -> None:
    with pytest.raises(QueryError, match="start"):
        to_ns("yesterday-ish", SP, name="start")
    with pytest.raises(QueryError):
        to_ns(3.5, SP)


@pytest.mark.parametrize("value", ["12-01-2026", "1.12.2026", "Dec 1 2026", "01/12/26"])
def test_to_ns_refuses_ambiguous_day_month_forms_naming_the_accepted_ones(value: str) -> None:
    with pytest.raises(QueryError, match=r"--start.*DD/MM/YYYY.*ISO 8601|ISO 8601.*DD/MM/YYYY"):
        to_ns(value, SP, name="--start")


def test_slashed_dates_are_day_first_as_b3_writes_them() -> None:
    assert to_ns("01/12/2026", SP) == to_ns("2026-12-01", SP)
    with pytest.raises(QueryError, match="day first"):
        to_ns("12/13/2026", SP)  # month 13: a US-style date is refused, not swapped


def test_today_is_midnight_in_the_exchange_zone() -> None:
    today = pd.Timestamp(to_ns("today", SP), tz="UTC").tz_convert(SP)
    assert (today.hour, today.minute, today.second) == (0, 0, 0)
    assert today.date() == pd.Timestamp.now(tz=SP).date()


def test_trading_days_match_local_dates_across_dst() -> None:
    # Brazil had daylight saving until 2019: a batch spanning a change uses per-row offsets.
    ts = pd.date_range("2018-10-01", "2018-12-01", freq="7h", tz="UTC").asi8
    expected = (
        pd.DatetimeIndex(ts, tz="UTC").tz_convert(SP).tz_localize(None).asi8 // 86_400_000_000_000
    )
    np.testing.assert_array_equal(trading_days(np.asarray(ts), SP), expected)
