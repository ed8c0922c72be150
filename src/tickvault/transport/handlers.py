"""What a ``Subscriber`` calls: the ``Handler`` protocol, and ``SinkHandler``, which feeds
an in-memory structure the way the original design did."""

from __future__ import annotations

from typing import Any, Protocol

from tickvault.records.events import Gap
from tickvault.transport.wire import Kind, Message, WireError


class Handler(Protocol):
    """What a ``Subscriber`` calls, on its own thread, in sequence order per topic."""

    def resume_seq(self, publisher: int, topic: str) -> int | None:
        """The last sequence number already handled for this (publisher, topic) in an
        earlier life (a restarted bridge reads it from the store), or None. May raise a
        TickvaultError (the store is unreachable): the message is dropped untracked and
        fetched again once the position can be read."""

    def on_message(self, msg: Message) -> None: ...

    def on_gap(self, gap: Gap) -> None: ...

    def on_invalid(self, frames: list[bytes], error: WireError) -> None: ...


class SinkHandler:
    """Feeds an existing in-memory structure the way the original design did:
    ``sink.add_tick_data(tick)`` per live trade, ``sink.add_historical_tick(tick)`` per
    history trade, where ``tick`` is a dict of the trade's fields plus ``symbol``."""

    def __init__(self, sink: Any):
        self.sink = sink
        self.gaps: list[Gap] = []
        self.invalid: list[WireError] = []

    def resume_seq(self, publisher: int, topic: str) -> int | None:
        return None

    def on_message(self, msg: Message) -> None:
        if msg.kind is Kind.TRADE:
            add = self.sink.add_tick_data
        elif msg.kind is Kind.HISTORY:
            add = self.sink.add_historical_tick
        else:
            return
        records = msg.records()
        names = records.dtype.names or ()
        for row in records.tolist():
            tick = dict(zip(names, row, strict=True))
            tick["symbol"] = msg.symbol
            add(tick)

    def on_gap(self, gap: Gap) -> None:
        self.gaps.append(gap)

    def on_invalid(self, frames: list[bytes], error: WireError) -> None:
        self.invalid.append(error)
