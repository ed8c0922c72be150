"""Point-in-time evaluation from raw records: the reference (slow) path, pure.

Every function here takes the raw records (trades, repeats, edits, cancels, as
stored) and a time T, keeps what was known at T (``known.as_known_at``: the
knowledge time by default, the store's ``ts_recv`` with ``mode="store"``),
resolves it, and only then computes. So a record with ts_event >= T, or known
after T, cannot change a value at T: the property tests check it on random
streams. The live worker and the fast aggregate store (later layers) must
return the same values; this is what they are checked against.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pandas as pd

from tickvault.errors import QueryError
from tickvault.features.aggregates import SessionAggregates, build_session_aggregates
from tickvault.features.featureset import FeatureSet
from tickvault.features.history import HistoryParams, history_features
from tickvault.features.known import DEFAULT_FEED_LATENCY_NS, Mode, as_known_at
from tickvault.records.trades import TradeBatch
from tickvault.timeutil import format_ns
from tickvault.venue.b3 import B3_TZ, SessionHours, default_hours, previous_sessions, session_of


def history_at(
    symbol: str,
    records: TradeBatch,
    t_ns: int,
    *,
    params: HistoryParams | None = None,
    mode: Mode = "knowledge",
    feed_latency_ns: int = DEFAULT_FEED_LATENCY_NS,
    hours: SessionHours | None = None,
) -> dict[str, float | str | None]:
    """The history features at T from raw records; QueryError when T is in no session."""
    p = params or HistoryParams()
    s = session_of(symbol, t_ns, hours)
    if s is None:
        h = hours or default_hours(symbol)
        raise QueryError(
            f"T={format_ns(t_ns, B3_TZ)} (America/Sao_Paulo) is outside every {symbol} session "
            f"({h.open:%H:%M}-{h.close:%H:%M} on B3 trading days): history features exist "
            "only during a session"
        )
    known = as_known_at(records, t_ns, mode=mode, feed_latency_ns=feed_latency_ns)
    current = build_session_aggregates(symbol, s.date, known, as_of_ns=t_ns, hours=hours)
    n = max(p.momentum_sessions, p.volatility_sessions, 1)
    previous: dict[dt.date, SessionAggregates] = {}
    for d in previous_sessions(symbol, s.date, n):
        a = build_session_aggregates(symbol, d, known, hours=hours)
        if a.first_ts is not None:
            previous[d] = a
    return history_features(symbol, t_ns, current, previous, p)


def intraday_at(
    records: TradeBatch,
    times_ns: Sequence[int] | npt.NDArray[np.int64],
    feature_set: FeatureSet | None = None,
    *,
    mode: Mode = "knowledge",
    feed_latency_ns: int = DEFAULT_FEED_LATENCY_NS,
) -> pd.DataFrame:
    """The intraday set at each T, each from the records known at that T."""
    fs = feature_set or FeatureSet()
    rows = []
    for t in np.asarray(times_ns, dtype=np.int64).tolist():
        known = as_known_at(records, t, mode=mode, feed_latency_ns=feed_latency_ns)
        rows.append(fs.at(known, [t]))
    if not rows:
        return fs.at(TradeBatch.empty(), [])
    return pd.concat(rows)
