"""The intraday set's definitions, checked against brute-force pandas at random T."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pandas as pd
import pytest

from hypothesis import given, settings
from hypothesis import strategies as st
from tickvault.features import BookTops, FeatureSet, forward_return_labels, is_label, label_name
from tickvault.features.base import window_label
from tickvault.features.intraday import default_features
from tickvault.feeds.sim.generator import generate_day
from tickvault.records.trades import TradeBatch

SYMBOL = "WINZ25"
NS = 1_000_000_000
DAY = dt.date(2025, 11, 19)
OPEN = int(pd.Timestamp("2025-11-19 09:00", tz="America/Sao_Paulo").value)
CLOSE = OPEN + 565 * 60 * NS
LARGE = 6


@pytest.fixture(scope="module")
def two_days() -> TradeBatch:
    prev = generate_day(SYMBOL, dt.date(2025, 11, 18), 4000, seed=1)
    return TradeBatch.concat([prev, generate_day(SYMBOL, DAY, 8000, seed=2)])


def _reference(trades: TradeBatch, t: int) -> dict[str, float]:
    df = pd.DataFrame({c: getattr(trades, c) for c in ("ts_event", "price", "qty", "trade_type")})
    day_start = int(pd.Timestamp(pd.Timestamp(t, tz="UTC").tz_convert("America/Sao_Paulo").date())
                    .tz_localize("America/Sao_Paulo").value)  # fmt: skip
    day = df[(df.ts_event >= day_start) & (df.ts_event < t)]
    out: dict[str, float] = {}

    def p_before(x: int) -> float:
        rows = day[day.ts_event < x]
        return float(rows.price.iloc[-1]) if len(rows) else math.nan

    for w in (NS, 60 * NS, 300 * NS):
        out[f"ret_{window_label(w)}"] = math.log(p_before(t) / p_before(t - w))
    for w in (60 * NS, 300 * NS):
        if math.isnan(p_before(t - w)):
            out[f"rv_{window_label(w)}"] = math.nan
            continue
        path = day[day.ts_event < t].price.to_numpy()
        k0 = int((day.ts_event < t - w).sum()) - 1  # the reference trade
        r = np.diff(np.log(path[k0:]))
        out[f"rv_{window_label(w)}"] = math.sqrt(float((r * r).sum()))
    vwap = (day.price * day.qty).sum() / day.qty.sum() if len(day) else math.nan
    out["vwap"] = vwap
    out["vwap_dist_bps"] = 1e4 * (p_before(t) - vwap) / vwap
    win = day[day.ts_event >= t - 60 * NS]
    b = win.qty[win.trade_type == 2].sum()
    s = win.qty[win.trade_type == 3].sum()
    out["aggr_imbalance_1min"] = (b - s) / (b + s) if b + s else math.nan
    out["trade_intensity_1min"] = len(win) / 60.0
    out["avg_trade_size_1min"] = win.qty.mean() if len(win) else math.nan
    q = win.qty.sum()
    out["large_trade_share_1min"] = win.qty[win.qty >= LARGE].sum() / q if q else math.nan
    return out


@settings(max_examples=60, deadline=None)
@given(st.integers(OPEN - 600 * NS, CLOSE + 600 * NS))
def test_intraday_features_match_brute_force_pandas(two_days: TradeBatch, t: int) -> None:
    got = FeatureSet(default_features(LARGE)).at(two_days, [t]).iloc[0]
    for name, want in _reference(two_days, t).items():
        assert got[name] == pytest.approx(want, rel=1e-9, abs=1e-12, nan_ok=True), name


def test_intraday_features_before_the_days_first_trade_are_nan_or_zero(
    two_days: TradeBatch,
) -> None:
    row = FeatureSet().at(two_days, [OPEN - 30 * 60 * NS]).iloc[0]  # 08:30: yesterday is over
    for name in ("ret_1s", "ret_5min", "rv_1min", "vwap", "vwap_dist_bps", "aggr_imbalance_1min",
                 "avg_trade_size_1min", "large_trade_share_1min"):  # fmt: skip
        assert math.isnan(row[name]), name
    assert row["trade_intensity_1min"] == 0.0


def test_returns_are_nan_until_the_window_is_covered_by_the_day(two_days: TradeBatch) -> None:
    first = int(two_days.ts_event[two_days.ts_event >= OPEN - 3600 * NS][0])
    row = FeatureSet().at(two_days, [first + 120 * NS]).iloc[0]
    assert math.isnan(row["ret_5min"]) and math.isnan(row["rv_5min"])
    assert not math.isnan(row["ret_1min"]) and not math.isnan(row["rv_1min"])


def test_book_features_use_the_last_book_top_before_t() -> None:
    trades = generate_day(SYMBOL, DAY, 3, seed=3)
    book = BookTops(
        ts=np.array([OPEN, OPEN + NS], dtype=np.int64),
        bid_px=np.array([100.0, 101.0]),
        bid_qty=np.array([30, 10], dtype=np.int64),
        ask_px=np.array([102.0, 103.0]),
        ask_qty=np.array([10, 0], dtype=np.int64),
    )
    at = FeatureSet().at(trades, [OPEN, OPEN + NS, OPEN + NS + 1], book)
    assert math.isnan(at["spread"].iloc[0])  # nothing before T
    assert at["spread"].iloc[1] == 2.0
    assert at["book_imbalance"].iloc[1] == 0.5
    assert at["microprice"].iloc[1] == (102.0 * 30 + 100.0 * 10) / 40
    assert math.isnan(at["microprice"].iloc[2])  # the ask side is empty


def test_every_feature_has_a_definition_units_and_a_unique_name() -> None:
    fs = FeatureSet()
    described = fs.describe()
    assert len({d["name"] for d in described}) == len(described) == 14
    for d in described:
        assert d["definition"] and d["units"] and d["version"] == 1, d["name"]
        assert not is_label(str(d["name"]))


# ---- labels ------------------------------------------------------------------------


def test_forward_return_labels_use_trades_after_t_within_the_session() -> None:
    trades = generate_day(SYMBOL, DAY, 5000, seed=4)
    times = np.array([OPEN - NS, OPEN + 3600 * NS, CLOSE - 60 * NS], dtype=np.int64)
    labels = forward_return_labels(SYMBOL, trades, times, [60 * NS, 300 * NS])
    assert list(labels) == ["label_fwd_ret_1min", "label_fwd_ret_5min"]
    ts, price = trades.ts_event, trades.price

    def p(x: int) -> float:
        return float(price[ts < x][-1])

    t = int(times[1])
    assert labels["label_fwd_ret_1min"][1] == pytest.approx(math.log(p(t + 60 * NS) / p(t)))
    assert math.isnan(labels["label_fwd_ret_1min"][0])  # T before the open: not in a session
    assert not math.isnan(labels["label_fwd_ret_1min"][2])
    assert math.isnan(labels["label_fwd_ret_5min"][2])  # T + 5 min is after the close


def test_label_names_say_they_are_labels() -> None:
    assert label_name(300 * NS) == "label_fwd_ret_5min"
    assert is_label(label_name(NS)) and not is_label("ret_5min")
