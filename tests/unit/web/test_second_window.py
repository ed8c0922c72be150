"""``web.views.SecondWindow`` (live Market pages read only new trades): fed in any
chunks, its candles and its 5-minute metrics are those of the whole trades at once."""

from __future__ import annotations

import datetime as dt

import numpy as np

from hypothesis import given, settings
from hypothesis import strategies as st
from tickvault.records.trades import TradeType
from tickvault.timeutil import NS_PER_S
from tickvault.web import views

TZ = dt.timezone(dt.timedelta(hours=-3))
T0 = 1_764_590_400 * NS_PER_S


@st.composite
def trades(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[int]]:
    n = draw(st.integers(1, 300))
    gaps = draw(st.lists(st.integers(0, 3 * NS_PER_S), min_size=n, max_size=n))
    ts = T0 + np.cumsum(np.asarray(gaps, dtype=np.int64))
    price = np.asarray(draw(st.lists(st.integers(1, 50), min_size=n, max_size=n)), float) * 5.0
    qty = np.asarray(draw(st.lists(st.integers(1, 20), min_size=n, max_size=n)), np.int64)
    side = draw(st.lists(st.sampled_from([TradeType.AGGRESSOR_BUY, TradeType.AGGRESSOR_SELL,
                                          TradeType.UNKNOWN]), min_size=n, max_size=n))  # fmt: skip
    cuts = sorted(set(draw(st.lists(st.integers(1, n), max_size=6))))
    return ts, price, qty, np.asarray(side, np.uint8), cuts


@settings(max_examples=150, deadline=None)
@given(trades())
def test_fed_in_chunks_it_gives_the_candles_and_metrics_of_all_the_trades(case) -> None:
    ts, price, qty, side, cuts = case
    w = views.SecondWindow()
    one_s: dict[int, dict] = {}
    one_m: dict[int, dict] = {}
    for a, b in zip([0, *cuts], [*cuts, len(ts)], strict=True):
        if a == b:
            continue
        got_s, got_m = w.bars(w.add(ts[a:b], price[a:b], qty[a:b], side[a:b]), TZ)
        one_s.update({bar["time"]: bar for bar in got_s})
        one_m.update({bar["time"]: bar for bar in got_m})
    # every candle sent (the latest version of each) is the candle of all the trades,
    # for the seconds and minutes the window still holds
    held = min(w.secs)
    full_s = {b["time"]: b for b in views.bars(ts, price, qty, NS_PER_S, TZ)}
    full_m = {b["time"]: b for b in views.bars(ts[ts // NS_PER_S >= held // 60 * 60],
                                                price[ts // NS_PER_S >= held // 60 * 60],
                                                qty[ts // NS_PER_S >= held // 60 * 60],
                                                60 * NS_PER_S, TZ)}  # fmt: skip
    off = views.wall_s(int(ts[-1]), TZ) - int(ts[-1] // NS_PER_S)
    for t, bar in one_s.items():
        if t - off >= held:
            assert bar == full_s[t]
    assert one_m[max(one_m)] == full_m[max(full_m)]
    # the metrics, with the window's end on a whole second, equal the exact ones
    end = (int(ts[-1]) // NS_PER_S + 1) * NS_PER_S
    assert w.metrics(end) == views.five_minute_metrics(ts, price, qty, side, end)


def test_it_holds_five_minutes_and_a_minute_of_seconds_at_most() -> None:
    w = views.SecondWindow()
    ts = T0 + np.arange(3_600, dtype=np.int64) * NS_PER_S
    w.add(ts, np.full(ts.size, 100.0), np.ones(ts.size, np.int64),
          np.zeros(ts.size, np.uint8))  # fmt: skip
    assert len(w.secs) == 361 and max(w.secs) - min(w.secs) == 360
