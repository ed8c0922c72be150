"""Vectorised generator of realistic B3 mini-futures trades (pure, deterministic per seed).

Models what matters for storage and for later features: the 09:00-18:25
America/Sao_Paulo futures session (time zone and hours from ``venue.b3``), U-shaped
intraday activity, aggressions that sweep several price levels in one millisecond
(so many trades share a timestamp),
a price on the contract's tick grid driven by switching volatility regimes,
aggressor buy/sell trade types and broker agent ids with a skewed popularity.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from tickvault.records.trades import TradeBatch, TradeType
from tickvault.venue.b3 import B3_TZ, FUTURES_HOURS

NS_PER_MS = 1_000_000
NS_PER_S = 1_000_000_000
SESSION_OPEN = FUTURES_HOURS.open
SESSION_CLOSE = FUTURES_HOURS.close
"""The simulated mini-futures session (B3's futures hours, ``venue.b3``)."""

AGENTS = np.array(
    [
        3,
        8,
        13,
        15,
        16,
        21,
        27,
        39,
        40,
        45,
        54,
        58,
        59,
        72,
        77,
        85,
        86,
        88,
        90,
        92,
        93,
        102,
        107,
        114,
        120,
        122,
        127,
        129,
        131,
        147,
        172,
        174,
        190,
        191,
        226,
        238,
        262,
        308,
        386,
        1026,
        1099,
        1130,
        1982,
        2197,
        3701,
        4090,
    ],
    dtype=np.int32,
)


@dataclass(frozen=True, slots=True)
class ContractSpec:
    """What distinguishes one simulated contract from another."""

    symbol: str
    start_price: float
    tick_size: float
    point_value: float
    """BRL per point per contract: financial volume = price * qty * point_value."""
    trades_per_day: int
    annual_vol: float


CONTRACTS: dict[str, ContractSpec] = {
    "WIN": ContractSpec("WIN", 128_000.0, 5.0, 0.2, 1_200_000, 0.22),
    "WDO": ContractSpec("WDO", 5_400.0, 0.5, 10.0, 400_000, 0.14),
}


def spec_for(symbol: str) -> ContractSpec:
    """The contract spec of a symbol such as WINZ25 (by its three-letter root)."""
    root = symbol[:3].upper()
    base = CONTRACTS.get(root, CONTRACTS["WIN"])
    return ContractSpec(
        symbol,
        base.start_price,
        base.tick_size,
        base.point_value,
        base.trades_per_day,
        base.annual_vol,
    )


def session_bounds_ns(day: dt.date) -> tuple[int, int]:
    open_ = dt.datetime.combine(day, SESSION_OPEN, tzinfo=B3_TZ)
    close = dt.datetime.combine(day, SESSION_CLOSE, tzinfo=B3_TZ)
    return int(open_.timestamp()) * NS_PER_S, int(close.timestamp()) * NS_PER_S


def simulated_days(start: dt.date, count: int) -> list[dt.date]:
    """``count`` weekdays from ``start`` on: the simulator's days (holidays are not
    modelled; B3's real sessions are ``venue.b3``'s)."""
    days: list[dt.date] = []
    d = start
    while len(days) < count:
        if d.weekday() < 5:
            days.append(d)
        d += dt.timedelta(days=1)
    return days


def _u_shape_times(
    rng: np.random.Generator, n: int, open_ns: int, close_ns: int
) -> npt.NDArray[np.int64]:
    """``n`` sorted times in the session, denser at the open and the close (ms resolution)."""
    # Beta(0.6, 0.6) is U-shaped on [0, 1].
    u = np.sort(rng.beta(0.6, 0.6, size=n))
    ms = (open_ns + u * (close_ns - open_ns)).astype(np.int64) // NS_PER_MS
    return ms * NS_PER_MS


def generate_day(
    symbol: str,
    day: dt.date,
    n_trades: int,
    *,
    seed: int = 0,
    start_price: float | None = None,
    first_trade_id: int = 1,
    recv_latency_ms: float = 2.0,
) -> TradeBatch:
    """``n_trades`` trades of one session of ``symbol`` on ``day``."""
    spec = spec_for(symbol)
    rng = np.random.default_rng([seed, day.toordinal(), sum(map(ord, symbol))])
    open_ns, close_ns = session_bounds_ns(day)

    # Aggressions: each one sweeps k >= 1 trades at the same millisecond.
    sweep = np.minimum(rng.geometric(0.35, size=n_trades), 60)
    ends = np.cumsum(sweep)
    n_aggr = int(np.searchsorted(ends, n_trades)) + 1
    sweep = sweep[:n_aggr]
    sweep[-1] -= int(ends[n_aggr - 1]) - n_trades
    aggr_time = _u_shape_times(rng, n_aggr, open_ns, close_ns)

    # Volatility regimes switching every few minutes: calm, trending, volatile.
    minutes = (close_ns - open_ns) // (60 * NS_PER_S) + 1
    regime = rng.choice(3, size=minutes, p=[0.55, 0.3, 0.15])
    regime = np.repeat(regime[::7], 7)[:minutes]
    vol_mult = np.array([0.6, 1.0, 2.5])[regime]
    drift = np.where(regime == 1, rng.choice([-1.0, 1.0], size=minutes) * 0.15, 0.0)
    minute_of = (aggr_time - open_ns) // (60 * NS_PER_S)
    tick_sd = max(
        spec.annual_vol
        * spec.start_price
        / np.sqrt(252 * spec.trades_per_day / 2.0)
        / spec.tick_size,
        0.3,
    )
    steps = np.rint(rng.normal(drift[minute_of], tick_sd * vol_mult[minute_of])).astype(np.int64)
    base_price = start_price if start_price is not None else spec.start_price
    level = np.round(base_price / spec.tick_size).astype(np.int64) + np.cumsum(steps)

    side = rng.random(n_aggr) < 0.5  # True: aggressor buy
    owner = np.repeat(np.arange(n_aggr), sweep)
    within = np.arange(n_trades) - np.repeat(ends[:n_aggr] - sweep, sweep)
    # A buy sweep walks the ask up, a sell sweep walks the bid down, one level per 3 trades.
    direction = np.where(side[owner], 1, -1)
    price_level = level[owner] + direction * (within // 3)
    price = np.maximum(price_level, 1).astype(np.float64) * spec.tick_size

    qty = np.minimum(rng.geometric(0.3, size=n_trades), 500).astype(np.int64)
    weights = 1.0 / np.arange(1, AGENTS.size + 1) ** 1.1
    weights /= weights.sum()
    buy_agent = rng.choice(AGENTS, size=n_trades, p=weights)
    sell_agent = rng.choice(AGENTS, size=n_trades, p=weights)
    ts_event = aggr_time[owner]
    latency = rng.gamma(4.0, recv_latency_ms / 4.0, size=n_aggr) * NS_PER_MS
    ts_recv = ts_event + latency.astype(np.int64)[owner] + within * 1_000
    trade_type = np.where(side[owner], TradeType.AGGRESSOR_BUY, TradeType.AGGRESSOR_SELL)
    return TradeBatch(
        ts_event=ts_event,
        ts_recv=ts_recv,
        trade_id=np.arange(first_trade_id, first_trade_id + n_trades, dtype=np.int64),
        price=price,
        qty=qty,
        volume=price * qty * spec.point_value,
        buy_agent=buy_agent.astype(np.int32),
        sell_agent=sell_agent.astype(np.int32),
        trade_type=trade_type.astype(np.uint8),
        flags=np.zeros(n_trades, dtype=np.uint8),
    )


def generate_trades(
    symbol: str,
    n_trades: int,
    *,
    start: dt.date = dt.date(2025, 11, 3),
    trades_per_day: int | None = None,
    seed: int = 0,
) -> TradeBatch:
    """``n_trades`` trades over as many consecutive sessions as it takes."""
    per_day = trades_per_day or spec_for(symbol).trades_per_day
    n_days = max(1, -(-n_trades // per_day))
    batches: list[TradeBatch] = []
    price: float | None = None
    left = n_trades
    for day in simulated_days(start, n_days):
        count = min(per_day, left)
        batch = generate_day(symbol, day, count, seed=seed, start_price=price)
        batches.append(batch)
        price = float(batch.price[-1])
        left -= count
    return TradeBatch.concat(batches)
