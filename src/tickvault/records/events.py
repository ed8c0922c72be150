"""Feed event records (pure): connection states, history progress, and gaps.

The state codes are ProfitDLL's (``connStateType``, ``result``) pairs, which the
wire format carries as the one vocabulary of feeder states: every feeder reports
its connection through them (``FeedEvents.on_state``), and the gap filler reads
them to know when market data came back. They are defined here once; the
ProfitDLL package adds their texts (``feeds.profitdll.states``).

Gap reasons are the ``reason`` codes of ``GAP_DTYPE`` records: a span of a
symbol's trades that a feeder knows it missed and could not backfill.
"""

from __future__ import annotations

import numpy as np

CONN_LOGIN, CONN_ROUTING, CONN_MARKET, CONN_ACTIVATION = 0, 1, 2, 3
"""ProfitDLL's connection types (``connStateType``)."""
MARKET_CONNECTED, MARKET_PARTIAL = 4, 6
"""Market-data results: connected, and partially connected (callbacks are not drained
fast enough, some may have been lost)."""
MARKET_DOWN = frozenset({0, 1, 2, 3})
"""Market-data results that mean it is not delivering: disconnected, connecting,
waiting, not logged in."""
CONN_SUBSCRIPTION, SUBSCRIPTION_UNKNOWN_TICKER = 100, 1
"""tickvault's own state (ProfitDLL's connection types are 0-3): a subscribed ticker is
unknown to the feed."""

STATE_DTYPE = np.dtype([("ts_event", "<i8"), ("conn_type", "<i4"), ("result", "<i4")])
"""A feeder connection state: ProfitDLL's (connStateType, result) pair."""

PROGRESS_DTYPE = np.dtype([("ts_event", "<i8"), ("percent", "<i4")])
"""History-request progress, 1..100."""


GAP_DTYPE = np.dtype(
    [("ts_event", "<i8"), ("start_ns", "<i8"), ("end_ns", "<i8"), ("reason", "u1")]
)
"""A span of a symbol's trades the feeder knows it missed and could not backfill:
[start_ns, end_ns). ``reason``: see ``GAP_REASONS``."""
GAP_REASONS: dict[int, str] = {
    1: "feed reconnected; the history API refused the span (period limit)",
    2: "feed reconnected; the feeder has no history API",
    3: "feed reconnected; the history request failed",
    4: "market data partially connected (callbacks may be lost); the history API refused "
    "the span (period limit)",
    5: "market data partially connected (callbacks may be lost); the feeder has no history API",
    6: "market data partially connected (callbacks may be lost); the history request failed",
}

REASON_PERIOD_LIMIT, REASON_NO_HISTORY, REASON_FAILED = 1, 2, 3
"""Gap reasons after a reconnect; a span of market state 6 (partially connected) adds
``PARTIAL_REASON_OFFSET`` (4, 5, 6)."""
PARTIAL_REASON_OFFSET = 3
