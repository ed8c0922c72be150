"""The default intraday features: one formula each, evaluated live and in batch alike.

Conventions shared by all (docs/features.md has the full text):

- The value *at T* uses only trades with ``ts_event < T``. The value emitted
  after a trade is the value at ``T = ts_event + 1 ns`` given the trades seen so
  far; once the last trade of that nanosecond has been seen it is exactly the
  point-in-time value at that T (B3 prints several trades of one aggression
  with the same timestamp; after the first of them the row covers only it).
- A window w at T holds the trades with ``T - w <= ts_event < T``; its reference
  trade is the last trade with ``ts_event < T - w``.
- Everything restarts at each local day (America/Sao_Paulo), so no window
  reaches into the previous session: a return or volatility whose reference
  would lie before the day's first trade is NaN ("window not yet covered"),
  counts and sums cover the part of the window inside the day.
- Volume is quantity (``qty``: contracts or shares).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tickvault.features.base import Feature, Ops, Value, View, window_label
from tickvault.timeutil import NS_PER_S

SECOND = NS_PER_S
MINUTE = 60 * NS_PER_S
DEFAULT_LARGE_TRADE_MIN_QTY = 20
"""Default threshold of ``large_trade_share``: a per-symbol parameter in practice."""


@dataclass(frozen=True, repr=False)
class LogReturn(Feature):
    """ln(p(T) / p(T - w)), p(t) = price of the last trade with ts_event < t in the day.

    NaN when the day has no trade before T - w (the window reaches past the
    day's first trade) or none before T.
    """

    window_ns: int = MINUTE
    version: int = 1
    units: str = "log return (natural log, unitless)"
    name: str = field(init=False)
    windows_ns: tuple[int, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", f"ret_{window_label(self.window_ns)}")
        object.__setattr__(self, "windows_ns", (self.window_ns,))

    def compute(self, v: View, ops: Ops) -> Value:
        w = self.window_ns
        return ops.where(v.has_ref(w), v.cur.lp - v.ref(w).lp)


@dataclass(frozen=True, repr=False)
class RealizedVol(Feature):
    """sqrt(sum of r_k^2) over the trades k in [T - w, T), r_k = ln(p_k / p_{k-1}).

    p_{k-1} is the trade before k (the reference trade for the first one in the
    window), so the squared returns telescope to the window's return path. Not
    annualised. NaN when the day has no trade before T - w.
    """

    window_ns: int = MINUTE
    version: int = 1
    units: str = "log return (unitless, not annualised)"
    name: str = field(init=False)
    windows_ns: tuple[int, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", f"rv_{window_label(self.window_ns)}")
        object.__setattr__(self, "windows_ns", (self.window_ns,))

    def compute(self, v: View, ops: Ops) -> Value:
        w = self.window_ns
        return ops.where(v.has_ref(w), ops.sqrt(v.cur.r2 - v.ref(w).r2))


@dataclass(frozen=True, repr=False)
class SessionVwap(Feature):
    """sum(price * qty) / sum(qty) over the day's trades before T. NaN before the first."""

    version: int = 1
    units: str = "price"
    name: str = "vwap"

    def compute(self, v: View, ops: Ops) -> Value:
        return ops.div(v.cur.pq, v.cur.q)


@dataclass(frozen=True, repr=False)
class VwapDistance(Feature):
    """10^4 * (p(T) - vwap(T)) / vwap(T): last price vs the session VWAP, in basis points."""

    version: int = 1
    units: str = "basis points"
    name: str = "vwap_dist_bps"

    def compute(self, v: View, ops: Ops) -> Value:
        vwap = ops.div(v.cur.pq, v.cur.q)
        return ops.div(1e4 * (v.cur.price - vwap), vwap)


@dataclass(frozen=True, repr=False)
class AggressorImbalance(Feature):
    """(B - S) / (B + S) over [T - w, T): B, S = qty of AGGRESSOR_BUY / AGGRESSOR_SELL trades.

    Other trade types (cross, auction, unknown...) count in neither. NaN when
    B + S = 0. In [-1, 1].
    """

    window_ns: int = MINUTE
    version: int = 1
    units: str = "ratio in [-1, 1]"
    name: str = field(init=False)
    windows_ns: tuple[int, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", f"aggr_imbalance_{window_label(self.window_ns)}")
        object.__setattr__(self, "windows_ns", (self.window_ns,))

    def compute(self, v: View, ops: Ops) -> Value:
        ref = v.ref(self.window_ns)
        b = v.cur.qb - ref.qb
        s = v.cur.qs - ref.qs
        return ops.div(b - s, b + s)


@dataclass(frozen=True, repr=False)
class TradeIntensity(Feature):
    """Trades in [T - w, T) divided by w in seconds (0 when none; low in the day's first w)."""

    window_ns: int = MINUTE
    version: int = 1
    units: str = "trades per second"
    name: str = field(init=False)
    windows_ns: tuple[int, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", f"trade_intensity_{window_label(self.window_ns)}")
        object.__setattr__(self, "windows_ns", (self.window_ns,))

    def compute(self, v: View, ops: Ops) -> Value:
        return (v.cur.n - v.ref(self.window_ns).n) / (self.window_ns / NS_PER_S)


@dataclass(frozen=True, repr=False)
class AverageTradeSize(Feature):
    """sum(qty) / count of the trades in [T - w, T). NaN when the window has none."""

    window_ns: int = MINUTE
    version: int = 1
    units: str = "qty per trade (contracts or shares)"
    name: str = field(init=False)
    windows_ns: tuple[int, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", f"avg_trade_size_{window_label(self.window_ns)}")
        object.__setattr__(self, "windows_ns", (self.window_ns,))

    def compute(self, v: View, ops: Ops) -> Value:
        ref = v.ref(self.window_ns)
        return ops.div(v.cur.q - ref.q, v.cur.n - ref.n)


@dataclass(frozen=True, repr=False)
class LargeTradeShare(Feature):
    """Share of the qty in [T - w, T) traded in trades with qty >= min_qty. NaN when none.

    ``min_qty`` is a parameter (default 20, meant per symbol: contracts of a
    mini future are not shares of a stock). In [0, 1].
    """

    window_ns: int = MINUTE
    min_qty: int = DEFAULT_LARGE_TRADE_MIN_QTY
    version: int = 1
    units: str = "fraction of qty in [0, 1]"
    name: str = field(init=False)
    windows_ns: tuple[int, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", f"large_trade_share_{window_label(self.window_ns)}")
        object.__setattr__(self, "windows_ns", (self.window_ns,))

    def compute(self, v: View, ops: Ops) -> Value:
        ref = v.ref(self.window_ns)
        return ops.div(v.cur.ql - ref.ql, v.cur.q - ref.q)


@dataclass(frozen=True, repr=False)
class Spread(Feature):
    """ask_px - bid_px of the last book top before T. NaN when a side is missing.

    A side is missing when its price is not finite or its quantity is not > 0.
    A crossed book (bid above ask) gives a negative spread, as it is.
    """

    version: int = 1
    units: str = "price"
    name: str = "spread"

    def compute(self, v: View, ops: Ops) -> Value:
        return ops.where(v.book_ok, v.ask_px - v.bid_px)


@dataclass(frozen=True, repr=False)
class BookImbalance(Feature):
    """(bid_qty - ask_qty) / (bid_qty + ask_qty) of the last book top before T. In [-1, 1]."""

    version: int = 1
    units: str = "ratio in [-1, 1]"
    name: str = "book_imbalance"

    def compute(self, v: View, ops: Ops) -> Value:
        return ops.where(v.book_ok, ops.div(v.bid_qty - v.ask_qty, v.bid_qty + v.ask_qty))


@dataclass(frozen=True, repr=False)
class Microprice(Feature):
    """(ask_px * bid_qty + bid_px * ask_qty) / (bid_qty + ask_qty) of the last book top before T.

    The mid weighted toward the side with less quantity (where the next trade
    is likelier to move the price). NaN when a side is missing.
    """

    version: int = 1
    units: str = "price"
    name: str = "microprice"

    def compute(self, v: View, ops: Ops) -> Value:
        num = v.ask_px * v.bid_qty + v.bid_px * v.ask_qty
        return ops.where(v.book_ok, ops.div(num, v.bid_qty + v.ask_qty))


def default_features(large_trade_min_qty: int = DEFAULT_LARGE_TRADE_MIN_QTY) -> list[Feature]:
    """The default intraday set, in the column order of frames."""
    return [
        LogReturn(SECOND),
        LogReturn(MINUTE),
        LogReturn(5 * MINUTE),
        RealizedVol(MINUTE),
        RealizedVol(5 * MINUTE),
        SessionVwap(),
        VwapDistance(),
        AggressorImbalance(MINUTE),
        TradeIntensity(MINUTE),
        AverageTradeSize(MINUTE),
        LargeTradeShare(MINUTE, large_trade_min_qty),
        Spread(),
        BookImbalance(),
        Microprice(),
    ]
