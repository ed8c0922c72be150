"""The ZeroMQ wire format, version 2 (pure: bytes in, bytes out; no sockets here).

A message is two frames: the topic (``<kind>.<SYMBOL>``, ASCII, so a SUB socket
can filter by stream and symbol prefix) and the body: a fixed little-endian
header followed by ``count`` packed records of ``record_size`` bytes each.
Every record type starts with its int64 ``ts_event``. The header ends with a
CRC32C over the topic and the rest of the body, so a message altered on the way
(a flipped bit in the topic, the header or a record) is rejected, never stored.
The layout is specified in ``docs/wire-format.md``; this module is its
reference implementation.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from crc32c import crc32c

from tickvault.errors import FormatError
from tickvault.records.book import BOOK_DTYPE as BOOK_DTYPE  # noqa: PLC0414 (re-exported)
from tickvault.records.events import GAP_DTYPE as GAP_DTYPE  # noqa: PLC0414 (re-exported)
from tickvault.records.events import GAP_REASONS as GAP_REASONS  # noqa: PLC0414 (re-exported)
from tickvault.records.events import PROGRESS_DTYPE as PROGRESS_DTYPE  # noqa: PLC0414 (re-exported)
from tickvault.records.events import STATE_DTYPE as STATE_DTYPE  # noqa: PLC0414 (re-exported)
from tickvault.records.signals import SIGNAL_DTYPE as SIGNAL_DTYPE  # noqa: PLC0414 (re-exported)
from tickvault.records.trades import TRADE_DTYPE

MAGIC = b"TV"
VERSION = 2
HEADER = struct.Struct("<2sBBHHQQqII")
"""magic, version, kind, header_size, record_size, publisher, seq, ts_send_ns, count,
checksum."""
HEADER_SIZE = HEADER.size
CHECKSUM_AT = HEADER_SIZE - 4
"""Offset of the CRC32C in the body: it covers the topic frame, then every body byte
except these four."""
_CHECKSUM = struct.Struct("<I")

REPLAY_MAGIC = b"TVR2"
REPLAY_RANGE = struct.Struct("<QQQ")
"""A replay request's range: first and last sequence number wanted (inclusive), and a
tag the answer echoes (the subscriber's clock when it sent the request)."""
NOTHING_HELD = 2**63
"""``first_held`` of a replay answer when nothing can be recovered (unknown topic or
publisher)."""
REPLAY_STATUS = struct.Struct("<QQqQqBQ")
"""A replay answer's status: first seq still held, messages in the answer, first ts_event
ever published on the topic, the last seq published on the topic (0: none) and the
ts_event of its last record, 1 if the publisher has ended the topic (an END was
published) else 0, and the request's tag."""
END_MAGIC = b"TVE2"
"""An end-of-stream notice, sent by a publisher's ROUTER to each connected subscriber:
``END_MAGIC | topic_1 | end_body_1 | ... | topic_n | end_body_n`` (one END message
per topic)."""
HELLO_MAGIC = b"TVH2"
"""A subscriber's DEALER says hello every few seconds (``HELLO_MAGIC`` alone), so the
publisher knows whom to wait for at its end; ``BYE_MAGIC`` when it closes."""
BYE_MAGIC = b"TVB2"
ACK_MAGIC = b"TVA2"
"""A subscriber's answer to an end-of-stream notice, on its DEALER: ``ACK_MAGIC |
publisher (u64)``, sent once it holds every message up to each topic's final seq."""


class Kind(enum.IntEnum):
    """What a message carries; the topic prefix and the record layout follow from it."""

    HEARTBEAT = 0
    TRADE = 1
    HISTORY = 2
    BOOK = 3
    STATE = 4
    PROGRESS = 5
    SIGNAL = 6
    GAP = 7
    END = 8
    """Like a heartbeat, but the publisher's last word on the topic: ``seq`` is the
    topic's final sequence number."""


TOPIC_PREFIX: dict[Kind, str] = {
    Kind.TRADE: "trade",
    Kind.HISTORY: "history",
    Kind.BOOK: "book",
    Kind.STATE: "state",
    Kind.PROGRESS: "progress",
    Kind.SIGNAL: "signal",
    Kind.GAP: "gap",
}
_KIND_OF_PREFIX = {prefix: kind for kind, prefix in TOPIC_PREFIX.items()}

RECORD_DTYPE: dict[Kind, np.dtype[np.void]] = {
    Kind.TRADE: TRADE_DTYPE,
    Kind.HISTORY: TRADE_DTYPE,
    Kind.BOOK: BOOK_DTYPE,
    Kind.STATE: STATE_DTYPE,
    Kind.PROGRESS: PROGRESS_DTYPE,
    Kind.SIGNAL: SIGNAL_DTYPE,
    Kind.GAP: GAP_DTYPE,
}

TRADE_RECORD = struct.Struct("<qqqdqdiiBB")
"""One trade record, field for field ``TRADE_DTYPE`` (58 bytes)."""
assert TRADE_RECORD.size == TRADE_DTYPE.itemsize


class WireError(FormatError):
    """A message that does not follow the wire format. ``reason`` is a short stable
    name (``truncated``, ``oversized``, ``magic``...) used to count rejections."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Message:
    """One decoded message. ``payload`` holds ``count`` records (8 bytes of last
    ts_event for a heartbeat or an END)."""

    topic: str
    kind: Kind
    symbol: str
    publisher: int
    seq: int
    ts_send: int
    count: int
    record_size: int
    payload: bytes | memoryview
    body: bytes
    """The whole body frame, as received (kept for replay and quarantine)."""

    @property
    def first_ts(self) -> int:
        """ts_event of the first record (of the topic's last record, for a heartbeat)."""
        if len(self.payload) < 8:
            return 0
        return int.from_bytes(self.payload[:8], "little", signed=True)

    @property
    def last_ts(self) -> int:
        """ts_event of the last record (for a heartbeat or END, the topic's last record)."""
        if self.kind in _CONTROL or self.count == 0:
            return self.first_ts
        start = (self.count - 1) * self.record_size
        return int.from_bytes(self.payload[start : start + 8], "little", signed=True)

    def records(self) -> npt.NDArray[np.void]:
        """The records as a (read-only) numpy structured array, no copy."""
        return np.frombuffer(self.payload, dtype=RECORD_DTYPE[self.kind], count=self.count)


def last_ts_of(body: bytes | memoryview) -> int:
    """ts_event of a well-formed body's last record (for a heartbeat or END, the one it
    carries)."""
    kind, header_size, record_size, count = (HEADER.unpack_from(body)[i] for i in (2, 3, 4, 8))
    at = header_size + (0 if kind in _CONTROL or count == 0 else (count - 1) * record_size)
    return int.from_bytes(body[at : at + 8], "little", signed=True)


def topic_for(kind: Kind, symbol: str) -> str:
    return f"{TOPIC_PREFIX[kind]}.{symbol}"


def parse_topic(topic: str) -> tuple[Kind, str]:
    """(kind, symbol) of a topic such as ``trade.WINZ25``."""
    prefix, dot, symbol = topic.partition(".")
    kind = _KIND_OF_PREFIX.get(prefix)
    if kind is None or not dot:
        raise WireError("topic", f"unknown topic {topic[:64]!r}")
    return kind, symbol


_CONTROL = (Kind.HEARTBEAT, Kind.END)
"""Kinds without records: ``seq`` restates the topic's last sequence number."""


def checksum(topic: bytes, body: bytes | bytearray | memoryview) -> int:
    """CRC32C of the topic and the body without its checksum field."""
    view = memoryview(body)
    value = crc32c(view[:CHECKSUM_AT], crc32c(topic))
    return int(crc32c(view[CHECKSUM_AT + 4 :], value))


def seal(topic: bytes, body: bytes | bytearray | memoryview) -> bytes:
    """``body`` with its checksum field set for ``topic`` (after an edit, in tools/tests)."""
    out = bytearray(body)
    _CHECKSUM.pack_into(out, CHECKSUM_AT, checksum(topic, out))
    return bytes(out)


def encode_header(
    kind: Kind, record_size: int, publisher: int, seq: int, ts_send: int, count: int
) -> bytes:
    """A header with checksum 0 (``seal`` sets it)."""
    return HEADER.pack(
        MAGIC, VERSION, kind, HEADER_SIZE, record_size, publisher, seq, ts_send, count, 0
    )


def encode_body(
    topic: bytes,
    kind: Kind,
    publisher: int,
    seq: int,
    ts_send: int,
    records: bytes | memoryview,
    count: int,
) -> bytes:
    """Header plus ``count`` packed records of ``kind``'s layout, sealed for ``topic``."""
    size = RECORD_DTYPE[kind].itemsize
    head = encode_header(kind, size, publisher, seq, ts_send, count)
    value = crc32c(records, crc32c(head[:CHECKSUM_AT], crc32c(topic)))
    return head[:CHECKSUM_AT] + _CHECKSUM.pack(value) + records


def encode_heartbeat(
    topic: bytes, publisher: int, seq: int, ts_send: int, last_ts_event: int
) -> bytes:
    """A heartbeat: ``seq`` is the topic's last sequence number (not a new one)."""
    body = encode_header(Kind.HEARTBEAT, 0, publisher, seq, ts_send, 0)
    return seal(topic, body + struct.pack("<q", last_ts_event))


def encode_end(topic: bytes, publisher: int, seq: int, ts_send: int, last_ts_event: int) -> bytes:
    """An END: the publisher has ended the topic; ``seq`` is its final sequence number."""
    body = encode_header(Kind.END, 0, publisher, seq, ts_send, 0)
    return seal(topic, body + struct.pack("<q", last_ts_event))


def decode(frames: list[bytes], *, max_bytes: int) -> Message:
    """Decode and check one message; ``WireError`` names what is wrong."""
    if len(frames) != 2:
        raise WireError("frames", f"expected 2 frames (topic, body), got {len(frames)}")
    topic_raw, body = frames
    if len(body) > max_bytes:
        raise WireError("oversized", f"body of {len(body)} bytes is over the {max_bytes} limit")
    try:
        topic = topic_raw.decode("ascii")
    except UnicodeDecodeError:
        raise WireError("topic", f"topic is not ASCII: {topic_raw[:32]!r}") from None
    topic_kind, symbol = parse_topic(topic)
    if len(body) < HEADER_SIZE:
        raise WireError("truncated", f"body of {len(body)} bytes is shorter than the header")
    magic, version, kind_raw, header_size, record_size, publisher, seq, ts_send, count, crc = (
        HEADER.unpack_from(body)
    )
    if magic != MAGIC:
        raise WireError("magic", f"body does not start with {MAGIC!r} (got {magic!r})")
    if version != VERSION:
        raise WireError("version", f"wire version {version}, this reader knows {VERSION}")
    if crc != checksum(topic_raw, body):
        raise WireError(
            "checksum", f"CRC32C mismatch on {topic[:64]!r} (altered in transit or in memory)"
        )
    if header_size < HEADER_SIZE or header_size > len(body):
        raise WireError("truncated", f"header size {header_size} does not fit the body")
    try:
        kind = Kind(kind_raw)
    except ValueError:
        raise WireError("kind", f"unknown message kind {kind_raw}") from None
    payload = memoryview(body)[header_size:]
    if kind in _CONTROL:
        if len(payload) != 8:
            raise WireError("truncated", f"a {kind.name} carries exactly 8 payload bytes")
    else:
        if kind is not topic_kind:
            raise WireError("topic", f"{kind.name} message on topic {topic!r}")
        expected = RECORD_DTYPE[kind].itemsize
        if record_size != expected:
            raise WireError(
                "record_size", f"{kind.name} records are {expected} bytes, not {record_size}"
            )
        if len(payload) != count * record_size:
            raise WireError(
                "truncated",
                f"{count} records of {record_size} bytes need {count * record_size} payload "
                f"bytes, got {len(payload)}",
            )
    if seq == 0:
        raise WireError("seq", "sequence numbers start at 1")
    return Message(topic, kind, symbol, publisher, seq, ts_send, count, record_size, payload, body)
