"""Test markets for honest evaluation: a pure random walk, or one planted effect.

    planted_sessions("WINZ25", 12, end=dt.date(2025, 11, 28), effect=0.0)   # no structure
    planted_sessions("WINZ25", 12, end=dt.date(2025, 11, 28), effect=1.5)   # the effect

Each session (real B3 sessions and hours, ``venue.b3``) is cut into its minutes.
In minute m:

- trades arrive at uniformly random times (a Poisson count, ``trades_per_minute``
  on average), quantities geometric;
- each trade's aggressor side is a buy with probability q_m, q_m uniform in
  [0.15, 0.85] and drawn afresh each minute, so the minute's aggressor imbalance
  I_m = (B - S) / (B + S) in quantity varies a lot;
- the price (on the contract's tick grid) is a random walk with a minute's
  standard deviation of ``minute_sd_ticks`` ticks, plus, **the planted effect**, a
  drift over minute m + 1 of ``effect * I_m * minute_sd_ticks`` ticks: the last
  minute's aggressor imbalance moves the next minute's price.

With ``effect=0`` the price is a pure random walk, independent of everything the
features see: no model can beat a coin out of sample. At a step T on the minute,
the feature ``aggr_imbalance_1min`` is exactly I of the minute before T, and the
label ``label_fwd_ret_1min`` is the move over the minute after T. Deterministic per
seed; prices chain across sessions.
"""

from __future__ import annotations

import datetime as dt

import numpy as np

from tickvault.errors import QueryError
from tickvault.records.trades import TradeBatch, TradeType
from tickvault.venue.b3 import previous_sessions, session
from tickvault.venue.contracts import contract

MINUTE_NS = 60_000_000_000
NS_PER_MS = 1_000_000


def planted_session(
    symbol: str,
    day: dt.date,
    *,
    effect: float = 0.0,
    trades_per_minute: float = 30.0,
    minute_sd_ticks: float = 4.0,
    start_price: float = 128_000.0,
    seed: int = 0,
) -> TradeBatch:
    """One session of the market of the module docstring."""
    if trades_per_minute <= 0 or minute_sd_ticks <= 0:
        raise QueryError("trades_per_minute and minute_sd_ticks must be > 0")
    tick = contract(symbol).tick_size
    s = session(symbol, day)
    rng = np.random.default_rng([seed, day.toordinal(), 1515])
    minutes = int(-(-(s.close_ns - s.open_ns) // MINUTE_NS))
    counts = np.maximum(rng.poisson(trades_per_minute, minutes), 1)
    n = int(counts.sum())
    minute_of = np.repeat(np.arange(minutes), counts)
    offset_ms = rng.integers(0, 60_000, n)
    order = np.lexsort((offset_ms, minute_of))
    minute_of, offset_ms = minute_of[order], offset_ms[order]
    ts = s.open_ns + minute_of * MINUTE_NS + offset_ms * NS_PER_MS
    ts = np.minimum(ts, s.close_ns)
    q = rng.uniform(0.15, 0.85, minutes)
    buy = rng.random(n) < q[minute_of]
    qty = np.minimum(rng.geometric(0.3, n), 200).astype(np.int64)
    b = np.bincount(minute_of, weights=qty * buy, minlength=minutes)
    a = np.bincount(minute_of, weights=qty * ~buy, minlength=minutes)
    imbalance = (b - a) / np.maximum(b + a, 1)
    drift = np.r_[0.0, effect * imbalance[:-1] * minute_sd_ticks]  # minute m + 1 from m
    per_trade = counts[minute_of]
    steps = rng.normal(0.0, 1.0, n) * minute_sd_ticks / np.sqrt(per_trade)
    steps += drift[minute_of] / per_trade
    level = round(start_price / tick) + np.rint(np.cumsum(steps)).astype(np.int64)
    price = np.maximum(level, 1).astype(np.float64) * tick
    side = np.where(buy, TradeType.AGGRESSOR_BUY, TradeType.AGGRESSOR_SELL).astype(np.uint8)
    return TradeBatch(
        ts_event=ts.astype(np.int64),
        ts_recv=ts.astype(np.int64) + 2 * NS_PER_MS,
        trade_id=np.arange(1, n + 1, dtype=np.int64),
        price=price,
        qty=qty,
        volume=price * qty * contract(symbol).point_value,
        buy_agent=np.full(n, 3, dtype=np.int32),
        sell_agent=np.full(n, 8, dtype=np.int32),
        trade_type=side,
        flags=np.zeros(n, dtype=np.uint8),
    )


def planted_sessions(
    symbol: str,
    n_sessions: int,
    *,
    end: dt.date,
    effect: float = 0.0,
    trades_per_minute: float = 30.0,
    seed: int = 0,
) -> dict[dt.date, TradeBatch]:
    """``n_sessions`` B3 sessions ending at ``end`` (included when a session), oldest
    first, prices chained (a session opens at the previous close)."""
    if n_sessions < 1:
        raise QueryError(f"n_sessions must be >= 1, got {n_sessions}")
    out: dict[dt.date, TradeBatch] = {}
    price = 128_000.0
    for d in previous_sessions(symbol, end + dt.timedelta(days=1), n_sessions):
        batch = planted_session(symbol, d, effect=effect, trades_per_minute=trades_per_minute,
                                start_price=price, seed=seed)  # fmt: skip
        out[d] = batch
        price = float(batch.price[-1])
    return out
