"""ProfitDLL history requests: ``GetHistoryTrades`` within the DLL's rules
(``convert.plan_history``: no start older than 30 days, WIN/WDO one day per request,
one request at a time per symbol, since history callbacks carry no request id).

``HistoryRequests`` is the part of ``ProfitDLLFeeder`` that asks for history and
waits for each answer; the feeder's worker thread delivers the answer's callbacks to
the ``HistoryWait`` of the symbol.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from tickvault.errors import FeedError
from tickvault.feeds.base import FeedEvents
from tickvault.feeds.profitdll import convert
from tickvault.feeds.profitdll.binding import ProfitDLL
from tickvault.feeds.profitdll.credentials import FUTURES_PREFIXES
from tickvault.records.validate import check_symbol
from tickvault.timeutil import now_ns


@dataclass(slots=True)
class HistoryWait:
    events: FeedEvents
    start_ns: int
    end_ns: int
    done: threading.Event = field(default_factory=threading.Event)
    """Set by progress 100, which ends a request."""
    last_packet_at: float | None = None
    """When the trade flagged 'last packet' was delivered (monotonic s)."""
    delivered: int = 0
    numbers: convert.TradeNumbers = field(default_factory=lambda: convert.TradeNumbers(days=64))
    """Trade numbers of this request's answer (an edit may follow its trade here)."""
    error: FeedError | None = None
    """Why the request ended without an answer (the DLL reported the ticker unknown)."""


class HistoryRequests:
    """History requests of a ProfitDLL session (mixed into ``ProfitDLLFeeder``)."""

    tz: ZoneInfo
    history_timeout_s: float
    _exchange: dict[str, str]
    _history_locks: dict[str, threading.Lock]
    _history: dict[str, HistoryWait]
    _queue: queue.SimpleQueue[tuple[Any, ...] | None]

    def _await_session(self) -> ProfitDLL:
        raise NotImplementedError

    def _await_history(self, wait: HistoryWait, symbol: str, which: str) -> None:
        """Until the request ends: progress 100, or 1 s after the last-packet trade if no
        progress comes. Then every callback queued so far is drained, so nothing of this
        request is taken for the next one."""
        deadline = time.monotonic() + self.history_timeout_s
        while not wait.done.wait(0.05):
            now = time.monotonic()
            if wait.last_packet_at is not None and now - wait.last_packet_at > 1.0:
                break
            if now > deadline:
                raise FeedError(
                    f"ProfitDLL sent no end of history for {symbol} within "
                    f"{self.history_timeout_s:.0f} s ({which})"
                )
        drained = threading.Event()
        self._queue.put(("sync", drained))
        drained.wait(self.history_timeout_s)

    def set_exchange(self, symbol: str, exchange: str) -> None:
        """The exchange to ask for ``symbol``'s history ("F" or "B")."""
        self._exchange[check_symbol(symbol)] = exchange

    def exchange_of(self, symbol: str) -> str:
        return self._exchange.get(symbol, "F" if symbol.startswith(FUTURES_PREFIXES) else "B")

    def request_history(self, symbol: str, start_ns: int, end_ns: int, events: FeedEvents) -> None:
        """Fetch [start_ns, end_ns) through ``GetHistoryTrades``, within the DLL's rules;
        blocks until every request answered. Never call from a DLL callback."""
        dll = self._await_session()
        symbol = check_symbol(symbol)
        windows = convert.plan_history(symbol, start_ns, end_ns, now_ns=now_ns(), tz=self.tz)
        lock = self._history_locks.setdefault(symbol, threading.Lock())
        with lock:  # one request at a time per symbol: callbacks carry no request id
            for i, (lo, hi) in enumerate(windows):
                wait = HistoryWait(events, lo, hi)
                self._history[symbol] = wait
                try:
                    dll.call(
                        "GetHistoryTrades", symbol, self.exchange_of(symbol),
                        convert.format_request_date(lo, self.tz),
                        convert.format_request_date(hi - 1, self.tz),
                    )  # fmt: skip
                    self._await_history(wait, symbol, f"request {i + 1} of {len(windows)}")
                    if wait.error is not None:
                        raise wait.error
                finally:
                    self._history.pop(symbol, None)
                events.on_progress(symbol, (i + 1) * 100 // len(windows))
