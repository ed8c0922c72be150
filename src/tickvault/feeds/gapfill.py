"""``GapFiller``: backfill what a feed missed while it was reconnecting.

``GapFiller`` wraps the events of a running feeder. It remembers the last trade
of each symbol; when market data disconnects and comes back, the first new
trade of each symbol opens a backfill of [last trade + 1 ns, first new trade)
on a worker thread, published as history (the bridge stores it in the
historical stream, and reads merge both streams, one copy per trade). Market
state 6 ("partially connected": the client does not drain callbacks fast
enough, and some may have been lost) is checked the same way, from the last
trade before it (included) to the first trade after market data is connected
(4) again. A span the history API refuses or cannot serve is published as a
gap, which the bridge records as a gap marker.
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from tickvault.errors import FeedError, TickvaultError
from tickvault.feeds.base import Feeder, FeedEvents
from tickvault.records.events import (
    CONN_MARKET,
    MARKET_CONNECTED,
    MARKET_DOWN,
    MARKET_PARTIAL,
    PARTIAL_REASON_OFFSET,
    REASON_FAILED,
    REASON_NO_HISTORY,
    REASON_PERIOD_LIMIT,
)
from tickvault.records.trades import TradeFlag
from tickvault.transport.publisher import Publisher

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Symbol:
    last_ts: int | None = None
    await_fill: bool = False
    """Market data is back after a disconnect or state 6: the next trade opens a backfill."""
    fill_from: int | None = None
    """Where the span to backfill starts: after the last trade before a disconnect, or at
    the last trade before state 6 (callbacks may have been lost from then on)."""
    partial: bool = False
    """The span comes from state 6 (partially connected), not from a disconnect."""


@dataclass(slots=True)
class GapFillStats:
    requested: int = 0
    filled: int = 0
    gaps: int = 0
    spans: list[tuple[str, int, int]] = field(default_factory=list)


class GapFiller:
    """FeedEvents in front of ``inner``: passes everything on, and backfills what a
    reconnect made the feed miss (see the module doc)."""

    def __init__(self, inner: FeedEvents, feeder: Feeder, publisher: Publisher):
        self.inner = inner
        self.feeder = feeder
        self.publisher = publisher
        self.stats = GapFillStats()
        self._symbols: dict[str, _Symbol] = {}
        self._lock = threading.Lock()
        self._down = False
        self._jobs: queue.SimpleQueue[tuple[str, int, int, bool] | None] = queue.SimpleQueue()
        self._worker = threading.Thread(target=self._work, name="tickvault-gapfill", daemon=True)
        self._worker.start()

    def close(self, timeout_s: float = 60.0) -> None:
        """Finish the backfills queued so far, then stop the worker."""
        self._jobs.put(None)
        self._worker.join(timeout_s)

    # ------------------------------------------------------------------ events
    def on_trade(self, symbol: str, trades: npt.NDArray[np.void]) -> None:
        # Per burst, on the feeder's thread: corrections carry old times, so they are
        # left out, but only looked for when some record has a flag.
        fresh = trades
        if trades["flags"].any():
            fresh = trades[(trades["flags"] & np.uint8(TradeFlag.EDIT | TradeFlag.CANCEL)) == 0]
        if len(fresh):
            ts = fresh["ts_event"]
            first, last = int(ts.min()), int(ts.max())
            with self._lock:
                s = self._symbols.setdefault(symbol, _Symbol())
                if s.await_fill and s.fill_from is not None and first > s.fill_from:
                    self._jobs.put((symbol, s.fill_from, first, s.partial))
                    self.stats.requested += 1
                if s.await_fill:
                    s.await_fill, s.fill_from, s.partial = False, None, False
                s.last_ts = last if s.last_ts is None else max(s.last_ts, last)
        self.inner.on_trade(symbol, trades)

    def on_history_trade(self, symbol: str, trades: npt.NDArray[np.void]) -> None:
        self.inner.on_history_trade(symbol, trades)

    def on_book(self, symbol: str, updates: npt.NDArray[np.void]) -> None:
        self.inner.on_book(symbol, updates)

    def on_state(self, conn_type: int, result: int) -> None:
        if conn_type == CONN_MARKET:
            with self._lock:
                if result == MARKET_CONNECTED and self._down:
                    self._down = False
                    for s in self._symbols.values():
                        if s.last_ts is not None:
                            s.await_fill = True
                            after_last = s.last_ts + 1
                            s.fill_from = min(s.fill_from or after_last, after_last)
                elif result in MARKET_DOWN:  # disconnected, connecting, waiting, no login
                    self._down = True
                elif result == MARKET_PARTIAL:  # callbacks may be lost until it is back to 4
                    self._down = True
                    for s in self._symbols.values():
                        if s.last_ts is not None and s.fill_from is None:
                            s.fill_from, s.partial = s.last_ts, True
        self.inner.on_state(conn_type, result)

    def on_progress(self, symbol: str, percent: int) -> None:
        self.inner.on_progress(symbol, percent)

    # ------------------------------------------------------------------ worker
    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            symbol, start, end, partial = job
            self.stats.spans.append((symbol, start, end))
            why = "market data was partially connected" if partial else "a reconnect"
            offset = PARTIAL_REASON_OFFSET if partial else 0
            try:
                self.feeder.request_history(symbol, start, end, self.inner)
                self.stats.filled += 1
                log.info("backfilled %s after %s: %d..%d", symbol, why, start, end)
            except NotImplementedError:
                self._gap(symbol, start, end, REASON_NO_HISTORY + offset)
            except FeedError as exc:
                limited = "limit" in str(exc) or "NL_HISTORY_PERIOD_LIMIT" in str(exc)
                reason = REASON_PERIOD_LIMIT if limited else REASON_FAILED
                self._gap(symbol, start, end, reason + offset)
                log.warning("could not backfill %s after %s: %s", symbol, why, exc)
            except TickvaultError as exc:
                self._gap(symbol, start, end, REASON_FAILED + offset)
                log.warning("could not backfill %s after %s: %s", symbol, why, exc)

    def _gap(self, symbol: str, start: int, end: int, reason: int) -> None:
        self.stats.gaps += 1
        self.publisher.publish_gap(symbol, start, end, reason)
