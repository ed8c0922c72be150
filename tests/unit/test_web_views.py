"""The dashboard's view models (pure): candles, 5-minute metrics, position and PnL,
history profiles, regime changes, warnings, and the safe-default address check."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pytest

from hypothesis import given, settings
from hypothesis import strategies as st
from tickvault.errors import ConfigError
from tickvault.features.aggregates import build_session_aggregates
from tickvault.feeds.sim.generator import generate_trades
from tickvault.records.orders import Fill
from tickvault.records.trades import TradeType
from tickvault.timeutil import NS_PER_S
from tickvault.venue.b3 import B3_TZ
from tickvault.web import views
from tickvault.web.server import check_bind, is_loopback

T0 = 1_762_171_200_000_000_000  # 2025-11-03 12:00 UTC (09:00 in Sao Paulo)


@st.composite
def trades(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = draw(st.integers(1, 60))
    steps = draw(st.lists(st.integers(0, 3 * NS_PER_S), min_size=n, max_size=n))
    ts = T0 + np.cumsum(np.array(steps, dtype=np.int64))
    price = np.array(draw(st.lists(st.floats(100, 200), min_size=n, max_size=n)))
    qty = np.array(draw(st.lists(st.integers(1, 50), min_size=n, max_size=n)), dtype=np.int64)
    return ts, price, qty


@settings(max_examples=80, deadline=None)
@given(trades(), st.sampled_from([NS_PER_S, 60 * NS_PER_S]))
def test_bars_of_any_trades_keep_volume_order_and_ohlc_bounds(data, bar_ns) -> None:
    ts, price, qty = data
    out = views.bars(ts, price, qty, bar_ns, B3_TZ)
    assert sum(b["volume"] for b in out) == int(qty.sum())
    assert len(out) == len(np.unique(ts // bar_ns))
    times = [b["time"] for b in out]
    assert times == sorted(set(times))
    for b in out:
        assert b["low"] <= min(b["open"], b["close"]) <= max(b["open"], b["close"]) <= b["high"]
    assert out[0]["open"] == price[0] and out[-1]["close"] == price[-1]


def test_bar_times_are_the_exchange_wall_clock() -> None:
    out = views.bars(np.array([T0]), np.array([1.0]), np.array([1]), NS_PER_S, B3_TZ)
    shown = dt.datetime.fromtimestamp(out[0]["time"], dt.UTC)
    assert (shown.hour, shown.minute) == (9, 0)  # 12:00 UTC is 09:00 in Sao Paulo


def test_five_minute_metrics_count_only_the_last_five_minutes() -> None:
    ts = np.array([T0, T0 + 10 * 60 * NS_PER_S, T0 + 11 * 60 * NS_PER_S, T0 + 12 * 60 * NS_PER_S])
    price = np.array([50.0, 100.0, 101.0, 99.0])
    qty = np.array([1000, 2, 3, 5])
    buy, sell = TradeType.AGGRESSOR_BUY, TradeType.AGGRESSOR_SELL
    side = np.array([buy, buy, buy, sell], dtype=np.uint8)
    m = views.five_minute_metrics(ts, price, qty, side, int(ts[-1]) + 1)
    assert (m["trades"], m["volume"]) == (3, 10)
    assert m["price_change"] == pytest.approx(-1.0)
    assert m["avg_trade_size"] == pytest.approx(10 / 3)
    assert m["buy_sell_ratio"] == pytest.approx(5 / 5)
    empty = views.five_minute_metrics(ts, price, qty, side, T0 - 1)
    assert empty["trades"] == 0 and empty["buy_sell_ratio"] is None


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.integers(-3, 3).filter(bool), st.integers(90, 110)), max_size=20))
def test_position_of_any_fills_then_flattening_has_no_open_pnl(legs) -> None:
    fills = [Fill(i, "WINZ25", i, i, float(p), q, 0.5) for i, (q, p) in enumerate(legs)]
    qty = sum(q for q, _ in legs)
    pos = views.position(fills, 100.0, 0.2)
    assert pos.qty == qty
    closing = fills + ([Fill(99, "WINZ25", 99, 99, 100.0, -qty, 0.5)] if qty else [])
    flat = views.position(closing, 100.0, 0.2)
    assert flat.qty == 0 and flat.open_pnl == 0
    # flat: the PnL is the cash flow of the fills (sells in, buys out) less fees
    cash = sum(-f.qty * f.price * 0.2 - f.fee for f in closing)
    assert flat.total == pytest.approx(cash, abs=1e-6)
    # marked at the same price, the total does not depend on whether the position was closed
    assert pos.total == pytest.approx(flat.total + (0.5 if qty else 0), abs=1e-6)


def test_history_of_simulated_sessions_has_one_row_per_session_and_profile_buckets() -> None:
    batch = generate_trades("WINZ25", 6000, trades_per_day=2000, seed=2)
    days = sorted({dt.datetime.fromtimestamp(t / 1e9, B3_TZ).date()
                   for t in batch.ts_event[::500].tolist()})  # fmt: skip
    aggs = [build_session_aggregates("WINZ25", d, batch) for d in days]
    h = views.history(aggs)
    assert [s["date"] for s in h["sessions"]] == [d.isoformat() for d in days]
    assert sum(s["volume"] for s in h["sessions"]) == int(batch.qty.sum())
    assert all(s["volatility"] is not None and s["volatility"] > 0 for s in h["sessions"])
    assert h["profile"][0]["clock"] == "09:00"
    assert all(b["minute"] % views.BUCKET_MIN == 0 for b in h["profile"])
    total = sum(b["volume"] * b["sessions"] for b in h["profile"])
    assert total == pytest.approx(int(batch.qty.sum()))


def test_regime_changes_keep_only_the_points_where_the_label_changes() -> None:
    t = np.arange(6, dtype=np.int64)
    out = views.regime_changes(t, ["a", "a", "b", "b", "a", "unknown"])
    assert [(c["T_ns"], c["regime"]) for c in out] == [(0, "a"), (2, "b"), (4, "a"), (5, "unknown")]


def test_warnings_name_a_full_bridge_a_lossy_one_and_a_late_model_worker() -> None:
    now = T0
    statuses = {
        "bridge:h:1": {"updated_ns": str(now), "held_bytes": "90", "max_held_bytes": "100",
                       "lost_messages": "3", "lag_p99_ms": "250"},
        "bridge:h:2": {"updated_ns": str(now - 60 * NS_PER_S), "held_bytes": "99",
                       "max_held_bytes": "100"},
    }  # fmt: skip
    rows = views.bridges(statuses, now)
    assert [r["stale"] for r in rows] == [False, True]
    w = views.warnings(rows, [{"symbol": "WINZ25", "behind_s": 30.0}])
    assert len(w) == 4
    assert any("90%" in x for x in w) and any("3 messages lost" in x for x in w)
    assert any("250 ms" in x for x in w) and any("WINZ25" in x for x in w)
    assert all("bridge:h:2" not in x for x in w)  # a stale report warns of nothing


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"])
def test_check_bind_on_this_machine_needs_no_token(host: str) -> None:
    assert is_loopback(host)
    check_bind(host, None)


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "::", "dash.example"])
def test_check_bind_on_another_address_without_token_refuses_saying_why(host: str) -> None:
    with pytest.raises(ConfigError, match="dashboard_token"):
        check_bind(host, None)
    check_bind(host, "s3cret")


def test_finite_turns_nan_into_none() -> None:
    assert views.finite(math.nan) is None and views.finite(1.5) == 1.5
