"""Valkey key names. Every key of one symbol carries the hash tag ``{SYMBOL}`` so a
Valkey Cluster keeps them on one slot (multi-key scripts then work per symbol)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal

StreamKind = Literal["realtime", "historical"]
"""The trade streams writers append to (and queries name)."""
STREAMS: tuple[StreamKind, ...] = ("realtime", "historical")
StoredStream = StreamKind | Literal["compacted"]
"""Every stored trade stream: ``compacted`` holds the realtime blocks compaction rewrote
(``storage.compaction``); a query of ``realtime`` reads both."""
STORED_STREAMS: tuple[StoredStream, ...] = ("realtime", "historical", "compacted")
StoreKind = StreamKind | Literal["book"]
"""What a bridge write cycle stores: trades of a stream, or offer-book updates."""


def stored_streams(streams: Iterable[StreamKind | StoredStream]) -> tuple[StoredStream, ...]:
    """The stored streams that hold the data of ``streams``: ``realtime`` is the realtime
    stream and its compacted blocks."""
    out: list[StoredStream] = []
    for stream in streams:
        for s in ("realtime", "compacted") if stream == "realtime" else (stream,):
            if s not in out:
                out.append(s)
    return tuple(out)


def trades_key(symbol: str, stream: StoredStream) -> str:
    """The stream of trade blocks."""
    return f"ticks:{{{symbol}}}:{stream}"


def meta_key(symbol: str, stream: StoredStream) -> str:
    """Hash beside a trade stream: watermark ``wm`` (ms), ``trades`` (records stored),
    ``tid:<day>`` (largest trade id of a trading day), ``n:<day>`` (records stored
    for a trading day, days since the epoch) and ``trims`` (trims applied); the
    ``compacted`` stream's also ``gen`` (compaction swaps applied: a read that takes two
    round trips is retried when it moved between them)."""
    return f"ticks:{{{symbol}}}:{stream}:meta"


def late_key(symbol: str, stream: StoredStream) -> str:
    """Sorted set of late blocks: member = entry id, score = last trade time (ms)."""
    return f"ticks:{{{symbol}}}:{stream}:late"


def parse_trades_key(key: str) -> tuple[str, StoredStream] | None:
    """(symbol, stream) of a trade stream key, None for any other key."""
    if not key.startswith("ticks:{"):
        return None
    close = key.find("}:", 7)
    if close < 0:
        return None
    stream = key[close + 2 :]
    if stream not in STORED_STREAMS:
        return None
    return key[7:close], stream


def cursor_key(symbol: str) -> str:
    """Hash of bridge positions: ``<publisher hex>:<topic>`` -> last sequence number stored."""
    return f"ticks:{{{symbol}}}:cursor"


def gaps_key(symbol: str) -> str:
    """Sorted set of gap markers: score = gap start (ms), member = the gap as JSON."""
    return f"ticks:{{{symbol}}}:gaps"


QUARANTINE_KEY = "quarantine"
"""Stream of rejected messages, raw, with the reason."""


STATUS_PREFIX = "status:"
"""Hashes ``status:<name>``: what a running process reports about itself (the bridge:
``status:bridge:<host>:<pid>``; read by the dashboard)."""


DEMO_KEY = "demo"
"""Hash: symbol -> JSON of the ``tickvault demo`` run whose simulated data it holds."""


IMPORTS_KEY = "imports"
"""Hash: file sha256 (and symbol filter) -> JSON summary of its import."""


def book_key(symbol: str) -> str:
    """Stream of offer-book updates (``wire.BOOK_DTYPE`` records per entry)."""
    return f"book:{{{symbol}}}"


def book_snapshots_key(symbol: str) -> str:
    """Stream of full offer-book snapshots, each naming the last update it includes."""
    return f"book:{{{symbol}}}:snapshots"


def cursor_script_args(cursors: Mapping[str, int] | None) -> list[Any]:
    """The leading ARGV of both append scripts: n_cursors, then (field, seq) pairs."""
    args: list[Any] = [len(cursors or {})]
    for name, seq in (cursors or {}).items():
        args += [name, seq]
    return args
