"""ZeroMQ endpoints of one publisher, from settings or given explicitly."""

from __future__ import annotations

import itertools
import socket
from dataclasses import dataclass

from tickvault.config import Settings
from tickvault.transport.wire import Kind

SOCKET_NAMES = ("ticks", "book", "history", "signals", "replay")
"""A publisher's sockets, in the order of ``Endpoints``' fields and of the port settings."""


@dataclass(frozen=True, slots=True)
class Endpoints:
    """Where one publisher's sockets are (``tcp://host:port``, ``ipc://...``, ``inproc://...``)."""

    ticks: str
    book: str
    history: str
    signals: str
    replay: str

    @classmethod
    def from_settings(cls, settings: Settings, host: str | None = None) -> Endpoints:
        h = host or settings.zmq_host
        return cls(
            ticks=f"tcp://{h}:{settings.zmq_ticks_port}",
            book=f"tcp://{h}:{settings.zmq_book_port}",
            history=f"tcp://{h}:{settings.zmq_history_port}",
            signals=f"tcp://{h}:{settings.zmq_signals_port}",
            replay=f"tcp://{h}:{settings.zmq_replay_port}",
        )

    @classmethod
    def ipc(cls, directory: str) -> Endpoints:
        """Unix-socket endpoints in ``directory`` (tests and same-host setups)."""
        return cls(*(f"ipc://{directory}/{name}.sock" for name in SOCKET_NAMES))

    def data(self) -> dict[str, str]:
        return {
            "ticks": self.ticks,
            "book": self.book,
            "history": self.history,
            "signals": self.signals,
        }


_INPROC = itertools.count()


def inproc_address(name: str) -> str:
    """A fresh ``inproc://`` address for an internal socket pair of ``name``: unique in
    the process (not ``id(self)``: an object freed while ZeroMQ still closes its socket
    in the background gives its id to the next one, whose bind then fails with "address
    already in use")."""
    return f"inproc://tickvault-{name}-{next(_INPROC)}"


def endpoint_name(kind: Kind) -> str:
    """Which data socket (ticks, history, book, signals) carries messages of ``kind``."""
    if kind in (Kind.TRADE, Kind.STATE):
        return "ticks"
    if kind in (Kind.HISTORY, Kind.PROGRESS, Kind.GAP):
        return "history"
    return "book" if kind is Kind.BOOK else "signals"


def free_tcp_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """``n`` TCP ports free on ``host`` right now (for benchmarks and tests)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind((host, 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()
