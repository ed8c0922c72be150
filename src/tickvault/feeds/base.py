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
import time
from collections.abc import Iterator, Sequence
from typing import Protocol

import numpy as np
import numpy.typing as npt

from tickvault.errors import ConfigError
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


class NullEvents:
    """``FeedEvents`` that ignore everything: a base for ones that want a few events."""

    def on_trade(self, symbol: str, trades: npt.NDArray[np.void]) -> None:
        pass

    def on_history_trade(self, symbol: str, trades: npt.NDArray[np.void]) -> None:
        pass

    def on_book(self, symbol: str, updates: npt.NDArray[np.void]) -> None:
        pass

    def on_state(self, conn_type: int, result: int) -> None:
        pass

    def on_progress(self, symbol: str, percent: int) -> None:
        pass


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


def merged_bursts(
    symbols: Sequence[str], arrays: Sequence[npt.NDArray[np.void]]
) -> Iterator[tuple[str, npt.NDArray[np.void]]]:
    """(symbol, trades) runs in event order across symbols: each run is consecutive
    trades of one symbol at one timestamp (an aggression swept in one millisecond).
    ``arrays`` are ``TRADE_DTYPE`` records per symbol, each sorted by time."""
    if not arrays:
        return
    ts = np.concatenate([a["ts_event"] for a in arrays])
    sym = np.concatenate([np.full(len(a), i, np.int32) for i, a in enumerate(arrays)])
    row = np.concatenate([np.arange(len(a)) for a in arrays])
    order = np.lexsort((row, sym, ts))
    ts, sym, row = ts[order], sym[order], row[order]
    cut = np.flatnonzero((np.diff(ts) != 0) | (np.diff(sym) != 0)) + 1
    bounds = np.concatenate([[0], cut, [len(ts)]])
    for lo, hi in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
        s = int(sym[lo])
        yield symbols[s], arrays[s][row[lo] : row[hi - 1] + 1]


class Pacer:
    """Holds deliveries to event time: ``speed`` 1.0 real time, 10.0 ten times faster,
    None as fast as possible."""

    def __init__(self, speed: float | None):
        if speed is not None and speed <= 0:
            raise ConfigError(
                f"feeder speed must be above 0 (1 real time, 10 ten times faster; None for "
                f"as fast as possible), got {speed}"
            )
        self.speed = speed
        self._sim0: int | None = None
        self._wall0 = time.monotonic()

    def wait(self, ts_event: int, stop: threading.Event) -> bool:
        """Sleep until ``ts_event`` is due; False when ``stop`` was set meanwhile."""
        if self._sim0 is None:
            self._sim0, self._wall0 = ts_event, time.monotonic()
        if self.speed is None:
            return not stop.is_set()
        due = self._wall0 + (ts_event - self._sim0) / 1e9 / self.speed
        delay = due - time.monotonic()
        if delay > 0:
            return not stop.wait(delay)
        return not stop.is_set()
