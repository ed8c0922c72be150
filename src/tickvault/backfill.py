"""History backfill: on request (``backfill``) and after a feed reconnects (``GapFiller``).

``backfill`` asks a feeder's history API for a span and stores the answer in the
historical stream directly. The feeder enforces its own rules (ProfitDLL: no
start older than 30 days, WIN/WDO one day per request, one request at a time
per symbol).

``GapFiller`` wraps the events of a running feeder. It remembers the last trade
of each symbol; when market data disconnects and comes back, the first new
trade of each symbol opens a backfill of [last trade + 1 ns, first new trade)
on a worker thread, published as history (the bridge stores it in the
historical stream, and reads merge both streams). A span the history API
refuses or cannot serve is published as a gap, which the bridge records as a
gap marker.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from tickvault.errors import FeedError, TickvaultError
from tickvault.feeds.base import Feeder, FeedEvents, NullEvents
from tickvault.model.trades import TradeFlag
from tickvault.transport.publisher import Publisher
from tickvault.vault import Vault

log = logging.getLogger(__name__)

CONN_MARKET, MARKET_CONNECTED = 2, 4
REASON_PERIOD_LIMIT, REASON_NO_HISTORY, REASON_FAILED = 1, 2, 3


@dataclass(slots=True)
class BackfillReport:
    symbol: str
    start_ns: int
    end_ns: int
    stored: int = 0


class StoringEvents(NullEvents):
    """FeedEvents that store history trades into the historical stream (and report
    progress); everything else is ignored."""

    def __init__(self, vault: Vault, progress: Callable[[str, int], None] | None = None):
        self.vault = vault
        self.progress = progress
        self.stored = 0

    def on_history_trade(self, symbol: str, trades: npt.NDArray[np.void]) -> None:
        self.stored += self.vault.write_trades(symbol, trades, stream="historical")

    def on_progress(self, symbol: str, percent: int) -> None:
        if self.progress is not None:
            self.progress(symbol, percent)


def backfill(
    vault: Vault,
    feeder: Feeder,
    symbol: str,
    start_ns: int,
    end_ns: int,
    *,
    progress: Callable[[str, int], None] | None = None,
) -> BackfillReport:
    """Fetch [start_ns, end_ns) of ``symbol`` from ``feeder``'s history API into the store."""
    events = StoringEvents(vault, progress)
    try:
        feeder.request_history(symbol, start_ns, end_ns, events)
    except NotImplementedError as exc:
        raise FeedError(f"{exc}; use --feed sim, profitdll or file") from exc
    return BackfillReport(symbol, start_ns, end_ns, events.stored)


@dataclass(slots=True)
class _Symbol:
    last_ts: int | None = None
    await_fill: bool = False
    """Disconnected since the last trade: the next trade opens a backfill."""


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
        self._jobs: queue.SimpleQueue[tuple[str, int, int] | None] = queue.SimpleQueue()
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
                if s.await_fill and s.last_ts is not None and first > s.last_ts + 1:
                    self._jobs.put((symbol, s.last_ts + 1, first))
                    self.stats.requested += 1
                s.await_fill = False
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
                        s.await_fill = True
                elif result in (0, 1, 2, 3):  # disconnected, connecting, waiting, no login
                    self._down = True
        self.inner.on_state(conn_type, result)

    def on_progress(self, symbol: str, percent: int) -> None:
        self.inner.on_progress(symbol, percent)

    # ------------------------------------------------------------------ worker
    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            symbol, start, end = job
            self.stats.spans.append(job)
            try:
                self.feeder.request_history(symbol, start, end, self.inner)
                self.stats.filled += 1
                log.info("backfilled %s after a reconnect: %d..%d", symbol, start, end)
            except NotImplementedError:
                self._gap(symbol, start, end, REASON_NO_HISTORY)
            except FeedError as exc:
                limited = "limit" in str(exc) or "NL_HISTORY_PERIOD_LIMIT" in str(exc)
                self._gap(symbol, start, end, REASON_PERIOD_LIMIT if limited else REASON_FAILED)
                log.warning("could not backfill %s after a reconnect: %s", symbol, exc)
            except TickvaultError as exc:
                self._gap(symbol, start, end, REASON_FAILED)
                log.warning("could not backfill %s after a reconnect: %s", symbol, exc)

    def _gap(self, symbol: str, start: int, end: int, reason: int) -> None:
        self.stats.gaps += 1
        self.publisher.publish_gap(symbol, start, end, reason)
