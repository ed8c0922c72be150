"""The feeder interface: one small contract every source of market data implements.

A feeder delivers events through the five callbacks of ``FeedEvents``, on its
own thread(s). Records are numpy structured arrays in the wire layouts
(``TRADE_DTYPE``, ``wire.BOOK_DTYPE``), one or more per call, so a burst of
trades in one millisecond is one call. ``PublishingEvents`` turns the callbacks
into ZeroMQ messages; tests and user code may implement ``FeedEvents`` directly.
"""

from __future__ import annotations

import abc
import threading
from typing import Protocol

import numpy as np
import numpy.typing as npt

from tickvault.transport.publisher import Publisher
from tickvault.transport.wire import Kind


class FeedEvents(Protocol):
    """What a feeder calls. Implementations must return quickly (no blocking I/O)."""

    def on_trade(self, symbol: str, trades: npt.NDArray[np.void]) -> None:
        """Realtime trades (``TRADE_DTYPE`` records), in feed order."""

    def on_history_trade(self, symbol: str, trades: npt.NDArray[np.void]) -> None:
        """Trades answering a history request."""

    def on_book(self, symbol: str, updates: npt.NDArray[np.void]) -> None:
        """Offer-book updates (``wire.BOOK_DTYPE`` records)."""

    def on_state(self, conn_type: int, result: int) -> None:
        """Connection state, as ProfitDLL's (connStateType, result) pair."""

    def on_progress(self, symbol: str, percent: int) -> None:
        """Progress of a history request, 1..100."""


class Feeder(abc.ABC):
    """A source of market data. ``run`` blocks until the feed ends or ``stop`` is set."""

    name: str = "feeder"
    symbols: tuple[str, ...] = ()

    @abc.abstractmethod
    def run(self, events: FeedEvents, stop: threading.Event) -> None: ...

    def request_history(self, symbol: str, start_ns: int, end_ns: int, events: FeedEvents) -> None:
        """Deliver the trades of [start_ns, end_ns) through ``events.on_history_trade``."""
        raise NotImplementedError(f"the {self.name} feeder has no history API")


class PublishingEvents:
    """``FeedEvents`` that publish every event on a ``Publisher``."""

    def __init__(self, publisher: Publisher, *, source: str = "feed"):
        self.publisher = publisher
        self.source = source

    def on_trade(self, symbol: str, trades: npt.NDArray[np.void]) -> None:
        self.publisher.publish_trades(symbol, trades)

    def on_history_trade(self, symbol: str, trades: npt.NDArray[np.void]) -> None:
        self.publisher.publish_trades(symbol, trades, history=True)

    def on_book(self, symbol: str, updates: npt.NDArray[np.void]) -> None:
        self.publisher.publish_records(Kind.BOOK, symbol, updates)

    def on_state(self, conn_type: int, result: int) -> None:
        self.publisher.publish_state(conn_type, result, source=self.source)

    def on_progress(self, symbol: str, percent: int) -> None:
        self.publisher.publish_progress(symbol, percent)
