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


@dataclass(frozen=True, slots=True)
class FillJob:
    """A span of one symbol to backfill: [start_ns, end_ns)."""

    symbol: str
    start_ns: int
    end_ns: int
    partial: bool
    """From state 6 (partially connected), not from a disconnect."""


class GapTracker:
    """The gap filler's rules as a pure state machine (no threads, no I/O): fed the
    feed's states and its live trades' event times, it says which spans to backfill.
    Not thread-safe on its own; ``GapFiller`` holds a lock around it."""

    def __init__(self) -> None:
        self._symbols: dict[str, _Symbol] = {}
        self._down = False

    def on_state(self, conn_type: int, result: int) -> None:
        if conn_type != CONN_MARKET:
            return
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

    def on_trades(self, symbol: str, first_ts: int, last_ts: int) -> FillJob | None:
        """Live trades (corrections left out) of ``symbol`` spanning [first_ts, last_ts]:
        the span to backfill that they close, if any."""
        s = self._symbols.setdefault(symbol, _Symbol())
        job = None
        if s.await_fill and s.fill_from is not None and first_ts > s.fill_from:
            job = FillJob(symbol, s.fill_from, first_ts, s.partial)
        if s.await_fill:
            s.await_fill, s.fill_from, s.partial = False, None, False
        s.last_ts = last_ts if s.last_ts is None else max(s.last_ts, last_ts)
        return job


def gap_reason(error: BaseException | None, *, partial: bool) -> int:
    """The ``GAP_REASONS`` code of a span the history API did not fill: ``error`` is
    NotImplementedError (no history API), a FeedError (refused: a period limit, or
    failed) or another TickvaultError (failed)."""
    offset = PARTIAL_REASON_OFFSET if partial else 0
    if isinstance(error, NotImplementedError):
        return REASON_NO_HISTORY + offset
    if isinstance(error, FeedError):
        limited = "limit" in str(error) or "NL_HISTORY_PERIOD_LIMIT" in str(error)
        return (REASON_PERIOD_LIMIT if limited else REASON_FAILED) + offset
    return REASON_FAILED + offset


@dataclass(slots=True)
class GapFillStats:
    requested: int = 0
    filled: int = 0
    gaps: int = 0
    spans: list[tuple[str, int, int]] = field(default_factory=list)


class GapFiller:
    """FeedEvents in front of ``inner``: passes everything on, and backfills what a
    reconnect made the feed miss (see the module doc; the rules: ``GapTracker``)."""

    def __init__(self, inner: FeedEvents, feeder: Feeder, publisher: Publisher):
        self.inner = inner
        self.feeder = feeder
        self.publisher = publisher
        self.stats = GapFillStats()
        self._tracker = GapTracker()
        self._lock = threading.Lock()
        self._jobs: queue.SimpleQueue[FillJob | None] = queue.SimpleQueue()
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
            with self._lock:
                job = self._tracker.on_trades(symbol, int(ts.min()), int(ts.max()))
                if job is not None:
                    self._jobs.put(job)
                    self.stats.requested += 1
        self.inner.on_trade(symbol, trades)

    def on_history_trade(self, symbol: str, trades: npt.NDArray[np.void]) -> None:
        self.inner.on_history_trade(symbol, trades)

    def on_book(self, symbol: str, updates: npt.NDArray[np.void]) -> None:
        self.inner.on_book(symbol, updates)

    def on_state(self, conn_type: int, result: int) -> None:
        with self._lock:
            self._tracker.on_state(conn_type, result)
        self.inner.on_state(conn_type, result)

    def on_progress(self, symbol: str, percent: int) -> None:
        self.inner.on_progress(symbol, percent)

    # ------------------------------------------------------------------ worker
    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            symbol, start, end = job.symbol, job.start_ns, job.end_ns
            self.stats.spans.append((symbol, start, end))
            why = "market data was partially connected" if job.partial else "a reconnect"
            try:
                self.feeder.request_history(symbol, start, end, self.inner)
                self.stats.filled += 1
                log.info("backfilled %s after %s: %d..%d", symbol, why, start, end)
            except NotImplementedError as exc:
                self._gap(symbol, start, end, gap_reason(exc, partial=job.partial))
            except TickvaultError as exc:
                self._gap(symbol, start, end, gap_reason(exc, partial=job.partial))
                log.warning("could not backfill %s after %s: %s", symbol, why, exc)

    def _gap(self, symbol: str, start: int, end: int, reason: int) -> None:
        self.stats.gaps += 1
        self.publisher.publish_gap(symbol, start, end, reason)
