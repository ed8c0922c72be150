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
    ],
)
def test_to_ns_accepts_every_time_form(value: object) -> None:
    assert to_ns(value, SP) == T


def test_to_ns_rejects_nonsense() -> None:
    with pytest.raises(QueryError, match="start"):
        to_ns("yesterday-ish", SP, name="start")
    with pytest.raises(QueryError):
        to_ns(3.5, SP)


def test_trading_days_match_local_dates_across_dst() -> None:
    # Brazil had daylight saving until 2019: a batch spanning a change uses per-row offsets.
    ts = pd.date_range("2018-10-01", "2018-12-01", freq="7h", tz="UTC").asi8
    expected = (
        pd.DatetimeIndex(ts, tz="UTC").tz_convert(SP).tz_localize(None).asi8 // 86_400_000_000_000
    )
    np.testing.assert_array_equal(trading_days(np.asarray(ts), SP), expected)
