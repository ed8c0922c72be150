"""A set of intraday features: one live state per symbol, or a batch over a TradeBatch.

    fs = FeatureSet()                       # the default set
    state = fs.new_state()
    row = state.update(ts_event, price, qty, trade_type)   # live, per trade
    cols = fs.batch(trades)                 # the same rows, vectorised
    frame = fs.at(trades, times)            # values at given times T

``batch(trades)[name][i]`` equals, bit for bit, the value ``update`` returned
after trade i when the same trades (and book tops) were fed in order.
"""

from __future__ import annotations

from collections.abc import Sequence
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
import pandas as pd

from tickvault.errors import QueryError
from tickvault.features.base import Feature
from tickvault.features.batch import BookTops, evaluate_at, evaluate_rows
from tickvault.features.intraday import (
    DEFAULT_LARGE_TRADE_MIN_QTY,
    LargeTradeShare,
    default_features,
)
from tickvault.features.live import IntradayState
from tickvault.records.trades import TradeBatch
from tickvault.venue.b3 import B3_TZ

F64 = npt.NDArray[np.float64]


class FeatureSet:
    """An ordered set of intraday features with unique names."""

    def __init__(self, features: Sequence[Feature] | None = None, *, tz: ZoneInfo = B3_TZ) -> None:
        self.features: tuple[Feature, ...] = tuple(
            default_features() if features is None else features
        )
        names = [f.name for f in self.features]
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})
            raise QueryError(f"feature names must be unique in a set; repeated: {', '.join(dup)}")
        thresholds = {f.min_qty for f in self.features if isinstance(f, LargeTradeShare)}
        if len(thresholds) > 1:
            raise QueryError(
                f"one large-trade threshold per feature set, got {sorted(thresholds)}; "
                "use one FeatureSet per threshold"
            )
        self.large_min_qty = thresholds.pop() if thresholds else DEFAULT_LARGE_TRADE_MIN_QTY
        self.windows_ns: tuple[int, ...] = tuple(
            sorted({w for f in self.features for w in f.windows_ns})
        )
        if any(w <= 0 for w in self.windows_ns):
            raise QueryError(f"feature windows must be > 0 ns, got {self.windows_ns}")
        self.tz = tz

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)

    def new_state(self) -> IntradayState:
        """A fresh live state (one per symbol)."""
        return IntradayState(self.features, self.windows_ns, self.large_min_qty, self.tz)

    def batch(self, trades: TradeBatch, book: BookTops | None = None) -> dict[str, F64]:
        """One value per trade row, equal to what the live state returns after each trade."""
        return evaluate_rows(
            self.features,
            self.windows_ns,
            trades,
            large_min_qty=self.large_min_qty,
            tz=self.tz,
            book=book,
        )

    def at(
        self, trades: TradeBatch, times_ns: npt.ArrayLike, book: BookTops | None = None
    ) -> pd.DataFrame:
        """Values at each time T (index: T as ns), from trades with ts_event < T.

        ``trades`` must hold the resolved trades known at the latest T (see
        ``tickvault.features.known.as_known_at``); rows with ts_event >= T are
        ignored for that T by construction.
        """
        t = np.asarray(times_ns, dtype=np.int64).reshape(-1)
        cols = evaluate_at(
            self.features,
            self.windows_ns,
            trades,
            t,
            large_min_qty=self.large_min_qty,
            tz=self.tz,
            book=book,
        )
        return pd.DataFrame(cols, index=pd.Index(t, name="T"))

    def describe(self) -> list[dict[str, object]]:
        return [f.describe() for f in self.features]
