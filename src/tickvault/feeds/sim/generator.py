"""Vectorised generator of realistic B3 mini-futures trades (pure, deterministic per seed).

Models what matters for storage and for later features: the 09:00-18:25
America/Sao_Paulo futures session (time zone and hours from ``venue.b3``), U-shaped
intraday activity, aggressions that sweep several price levels in one millisecond
(so many trades share a timestamp),
a price on the contract's tick grid driven by switching volatility regimes,
aggressor buy/sell trade types and broker agent ids with a skewed popularity.
"""

from __future__ import annotations

import bisect
import datetime as dt
import functools
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from tickvault.errors import QueryError
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


# ---------------------------------------------------------------------- multi-day history
_ANCHOR = dt.date(2010, 1, 4)
"""The day-level process (regimes, trends, activity, closing prices) is walked from here,
so a session's content depends only on (symbol, date, seed, trades_per_day), never on
how many sessions are asked for."""
_LAST = dt.date(2035, 12, 28)
_VOL_MULT = np.array([0.55, 1.0, 2.1])
"""Daily volatility multiplier of the calm, normal and volatile regimes."""
_REGIME_STAY = 0.8
_TREND_STAY = 0.6


@dataclass(frozen=True, slots=True)
class DayState:
    """The day-level facts of one simulated session (see ``simulate_sessions``)."""

    day: dt.date
    regime: int
    """0 calm, 1 normal, 2 volatile: lasts several sessions (persistence 0.8 a day)."""
    trend: int
    """-1 down, 0 none, +1 up: a trending day's close moves about one daily sd its way."""
    vol_mult: float
    activity: float
    """Multiplier of ``trades_per_day``: an AR(1) in logs, higher on volatile days."""
    open_price: float
    close_price: float
    """The close of one session is the open of the next: prices chain across days."""


@functools.cache
def _day_process(symbol: str, seed: int) -> tuple[list[dt.date], list[DayState]]:
    from tickvault.venue.b3 import sessions

    spec = spec_for(symbol)
    days = sessions(symbol, _ANCHOR, _LAST)
    n = len(days)
    rng = np.random.default_rng([seed, sum(map(ord, spec.symbol[:3].upper())), 14])
    regime = np.empty(n, np.int64)
    trend = np.empty(n, np.int64)
    u_regime, u_trend = rng.random(n), rng.random(n)
    pick_regime, pick_trend = rng.integers(0, 2, n), rng.integers(0, 3, n)
    r, t = 1, 0
    for i in range(n):  # two small Markov chains
        if u_regime[i] > _REGIME_STAY:
            r = [x for x in (0, 1, 2) if x != r][int(pick_regime[i])]
        if u_trend[i] > _TREND_STAY:
            t = int(pick_trend[i]) - 1
        regime[i], trend[i] = r, t
    vol = _VOL_MULT[regime] * np.exp(rng.normal(0.0, 0.12, n))
    log_act = np.zeros(n)
    shocks = rng.normal(0.0, 0.12, n)
    for i in range(1, n):
        log_act[i] = 0.7 * log_act[i - 1] + shocks[i]
    activity = np.exp(log_act) * np.where(regime == 2, 1.3, np.where(regime == 0, 0.85, 1.0))
    daily_sd = spec.annual_vol / np.sqrt(252.0)
    z = rng.normal(0.0, 1.0, n)
    log_p0 = float(np.log(spec.start_price))
    closes = np.empty(n)
    opens = np.empty(n)
    lp = log_p0
    for i in range(n):
        opens[i] = lp
        ret = trend[i] * daily_sd + vol[i] * daily_sd * z[i] - 0.01 * (lp - log_p0)
        lp += ret
        closes[i] = lp
    tick = spec.tick_size

    def to_price(x: float) -> float:
        return float(max(round(np.exp(x) / tick), 1) * tick)

    states = [
        DayState(d, int(regime[i]), int(trend[i]), float(vol[i]), float(activity[i]),
                 to_price(opens[i]), to_price(closes[i]))
        for i, d in enumerate(days)
    ]  # fmt: skip
    return days, states


def day_state(symbol: str, day: dt.date, *, seed: int = 0) -> DayState:
    """The day-level facts of ``symbol``'s simulated session on ``day`` (a B3 session)."""
    days, states = _day_process(symbol.upper()[:3], seed)
    i = bisect.bisect_left(days, day)
    if i >= len(days) or days[i] != day:
        raise QueryError(
            f"{day} is not a B3 session between {_ANCHOR} and {_LAST}: the multi-day "
            "simulator plays B3 sessions only (venue.b3.sessions)"
        )
    return states[i]


def _activity_profile(
    rng: np.random.Generator, minutes: int, open_clock_min: int
) -> npt.NDArray[np.float64]:
    """Relative trade intensity per minute: U-shaped, a lull around 13:00 local, and
    shape parameters and per-minute noise that vary from day to day."""
    m = np.arange(minutes, dtype=np.float64)
    clock = open_clock_min + m
    a_open = 2.5 * rng.uniform(0.7, 1.3)
    a_close = 1.6 * rng.uniform(0.7, 1.3)
    lull = 0.45 * rng.uniform(0.6, 1.4)
    center = 13 * 60 + rng.uniform(-30, 30)
    shape = (
        1.0
        + a_open * np.exp(-m / (30.0 * rng.uniform(0.7, 1.3)))
        + a_close * np.exp(-(minutes - 1 - m) / (25.0 * rng.uniform(0.7, 1.3)))
        - lull * np.exp(-(((clock - center) / 55.0) ** 2))
    )
    noise = np.exp(rng.normal(0.0, 0.2, minutes))
    return np.asarray(np.maximum(shape * noise, 0.05), dtype=np.float64)


def simulate_session(
    symbol: str,
    day: dt.date,
    *,
    trades_per_day: int | None = None,
    seed: int = 0,
    recv_latency_ms: float = 2.0,
) -> TradeBatch:
    """One session of the multi-day simulation (see ``simulate_sessions``)."""
    from tickvault.venue.b3 import session

    spec = spec_for(symbol)
    state = day_state(symbol, day, seed=seed)
    s = session(symbol, day)
    rng = np.random.default_rng([seed, day.toordinal(), sum(map(ord, symbol)), 15])
    minutes = max(1, -(-(s.close_ns - s.open_ns) // (60 * NS_PER_S)))
    local_open = dt.datetime.fromtimestamp(s.open_ns / NS_PER_S, B3_TZ)
    profile = _activity_profile(rng, minutes, local_open.hour * 60 + local_open.minute)
    full = minutes / 565.0  # a short session (Ash Wednesday) trades less
    n_trades = max(10, round((trades_per_day or spec.trades_per_day) * state.activity * full))

    sweep = np.minimum(rng.geometric(0.35, size=n_trades), 60)
    ends = np.cumsum(sweep)
    n_aggr = int(np.searchsorted(ends, n_trades)) + 1
    sweep = sweep[:n_aggr]
    sweep[-1] -= int(ends[n_aggr - 1]) - n_trades
    minute_of = np.sort(rng.choice(minutes, size=n_aggr, p=profile / profile.sum()))
    within_ms = rng.integers(0, 60_000, size=n_aggr)
    aggr_ms = (s.open_ns // NS_PER_MS) + minute_of * 60_000 + within_ms
    aggr_ms = np.minimum(np.sort(aggr_ms), s.close_ns // NS_PER_MS)
    minute_of = np.minimum((aggr_ms * NS_PER_MS - s.open_ns) // (60 * NS_PER_S), minutes - 1)
    aggr_time = aggr_ms * NS_PER_MS

    # Volatility within the day: higher where activity is, and short intraday regimes
    blocks = rng.choice([0.75, 1.0, 1.5], size=minutes // 10 + 1, p=[0.4, 0.4, 0.2])
    minute_vol = np.sqrt(profile / profile.mean()) * np.repeat(blocks, 10)[:minutes]
    minute_vol /= np.sqrt(np.mean(minute_vol**2))
    daily_sd_ticks = spec.annual_vol / np.sqrt(252.0) * state.open_price / spec.tick_size
    sd = daily_sd_ticks * state.vol_mult / np.sqrt(n_aggr) * minute_vol[minute_of]
    steps = rng.normal(0.0, 1.0, n_aggr) * sd
    path = np.cumsum(steps)
    open_level = round(state.open_price / spec.tick_size)
    close_level = round(state.close_price / spec.tick_size)
    # a Brownian bridge to the day's close: the day-level trend and the chaining hold
    path += (close_level - open_level - path[-1]) * np.arange(1, n_aggr + 1) / n_aggr
    level = open_level + np.rint(path).astype(np.int64)

    side = rng.random(n_aggr) < 0.5
    owner = np.repeat(np.arange(n_aggr), sweep)
    within = np.arange(n_trades) - np.repeat(ends[:n_aggr] - sweep, sweep)
    direction = np.where(side[owner], 1, -1)
    price = np.maximum(level[owner] + direction * (within // 3), 1).astype(np.float64)
    price *= spec.tick_size
    qty = np.minimum(rng.geometric(0.3, size=n_trades), 500).astype(np.int64)
    weights = 1.0 / np.arange(1, AGENTS.size + 1) ** 1.1
    weights /= weights.sum()
    ts_event = aggr_time[owner]
    latency = rng.gamma(4.0, recv_latency_ms / 4.0, size=n_aggr) * NS_PER_MS
    trade_type = np.where(side[owner], TradeType.AGGRESSOR_BUY, TradeType.AGGRESSOR_SELL)
    return TradeBatch(
        ts_event=ts_event,
        ts_recv=ts_event + latency.astype(np.int64)[owner] + within * 1_000,
        trade_id=np.arange(1, n_trades + 1, dtype=np.int64),
        price=price,
        qty=qty,
        volume=price * qty * spec.point_value,
        buy_agent=rng.choice(AGENTS, size=n_trades, p=weights).astype(np.int32),
        sell_agent=rng.choice(AGENTS, size=n_trades, p=weights).astype(np.int32),
        trade_type=trade_type.astype(np.uint8),
        flags=np.zeros(n_trades, dtype=np.uint8),
    )


def simulate_sessions(
    symbol: str,
    n_sessions: int,
    *,
    end: dt.date,
    trades_per_day: int | None = None,
    seed: int = 0,
) -> dict[dt.date, TradeBatch]:
    """``n_sessions`` consecutive real B3 sessions of ``symbol`` ending at ``end`` (included
    when it is a session), oldest first: weekends and B3 holidays skipped (``venue.b3``),
    the symbol's session hours.

    Realistic multi-day structure, deterministic per seed, and the same content for a
    day whatever ``n_sessions`` and ``end`` are:

    - day-level regimes that persist (calm, normal, volatile: daily volatility x0.55,
      x1, x2.1; a regime lasts about five sessions) and trending days (the close moves
      about one daily standard deviation up or down; a trend lasts a few sessions);
    - prices chained across days (a session opens at the previous close) on the tick
      grid, with a weak pull back to the contract's start price;
    - intraday seasonality: U-shaped activity (heavy open, busy close) with a lull
      around 13:00 local, its shape varying from day to day; activity per day varies
      too (an AR(1) in logs, busier on volatile days); volatility follows activity;
    - aggressions sweeping several trades in one millisecond, aggressor sides, broker
      ids, as ``generate_day``.

    Trade ids restart at 1 each session (a trade is identified by its date and id).
    """
    from tickvault.venue.b3 import previous_sessions

    if n_sessions < 1:
        raise QueryError(f"n_sessions must be >= 1, got {n_sessions}")
    days = previous_sessions(symbol, end + dt.timedelta(days=1), n_sessions)
    return {d: simulate_session(symbol, d, trades_per_day=trades_per_day, seed=seed) for d in days}
