"""Feed event records (pure): connection states, history progress, and gaps.

The state codes are ProfitDLL's (``connStateType``, ``result``) pairs, which the
wire format carries as the one vocabulary of feeder states: every feeder reports
its connection through them (``FeedEvents.on_state``), and the gap filler reads
them to know when market data came back. They are defined here once; the
ProfitDLL package adds their texts (``feeds.profitdll.states``).

``Gap`` is the one gap record: a span of one symbol's data known to be incomplete,
whoever found it (the subscriber: messages lost in transport; a feeder: trades it
missed and could not backfill). A feeder reports its gaps on the wire packed as
``GAP_DTYPE`` rows (what it knows: the span and a ``GAP_REASONS`` code), which
``feeder_gaps`` turns into ``Gap`` records; the store keeps them as JSON
(``storage.markers``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

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


@dataclass(frozen=True, slots=True)
class Gap:
    """A span of one symbol's data known to be incomplete: messages ``seq_first..seq_last``
    of ``topic`` from ``publisher``, between ``start_ns`` and ``end_ns``."""

    symbol: str
    """The symbol (canonical once the bridge has checked it)."""
    stream: str
    """The stored stream it belongs to (``realtime``, ``historical``, ``book``); empty in a
    gap the subscriber reports, which the bridge files under its stream."""
    start_ns: int
    """ts_event of the last record delivered before the gap (or the topic's first ever);
    for a feeder's gap, the start of the span it missed."""
    end_ns: int
    """ts_event of the first record delivered after the gap (or the last one known); for
    a feeder's gap, the end of the span it missed."""
    publisher: str
    """The publisher's id, 16 hex digits (``publisher_id`` as an int)."""
    topic: str
    seq_first: int
    seq_last: int
    reason: str

    @property
    def publisher_id(self) -> int:
        return int(self.publisher, 16)


def publisher_name(publisher: int) -> str:
    """A publisher id as ``Gap.publisher`` writes it: 16 hex digits."""
    return f"{publisher:016x}"


GAP_DTYPE = np.dtype(
    [("ts_event", "<i8"), ("start_ns", "<i8"), ("end_ns", "<i8"), ("reason", "u1")]
)
"""A feeder's ``Gap`` as it travels on the wire (a GAP message's records): a span of a
symbol's trades the feeder knows it missed and could not backfill, [start_ns, end_ns).
``reason``: see ``GAP_REASONS``; ``feeder_gaps`` makes ``Gap`` records of them."""
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


def feeder_gaps(
    records: npt.NDArray[np.void], *, symbol: str, publisher: int, topic: str, seq: int
) -> list[Gap]:
    """The ``Gap`` records of a feeder's GAP message (``GAP_DTYPE`` rows), message ``seq``
    of ``topic``."""
    return [
        Gap(
            symbol=symbol, stream="realtime", start_ns=int(r["start_ns"]),
            end_ns=int(r["end_ns"]), publisher=publisher_name(publisher), topic=topic,
            seq_first=seq, seq_last=seq,
            reason=GAP_REASONS.get(int(r["reason"]), f"feeder reason {int(r['reason'])}"),
        )
        for r in records
    ]  # fmt: skip
