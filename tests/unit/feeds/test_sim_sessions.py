"""The multi-day simulator: real B3 sessions, chained prices, seasonality and regimes that
the history features can find."""

from __future__ import annotations

import datetime as dt
import itertools

import numpy as np

from hypothesis import given, settings
from hypothesis import strategies as st
from tickvault.features import build_session_aggregates, history_features
from tickvault.features.aggregates import MINUTE_NS
from tickvault.feeds.sim.generator import simulate_session, simulate_sessions
from tickvault.venue.b3 import is_session, session

END = dt.date(2025, 12, 1)
PER_DAY = 8_000


def _history(n: int = 31, seed: int = 0) -> dict[dt.date, object]:
    return dict(simulate_sessions("WINZ25", n, end=END, trades_per_day=PER_DAY, seed=seed))


def test_simulate_sessions_plays_real_b3_sessions_with_prices_chained_across_days() -> None:
    days = simulate_sessions("WINZ25", 31, end=END, trades_per_day=PER_DAY)
    dates = list(days)
    assert len(dates) == 31 and dates[-1] == END
    assert dt.date(2025, 11, 20) not in dates  # Consciência Negra, a B3 holiday
    assert all(is_session(d) and d.weekday() < 5 for d in dates)
    for prev, cur in itertools.pairwise(dates):
        a, b = days[prev], days[cur]
        s = session("WINZ25", cur)
        assert (b.ts_event >= s.open_ns).all() and (b.ts_event <= s.close_ns).all()
        assert np.all(np.diff(b.ts_event) >= 0)
        # the next session opens within a few ticks of the previous close
        assert abs(float(b.price[0]) - float(a.price[-1])) <= 100 * 5.0


@settings(max_examples=10, deadline=None)
@given(n=st.integers(1, 8), extra=st.integers(0, 5), seed=st.integers(0, 3))
def test_a_session_has_the_same_content_whatever_the_span_asked(
    n: int, extra: int, seed: int
) -> None:
    short = simulate_sessions("WDOZ25", n, end=END, trades_per_day=500, seed=seed)
    long = simulate_sessions("WDOZ25", n + extra, end=END, trades_per_day=500, seed=seed)
    for d, batch in short.items():
        np.testing.assert_array_equal(batch.ts_event, long[d].ts_event)
        np.testing.assert_array_equal(batch.price, long[d].price)
    again = simulate_session("WDOZ25", END, trades_per_day=500, seed=seed)
    np.testing.assert_array_equal(again.price, short[END].price)


def test_intraday_activity_is_u_shaped_with_a_midday_lull() -> None:
    days = simulate_sessions("WINZ25", 10, end=END, trades_per_day=PER_DAY)
    per_minute = np.zeros(565)
    for d, b in days.items():
        agg = build_session_aggregates("WINZ25", d, b)
        per_minute += agg.count
    first_hour, lull, last_hour = (
        per_minute[:60].mean(),
        per_minute[210:270].mean(),
        (per_minute[-60:].mean()),
    )
    assert first_hour > 1.5 * lull and last_hour > 1.2 * lull


def test_history_features_on_simulated_history_are_not_degenerate() -> None:
    days = simulate_sessions("WINZ25", 31, end=END, trades_per_day=PER_DAY)
    aggs = {d: build_session_aggregates("WINZ25", d, b) for d, b in days.items()}
    labels, sims, pcts = [], [], []
    for d in list(aggs)[6:]:
        previous = {p: a for p, a in aggs.items() if p < d}
        for minutes in (45, 120, 300, 480):
            t = aggs[d].open_ns + minutes * MINUTE_NS
            f = history_features("WINZ25", t, aggs[d], previous)
            labels.append(f["volatility_regime"])
            sims.append(f["volume_pattern_similarity"])
            pcts.append(f["historical_momentum_percentile"])
    assert {"low", "normal", "high"} <= set(labels)
    finite = np.array([s for s in sims if not np.isnan(s)], dtype=float)
    assert finite.size > 0.9 * len(sims)
    assert (finite > 0).mean() > 0.7
    p = np.array(pcts, dtype=float)
    assert p.min() < 20 and p.max() > 80  # trending days reach both tails
