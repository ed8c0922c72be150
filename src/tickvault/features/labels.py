"""Labels: forward returns, computed from data AFTER T (never features).

``label_fwd_ret_<h>`` at T = ln(p(T + h) / p(T)), with p(t) the price of the last
trade of T's session with ts_event < t. Every name starts with ``label_`` so a
label can never be mistaken for a feature (``is_label``). NaN when T is outside
a session, when T + h is after the session's close (a label never spans the
night), or when the session has no trade before T.

Labels describe what happened, so they are computed from the final resolved
trades (everything known now), not from what was known at T.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from tickvault.errors import QueryError
from tickvault.features.base import window_label
from tickvault.records.trades import TradeBatch, TradeFlag
from tickvault.venue.b3 import SessionHours, session_of

F64 = npt.NDArray[np.float64]
LABEL_PREFIX = "label_fwd_ret_"
_CORRECTION = np.uint8(TradeFlag.EDIT | TradeFlag.CANCEL)


def label_name(horizon_ns: int) -> str:
    """``label_fwd_ret_5min`` for a 5-minute horizon."""
    return f"{LABEL_PREFIX}{window_label(horizon_ns)}"


def is_label(name: str) -> bool:
    return name.startswith("label_")


def forward_return_labels(
    symbol: str,
    trades: TradeBatch,
    times_ns: npt.ArrayLike,
    horizons_ns: Sequence[int],
    *,
    hours: SessionHours | None = None,
) -> dict[str, F64]:
    """One column per horizon, one value per T (see the module docstring)."""
    if any(h <= 0 for h in horizons_ns):
        raise QueryError(f"label horizons must be > 0 ns, got {list(horizons_ns)}")
    if bool((trades.flags & _CORRECTION).any()):
        raise QueryError(
            "labels need resolved trades, got EDIT/CANCEL records: "
            "resolve them first (tickvault.features.known.as_known_at)"
        )
    ts = np.asarray(trades.ts_event, dtype=np.int64)
    if ts.size > 1 and bool((np.diff(ts) < 0).any()):
        raise QueryError("labels need trades sorted by ts_event")
    t = np.asarray(times_ns, dtype=np.int64).reshape(-1)
    opens = np.full(t.size, -1, dtype=np.int64)
    closes = np.full(t.size, -1, dtype=np.int64)
    for i, x in enumerate(t.tolist()):
        s = session_of(symbol, x, hours)
        if s is not None:
            opens[i], closes[i] = s.open_ns, s.close_ns
    in_session = opens >= 0
    first_in_session = np.searchsorted(ts, opens, side="left")
    now = np.searchsorted(ts, t, side="left") - 1
    ok_now = in_session & (now >= first_in_session) & (now >= 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        lp = np.log(np.asarray(trades.price, dtype=np.float64))
    out: dict[str, F64] = {}
    for h in horizons_ns:
        later = np.searchsorted(ts, t + h, side="left") - 1
        ok = ok_now & (t + h <= closes)
        value = np.full(t.size, np.nan)
        value[ok] = lp[later[ok]] - lp[now[ok]]
        out[label_name(h)] = value
    return out
