"""The three history features against an independent plain-pandas computation.

The reference works on raw trades (no aggregates, no minute arrays): local clock
times via pandas' tz conversion, buckets by groupby, p(t) by masking, previous
sessions from the conftest's own list of B3 days (weekends and 2025-11-20 left out).
"""

from __future__ import annotations

import datetime as dt
import itertools
import math

import numpy as np
import pandas as pd
import pytest

from tickvault.errors import QueryError
from tickvault.features import (
    HistoryParams,
    build_session_aggregates,
    history_at,
    history_features,
)
from tickvault.records.trades import TradeBatch

SYMBOL = "WINZ25"
SP = "America/Sao_Paulo"
MIN = pd.Timedelta("1min")


def _frame(batch: TradeBatch) -> pd.DataFrame:
    df = pd.DataFrame(
        {
            "ts": batch.ts_event,
            "recv": batch.ts_recv,
            "id": batch.trade_id,
            "price": batch.price,
            "qty": batch.qty,
        }
    ).sort_values(["ts", "id"], kind="stable")
    df["clock"] = pd.to_datetime(df["ts"], utc=True).dt.tz_convert(SP)
    return df.reset_index(drop=True)


def _at(day: dt.date, minutes_after_open: float) -> pd.Timestamp:
    return pd.Timestamp(day).tz_localize(SP) + pd.Timedelta(hours=9) + minutes_after_open * MIN


def _p(df: pd.DataFrame, t: pd.Timestamp) -> float:
    """Price of the last trade before t, the first trade when t is before it."""
    if df.empty:
        return math.nan
    before = df[df["clock"] < t]
    return float(before["price"].iloc[-1] if len(before) else df["price"].iloc[0])


def reference(
    frames: dict[dt.date, pd.DataFrame], day: dt.date, t_ns: int
) -> dict[str, float | str | None]:
    """The features at T, from the trades of ``frames`` (one DataFrame per session day)."""
    t = pd.Timestamp(t_ns, tz="UTC").tz_convert(SP)
    opened = _at(day, 0)
    k = int((t - opened) // MIN)
    t_g = opened + k * MIN
    cur = frames[day]
    cur = cur[(cur["ts"] < t_g.value) & (cur["recv"] <= t_ns)]  # known, before the grid time
    prev_days = sorted(d for d in frames if d < day)
    out: dict[str, float | str | None] = {}

    # volume pattern: complete 5-min buckets in [max(open, T_g - 3h), T_g)
    lo = max(0, k - 180)
    buckets = list(range(-(-lo // 5), k // 5))

    def bucket_volume(df: pd.DataFrame, d: dt.date) -> pd.Series:
        minute = ((df["clock"] - _at(d, 0)) // MIN).astype(int)
        return df.groupby(minute // 5)["qty"].sum().reindex(buckets, fill_value=0).astype(float)

    x = bucket_volume(cur, day)
    y = bucket_volume(frames[prev_days[-1]], prev_days[-1])
    out["volume_pattern_similarity"] = float(x.corr(y)) if len(buckets) >= 3 else math.nan
    out["volume_ratio_prev_session"] = (
        float(x.sum() / y.sum()) if buckets and y.sum() > 0 else math.nan
    )

    # momentum percentile among the previous 20 sessions
    def mom(df: pd.DataFrame, d: dt.date) -> float:
        return float(np.log(_p(df, _at(d, k)) / _p(df, _at(d, k - 30))))

    m = mom(cur, day) if len(cur) else math.nan
    ms = pd.Series([mom(frames[d], d) for d in prev_days[-20:]]).dropna()
    out["momentum_30min"] = m
    out["historical_momentum_percentile"] = (
        100.0 * ((ms < m).sum() + 0.5 * (ms == m).sum()) / len(ms)
        if len(ms) >= 5 and not math.isnan(m)
        else math.nan
    )

    # volatility regime against the previous 30 sessions
    def rv(df: pd.DataFrame, d: dt.date) -> float:
        prices = [_p(df, _at(d, k - j)) for j in range(30, -1, -1)]
        return math.sqrt(sum(math.log(b / a) ** 2 for a, b in itertools.pairwise(prices)))

    rv_now = rv(cur, day) if len(cur) else math.nan
    logs = pd.Series([math.log(v) for d in prev_days[-30:] if (v := rv(frames[d], d)) > 0])
    out["rv_30min"] = rv_now
    z = math.nan
    if len(logs) >= 5 and rv_now > 0 and logs.std() > 0:
        z = (math.log(rv_now) - logs.mean()) / logs.std()
    out["volatility_regime_score"] = z
    out["volatility_regime"] = None if math.isnan(z) else (
        "low" if z < -1 else "high" if z > 1 else "normal"
    )  # fmt: skip
    return out


def _records(history: dict[dt.date, TradeBatch]) -> TradeBatch:
    return TradeBatch.concat(list(history.values()))


@pytest.fixture(scope="module")
def frames(history: dict[dt.date, TradeBatch]) -> dict[dt.date, pd.DataFrame]:
    return {d: _frame(b) for d, b in history.items()}


@pytest.fixture(scope="module")
def records(history: dict[dt.date, TradeBatch]) -> TradeBatch:
    return _records(history)


def _assert_same(got: dict[str, float | str | None], want: dict[str, float | str | None]) -> None:
    assert set(got) == set(want)
    for name, w in want.items():
        g = got[name]
        if isinstance(w, float) and math.isnan(w):
            assert isinstance(g, float) and math.isnan(g), name
        elif isinstance(w, float):
            assert g == pytest.approx(w, rel=1e-9, abs=1e-12), name
        else:
            assert g == w, name


# Friday after the Thursday holiday, a Monday, an ordinary Tuesday, an early day
DAYS = [dt.date(2025, 11, 21), dt.date(2025, 11, 24), dt.date(2025, 11, 25), dt.date(2025, 10, 9)]
MINUTES = [0, 0.5, 1, 7, 14.9, 29, 31, 95.25, 181, 183, 400, 564, 565]


@pytest.mark.parametrize("day", DAYS)
@pytest.mark.parametrize("minutes", MINUTES)
def test_history_features_match_the_pandas_reference(
    records: TradeBatch, frames: dict[dt.date, pd.DataFrame], day: dt.date, minutes: float
) -> None:
    t_ns = _at(day, minutes).value
    _assert_same(history_at(SYMBOL, records, t_ns), reference(frames, day, t_ns))


def test_history_features_take_friday_as_mondays_previous_session(
    history: dict[dt.date, TradeBatch],
) -> None:
    monday, friday, holiday = dt.date(2025, 11, 24), dt.date(2025, 11, 21), dt.date(2025, 11, 20)
    t_ns = _at(monday, 200).value
    cur = build_session_aggregates(SYMBOL, monday, history[monday])
    fridays = build_session_aggregates(SYMBOL, friday, history[friday])
    with_friday = history_features(SYMBOL, t_ns, cur, {friday: fridays})
    # aggregates filed under the holiday (or the weekend) are never read
    misfiled = history_features(
        SYMBOL, t_ns, cur, {holiday: fridays, dt.date(2025, 11, 23): fridays}
    )
    assert isinstance(with_friday["volume_pattern_similarity"], float)
    assert not math.isnan(with_friday["volume_pattern_similarity"])
    assert math.isnan(float(misfiled["volume_pattern_similarity"] or 0.0))


def test_history_features_with_fewer_than_five_sessions_are_nan(
    records: TradeBatch, days: list[dt.date]
) -> None:
    day = days[3]  # three sessions before it
    got = history_at(SYMBOL, records, _at(day, 300).value)
    assert math.isnan(float(got["historical_momentum_percentile"] or 0.0))
    assert math.isnan(float(got["volatility_regime_score"] or 0.0))
    assert got["volatility_regime"] is None
    assert not math.isnan(float(got["volume_pattern_similarity"] or math.nan))


def test_history_features_between_minutes_equal_the_last_minute_boundary(
    history: dict[dt.date, TradeBatch], days: list[dt.date]
) -> None:
    day = dt.date(2025, 11, 25)
    cur = build_session_aggregates(SYMBOL, day, history[day])
    prev = {d: build_session_aggregates(SYMBOL, d, history[d]) for d in days if d < day}
    on_grid = history_features(SYMBOL, _at(day, 250).value, cur, prev)
    inside = history_features(SYMBOL, _at(day, 250.99).value, cur, prev)
    assert on_grid == inside


def test_complete_and_partial_aggregates_give_the_same_features_at_t(
    history: dict[dt.date, TradeBatch], days: list[dt.date]
) -> None:
    day = dt.date(2025, 11, 25)
    prev = {d: build_session_aggregates(SYMBOL, d, history[d]) for d in days if d < day}
    complete = build_session_aggregates(SYMBOL, day, history[day])
    for minutes in (0.5, 3.2, 45.5, 300.7):
        t_ns = _at(day, minutes).value
        partial = build_session_aggregates(SYMBOL, day, history[day], as_of_ns=t_ns)
        a = history_features(SYMBOL, t_ns, complete, prev)
        b = history_features(SYMBOL, t_ns, partial, prev)
        assert str(a) == str(b)  # NaN-aware equality


def test_history_features_before_the_first_trade_are_nan(
    history: dict[dt.date, TradeBatch], days: list[dt.date]
) -> None:
    day = dt.date(2025, 11, 25)
    late = history[day].take(np.flatnonzero(history[day].ts_event >= _at(day, 120).value))
    cur = build_session_aggregates(SYMBOL, day, late)
    prev = {d: build_session_aggregates(SYMBOL, d, history[d]) for d in days if d < day}
    got = history_features(SYMBOL, _at(day, 60).value, cur, prev)
    for name in ("momentum_30min", "historical_momentum_percentile", "rv_30min",
                 "volatility_regime_score"):  # fmt: skip
        assert math.isnan(float(got[name] or 0.0)), name
    assert got["volume_ratio_prev_session"] == 0.0  # no volume yet, some the day before


def test_history_features_outside_the_session_are_a_clear_error(records: TradeBatch) -> None:
    with pytest.raises(QueryError, match="outside every WINZ25 session"):
        history_at(SYMBOL, records, _at(dt.date(2025, 11, 20), 60).value)  # the holiday
    with pytest.raises(QueryError, match="outside every WINZ25 session"):
        history_at(SYMBOL, records, _at(dt.date(2025, 11, 25), 566).value)  # after the close


def test_history_features_refuse_aggregates_older_than_t(
    history: dict[dt.date, TradeBatch],
) -> None:
    day = dt.date(2025, 11, 25)
    stale = build_session_aggregates(SYMBOL, day, history[day], as_of_ns=_at(day, 10).value)
    with pytest.raises(QueryError, match="rebuild them as of T"):
        history_features(SYMBOL, _at(day, 20).value, stale, {})


def test_history_params_with_a_window_longer_than_the_history_give_nan(
    records: TradeBatch,
) -> None:
    params = HistoryParams(momentum_sessions=200, volatility_sessions=200, min_sessions=100)
    got = history_at(SYMBOL, records, _at(dt.date(2025, 11, 25), 300).value, params=params)
    assert math.isnan(float(got["historical_momentum_percentile"] or 0.0))
    assert math.isnan(float(got["volatility_regime_score"] or 0.0))


def test_history_params_refuse_a_zero_window() -> None:
    with pytest.raises(QueryError, match="bucket_min must be >= 1"):
        HistoryParams(bucket_min=0)
