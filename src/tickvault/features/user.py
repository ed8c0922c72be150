"""A user's own feature: any function of a trades DataFrame over a lookback window.

    def my_signal(df: pd.DataFrame) -> float:      # the original design's calculate(df)
        return float(df["price"].iloc[-1] - df["price"].mean()) if len(df) else float("nan")

    f = UserFeature(my_signal, lookback_ns=120 * 60 * 10**9, name="my_signal")

At T the function gets the trades with ``T - lookback <= ts_event < T``, as a
DataFrame indexed by ``ts_event`` (DatetimeIndex, UTC) with the columns
``price`` (float64), ``qty`` (int64) and ``trade_type`` (uint8), in time order.
Unlike the intraday set, the window does not restart at the session open: the
lookback is plain time, the function decides what to do with it. It must
return one number (NaN allowed).

Slower, and why: every evaluation builds a DataFrame of all the trades in the
lookback (O(trades in the window), about 0.1 ms of pandas overhead even for a
few rows) and runs arbitrary Python on it, and nothing is shared between two
evaluations, while the intraday set costs O(1) per trade from running sums.
So the live state only keeps the window on ``update`` (O(1) amortised) and
evaluates when asked (``value()``, ``at(T)``); batch evaluation calls the
function once per requested row. Live and batch give the function the same
DataFrame, so they agree exactly as long as the function is deterministic.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pandas as pd

from tickvault.errors import QueryError, ValidationError
from tickvault.records.trades import TradeBatch

F64 = npt.NDArray[np.float64]
UserFn = Callable[[pd.DataFrame], float]


def trades_frame(
    ts: npt.ArrayLike, price: npt.ArrayLike, qty: npt.ArrayLike, trade_type: npt.ArrayLike
) -> pd.DataFrame:
    """The DataFrame a user function receives (see the module docstring)."""
    index = pd.DatetimeIndex(np.asarray(ts, dtype=np.int64).view("M8[ns]"), name="ts_event")
    return pd.DataFrame(
        {
            "price": np.asarray(price, dtype=np.float64),
            "qty": np.asarray(qty, dtype=np.int64),
            "trade_type": np.asarray(trade_type, dtype=np.uint8),
        },
        index=index.tz_localize("UTC"),
    )


class UserFeature:
    """A feature defined by ``fn(trades_in_lookback) -> float``."""

    def __init__(
        self, fn: UserFn, lookback_ns: int, *, name: str, version: int = 1, units: str = ""
    ) -> None:
        if not callable(fn):
            raise QueryError(f"UserFeature {name!r}: fn must be a function of a DataFrame")
        if not isinstance(lookback_ns, int) or lookback_ns <= 0:
            raise QueryError(
                f"UserFeature {name!r}: lookback_ns must be a positive int of ns, "
                f"got {lookback_ns!r}"
            )
        self.fn = fn
        self.lookback_ns = lookback_ns
        self.name = name
        self.version = version
        self.units = units
        self.windows_ns = (lookback_ns,)

    @property
    def definition(self) -> str:
        return (self.fn.__doc__ or "").strip() or f"user function {self.fn.__name__}"

    def call(self, frame: pd.DataFrame, t_ns: int) -> float:
        """Run the function on one window; its failures become a QueryError naming T."""
        try:
            value = self.fn(frame)
            return float(value)
        except Exception as exc:
            raise QueryError(
                f"user feature {self.name!r} failed at T={t_ns} on {len(frame)} trades: "
                f"{type(exc).__name__}: {exc}"
            ) from exc

    def new_state(self) -> UserFeatureState:
        return UserFeatureState(self)

    def batch(self, trades: TradeBatch) -> F64:
        """One value per trade row i: the function over [ts_i + 1 - lookback, ts_i], rows <= i."""
        ts = _sorted_ts(trades)
        lo = np.searchsorted(ts, ts + 1 - self.lookback_ns, side="left")
        out = np.empty(ts.size, dtype=np.float64)
        for i in range(ts.size):
            out[i] = self._window(trades, int(lo[i]), i + 1, int(ts[i]) + 1)
        return out

    def at(self, trades: TradeBatch, times_ns: npt.ArrayLike) -> F64:
        """One value per T: the function over the trades in [T - lookback, T)."""
        ts = _sorted_ts(trades)
        t = np.asarray(times_ns, dtype=np.int64).reshape(-1)
        lo = np.searchsorted(ts, t - self.lookback_ns, side="left")
        hi = np.searchsorted(ts, t, side="left")
        return np.array(
            [
                self._window(trades, int(a), int(b), int(x))
                for a, b, x in zip(lo, hi, t, strict=True)
            ],
            dtype=np.float64,
        )

    def _window(self, trades: TradeBatch, lo: int, hi: int, t_ns: int) -> float:
        frame = trades_frame(
            trades.ts_event[lo:hi], trades.price[lo:hi], trades.qty[lo:hi], trades.trade_type[lo:hi]
        )
        return self.call(frame, t_ns)


def _sorted_ts(trades: TradeBatch) -> npt.NDArray[np.int64]:
    ts = trades.ts_event
    if ts.size > 1 and bool((np.diff(ts) < 0).any()):
        raise ValidationError(
            "trades must be sorted by ts_event for a user feature; sort or resolve them "
            "first (tickvault.features.known.as_known_at)",
            field="ts_event",
        )
    return ts


class UserFeatureState:
    """The live window of a ``UserFeature``: appends per trade, evaluates on demand."""

    def __init__(self, feature: UserFeature) -> None:
        self.feature = feature
        self._ts: list[int] = []
        self._price: list[float] = []
        self._qty: list[int] = []
        self._type: list[int] = []
        self._head = 0

    def update(self, ts_event: int, price: float, qty: int, trade_type: int) -> None:
        """Keep one more trade; drop those no later T can need. O(1) amortised."""
        if self._ts and ts_event < self._ts[-1]:
            raise ValidationError(
                f"trade at ts_event {ts_event} is older than the last one ({self._ts[-1]}): "
                "feed trades in time order",
                field="ts_event",
            )
        self._ts.append(ts_event)
        self._price.append(price)
        self._qty.append(qty)
        self._type.append(trade_type)
        limit = ts_event + 1 - self.feature.lookback_ns
        self._head = bisect.bisect_left(self._ts, limit, self._head)
        if self._head > 4096 and self._head * 2 > len(self._ts):
            h = self._head
            del self._ts[:h], self._price[:h], self._qty[:h], self._type[:h]
            self._head = 0

    def value(self) -> float:
        """The function at T = last ts_event + 1 ns (NaN-free only if fn makes it so)."""
        if not self._ts:
            return self.feature.call(trades_frame([], [], [], []), 0)
        return self.at(self._ts[-1] + 1)

    def at(self, t_ns: int) -> float:
        """The function at T (T after the last trade seen, or equal to last + 1)."""
        if self._ts and t_ns <= self._ts[-1]:
            raise ValidationError(
                f"at({t_ns}): T must be after the last trade seen ({self._ts[-1]}); "
                "evaluate earlier times in batch",
                field="T",
            )
        lo = bisect.bisect_left(self._ts, t_ns - self.feature.lookback_ns, self._head)
        frame = trades_frame(self._ts[lo:], self._price[lo:], self._qty[lo:], self._type[lo:])
        return self.feature.call(frame, t_ns)
