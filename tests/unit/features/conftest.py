"""Multi-day simulated history for the feature tests: weekends and the 2025-11-20 holiday.

The session days are listed here independently of the calendar package (weekdays
less B3's holidays of the span), and the venue tests check that the calendar
agrees, so the reference computations in these tests do not depend on the code
they check.
"""

from __future__ import annotations

import datetime as dt

import pytest

from tickvault.feeds.sim.generator import generate_day
from tickvault.records.trades import TradeBatch

SYMBOL = "WINZ25"
HOLIDAYS = {dt.date(2025, 11, 20)}  # no other B3 holiday falls on a weekday in this span
FIRST_DAY, LAST_DAY = dt.date(2025, 10, 6), dt.date(2025, 11, 25)
TRADES_PER_DAY = 3000


def session_days() -> list[dt.date]:
    days, d = [], FIRST_DAY
    while d <= LAST_DAY:
        if d.weekday() < 5 and d not in HOLIDAYS:
            days.append(d)
        d += dt.timedelta(days=1)
    return days


@pytest.fixture(scope="session")
def days() -> list[dt.date]:
    """The B3 sessions of the simulated span, oldest first."""
    return session_days()


@pytest.fixture(scope="session")
def history() -> dict[dt.date, TradeBatch]:
    """One simulated WIN session per B3 trading day, chained prices, live records."""
    out: dict[dt.date, TradeBatch] = {}
    price: float | None = None
    for i, day in enumerate(session_days()):
        # vary the activity so volume profiles and regimes differ between days
        n = TRADES_PER_DAY + (i * 397) % 1500
        batch = generate_day(SYMBOL, day, n, seed=i + 11, start_price=price)
        price = float(batch.price[-1])
        out[day] = batch
    return out
