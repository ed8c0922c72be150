"""The three history features, from per-session aggregates (pure, calendar-aware).

For a time T in session s of a symbol, "previous session" is the previous B3
trading day (``venue.b3.previous_sessions``: Monday's is Friday's, a holiday
is skipped) and "the same clock window" is the same local times of day.

The minute grid: aggregates are per minute, so a history feature is defined on
the session's minute grid. For any T in [open, close] let k = floor((T - open) /
1 min) and T_g = open + k min; the value at T is the value at T_g, computed
from the trades with ts_event < T_g (so never from anything at or after T). The
values change once a minute (``volume_pattern_similarity`` once per bucket).

p_s(t) (price at t in session s) is ``aggs.price`` at the boundary of t:
the last trade before t, the session's first trade when t is before it. For
the current session that fallback only uses a first trade before T_g, else
p is NaN. A clock time before a previous session's open reads its first
trade, one after its close its last trade.

Definitions (parameters in ``HistoryParams``, issue 14's defaults):

- ``volume_pattern_similarity``: the 5-minute buckets aligned to the open,
  [open + 5b min, open + 5(b + 1) min), that lie entirely in
  [max(open, T_g - 3 h), T_g); x_b = qty in bucket b of s, y_b = qty in the
  same clock bucket of the previous session; Pearson correlation of x and y.
  NaN with fewer than 3 buckets, zero variance in x or y, or no previous
  session stored.
- ``volume_ratio_prev_session``: sum(x) / sum(y) over the same buckets; NaN with
  no bucket, sum(y) = 0 or no previous session stored.
- ``momentum_30min``: m = ln(p_s(T_g) / p_s(T_g - 30 min)).
- ``historical_momentum_percentile``: 100 (#{m_d < m} + #{m_d = m} / 2) / n over
  the m_d of the same clock window in those of the previous 20 sessions that are
  stored and have trades; NaN when n < 5 or m is NaN.
- ``rv_30min``: sqrt(sum r_j^2), r_j = ln(p(T_g - (j - 1) min) / p(T_g - j min)),
  j = 1..30.
- ``volatility_regime_score``: (ln rv - mean) / std of ln rv_d over the same
  clock window in those of the previous 30 sessions that are stored (sample
  std, ddof 1); NaN when fewer than 5 such sessions, std = 0, or rv = 0 (a
  window without a price change has no log volatility; such sessions are left
  out of the history too).
- ``volatility_regime``: "low" below -1, "high" above +1, else "normal"; None
  when the score is NaN.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date

import numpy as np
import numpy.typing as npt

from tickvault.errors import QueryError
from tickvault.features.aggregates import MINUTE_NS, SessionAggregates
from tickvault.venue.b3 import previous_sessions

F64 = npt.NDArray[np.float64]
HISTORY_FEATURES = (
    "volume_pattern_similarity",
    "volume_ratio_prev_session",
    "momentum_30min",
    "historical_momentum_percentile",
    "rv_30min",
    "volatility_regime_score",
    "volatility_regime",
)


@dataclass(frozen=True, slots=True)
class HistoryParams:
    """Windows in whole minutes and lookbacks in sessions; the defaults are issue 14's."""

    volume_window_min: int = 180
    bucket_min: int = 5
    min_buckets: int = 3
    momentum_window_min: int = 30
    momentum_sessions: int = 20
    volatility_window_min: int = 30
    volatility_sessions: int = 30
    min_sessions: int = 5
    regime_threshold: float = 1.0

    def __post_init__(self) -> None:
        positive = (
            "volume_window_min",
            "bucket_min",
            "momentum_window_min",
            "volatility_window_min",
            "momentum_sessions",
            "volatility_sessions",
        )
        for name in positive:
            if getattr(self, name) < 1:
                raise QueryError(f"HistoryParams.{name} must be >= 1, got {getattr(self, name)}")
        if self.min_sessions < 2:
            raise QueryError(f"HistoryParams.min_sessions must be >= 2, got {self.min_sessions}")


def _prices(aggs: SessionAggregates, lo: int, hi: int) -> F64:
    """p at the minute boundaries lo..hi of ``aggs`` (clipped to the session), a view if it can."""
    m = aggs.price.size - 1
    if lo >= 0 and hi <= m:
        return aggs.price[lo : hi + 1]
    return aggs.price[np.minimum(np.maximum(np.arange(lo, hi + 1), 0), m)]


def _price(aggs: SessionAggregates, minute: int) -> float:
    return float(aggs.price[min(max(minute, 0), aggs.price.size - 1)])


def _same_clock(cur: SessionAggregates, other: SessionAggregates) -> int:
    """Minutes to add to a minute index of ``cur`` to get the same clock time in ``other``."""
    return cur.open_clock_min - other.open_clock_min


def _volumes(aggs: SessionAggregates, lo: int, hi: int) -> npt.NDArray[np.int64]:
    """qty of the minutes lo..hi-1 of ``aggs``, 0 for minutes outside the session."""
    if lo >= 0 and hi <= aggs.minutes:
        return aggs.volume[lo:hi]
    minutes = np.arange(lo, hi)
    ok = (minutes >= 0) & (minutes < aggs.minutes)
    return np.where(ok, aggs.volume[np.minimum(np.maximum(minutes, 0), aggs.minutes - 1)], 0)


def _pearson(x: F64, y: F64) -> float:
    dx, dy = x - x.mean(), y - y.mean()
    sxx, syy = float(dx @ dx), float(dy @ dy)
    if sxx == 0.0 or syy == 0.0:
        return math.nan
    return float(dx @ dy) / math.sqrt(sxx * syy)


def _log_ratio(p1: F64, p0: F64) -> F64:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(np.log(p1 / p0), dtype=np.float64)


def history_features(
    symbol: str,
    t_ns: int,
    current: SessionAggregates,
    previous: Mapping[date, SessionAggregates],
    params: HistoryParams | None = None,
) -> dict[str, float | str | None]:
    """The history features at T (see the module docstring for every definition).

    ``current`` is T's session (complete, or partial as of at least T_g);
    ``previous`` maps session dates to aggregates: only the previous B3 sessions
    of the calendar are read, missing ones are skipped.
    """
    p = params or HistoryParams()
    if current.symbol != symbol:
        raise QueryError(f"aggregates are of {current.symbol!r}, not of {symbol!r}")
    if not current.open_ns <= t_ns <= current.close_ns:
        raise QueryError(
            f"T={t_ns} is outside {symbol}'s session of {current.date} "
            f"[{current.open_ns}, {current.close_ns}]: history features exist only in a session"
        )
    k = (t_ns - current.open_ns) // MINUTE_NS
    t_g = current.open_ns + k * MINUTE_NS
    if current.as_of_ns is not None and current.as_of_ns < t_g:
        raise QueryError(
            f"aggregates of {symbol} {current.date} are as of {current.as_of_ns}, before "
            f"the minute {t_g} that T={t_ns} needs: rebuild them as of T"
        )
    known = current.first_ts is not None and current.first_ts < t_g
    n_back = max(p.momentum_sessions, p.volatility_sessions, 1)
    dates = previous_sessions(symbol, current.date, n_back)
    out: dict[str, float | str | None] = {}

    # volume pattern vs the previous session
    start = max(0, k - p.volume_window_min)
    b0 = -(-start // p.bucket_min)
    b1 = k // p.bucket_min
    n_buckets = max(0, b1 - b0)
    lo, hi = b0 * p.bucket_min, (b0 + n_buckets) * p.bucket_min
    prev = previous.get(dates[-1]) if dates else None
    sim = ratio = math.nan
    if prev is not None and n_buckets:
        shift = _same_clock(current, prev)
        x = current.volume[lo:hi].reshape(n_buckets, -1).sum(axis=1).astype(np.float64)
        y = _volumes(prev, lo + shift, hi + shift).reshape(n_buckets, -1).sum(axis=1)
        y = y.astype(np.float64)
        if n_buckets >= p.min_buckets:
            sim = _pearson(x, y)
        ty = float(y.sum())
        ratio = float(x.sum()) / ty if ty > 0 else math.nan
    out["volume_pattern_similarity"] = sim
    out["volume_ratio_prev_session"] = ratio

    # momentum percentile and volatility regime: one vectorised pass over the
    # current session (row 0, NaN when nothing is known yet) and the stored ones
    def stored(n: int) -> list[SessionAggregates]:
        found = (previous.get(d) for d in dates[-n:])
        return [a for a in found if a is not None and a.first_ts is not None]

    mom_hist = stored(p.momentum_sessions)
    vol_hist = stored(p.volatility_sessions)
    mw = p.momentum_window_min
    rows = [(current, 0)] + [(a, _same_clock(current, a)) for a in mom_hist]
    p0 = np.array([_price(a, k - mw + shift) for a, shift in rows])
    p1 = np.array([_price(a, k + shift) for a, shift in rows])
    if not known:
        p0[0] = p1[0] = math.nan
    moms = _log_ratio(p1, p0)
    m, hm = float(moms[0]), moms[1:][~np.isnan(moms[1:])]
    out["momentum_30min"] = m
    if hm.size < p.min_sessions or math.isnan(m):
        out["historical_momentum_percentile"] = math.nan
    else:
        below, ties = int((hm < m).sum()), int((hm == m).sum())
        out["historical_momentum_percentile"] = 100.0 * (below + 0.5 * ties) / hm.size

    vw = p.volatility_window_min
    pv = np.stack(
        [_prices(current, k - vw, k) if known else np.full(vw + 1, math.nan)]
        + [
            _prices(a, k - vw + _same_clock(current, a), k + _same_clock(current, a))
            for a in vol_hist
        ]
    )
    r = np.diff(np.log(pv), axis=1)
    rvs = np.sqrt((r * r).sum(axis=1))
    with np.errstate(divide="ignore", invalid="ignore"):
        ln_rv = np.where(rvs > 0, np.log(np.where(rvs > 0, rvs, 1.0)), math.nan)
    out["rv_30min"] = float(rvs[0])
    lr, hv = float(ln_rv[0]), ln_rv[1:][~np.isnan(ln_rv[1:])]
    z = math.nan
    if hv.size >= p.min_sessions and not math.isnan(lr):
        sd = float(hv.std(ddof=1))
        if sd > 0:
            z = (lr - float(hv.mean())) / sd
    out["volatility_regime_score"] = z
    out["volatility_regime"] = (
        None
        if math.isnan(z)
        else "low"
        if z < -p.regime_threshold
        else "high"
        if z > p.regime_threshold
        else "normal"
    )
    return out
