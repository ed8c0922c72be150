"""The publisher's replay buffer: recent message bodies per topic, bounded in bytes (pure).

Sequence numbers of one topic are contiguous, so a topic's messages sit in a
deque and message ``seq`` is at index ``seq - first_seq``. When the byte budget
is exceeded the oldest message of all topics goes first.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field

from tickvault.transport.wire import NOTHING_HELD


@dataclass(slots=True)
class _Topic:
    name: str = ""
    first_seq: int = 1
    bodies: deque[bytes] = field(default_factory=deque)
    bytes: int = 0
    """Bytes of the bodies held."""
    first_ts_event: int = 0
    """ts_event of the first record ever published on the topic (0: none yet)."""
    last_seq: int = 0
    last_ts_event: int = 0
    ended: bool = False


@dataclass(frozen=True, slots=True)
class ReplayAnswer:
    """What a replay buffer (or a journal) holds of a topic for a replay request."""

    first_held: int
    """Lowest sequence number still held (messages below it are gone; NOTHING_HELD: the
    topic is unknown)."""
    bodies: list[bytes]
    """Held messages from the requested start on, in order (capped)."""
    first_ts_event: int
    last_seq: int = 0
    """Last sequence number published on the topic (0: none)."""
    last_ts_event: int = 0
    """ts_event of the topic's last record."""
    ended: bool = False
    """The publisher ended the topic: ``last_seq`` is final."""


@dataclass(frozen=True, slots=True)
class TopicFill:
    """What the buffer holds of one topic."""

    messages: int
    bytes: int
    first_seq: int
    """Oldest sequence number held (0: none held)."""
    last_seq: int
    """Last sequence number published."""


@dataclass(frozen=True, slots=True)
class ReplayFill:
    """How full the replay buffer is (``ReplayBuffer.fill``)."""

    bytes: int
    max_bytes: int
    messages: int
    evicted: int
    """Messages dropped (oldest first) to stay within ``max_bytes``, since the start."""
    oldest_topic: str
    """Topic of the oldest message held ("" when none is)."""
    oldest_seq: int
    """Its sequence number (0 when none is held)."""
    topics: dict[str, TopicFill]


class ReplayBuffer:
    """Thread-safe: the sender thread adds, the replay service reads."""

    def __init__(
        self, max_bytes: int, *, max_answer_messages: int = 512, max_answer_bytes: int = 8 * 2**20
    ):
        self.max_bytes = max_bytes
        self.max_answer_messages = max_answer_messages
        self.max_answer_bytes = max_answer_bytes
        self._topics: dict[str, _Topic] = {}
        self._order: deque[tuple[_Topic, int]] = deque()
        self._bytes = 0
        self._lock = threading.Lock()
        self.evicted = 0

    def add(
        self, topic: str, seq: int, body: bytes, first_ts_event: int, last_ts_event: int = 0
    ) -> None:
        with self._lock:
            t = self._topics.get(topic)
            if t is None:
                t = self._topics[topic] = _Topic(topic, seq, first_ts_event=first_ts_event)
            if not t.bodies:
                t.first_seq = seq
            t.last_seq, t.last_ts_event = seq, last_ts_event
            t.bodies.append(body)
            t.bytes += len(body)
            self._order.append((t, len(body)))
            self._bytes += len(body)
            while self._bytes > self.max_bytes and self._order:
                old, size = self._order.popleft()
                old.bodies.popleft()
                old.first_seq += 1
                old.bytes -= size
                self._bytes -= size
                self.evicted += 1

    def get(self, topic: str, first: int, last: int) -> ReplayAnswer:
        """Messages ``first..last`` of ``topic`` that are still held (a prefix of them if
        the answer would be too large)."""
        with self._lock:
            t = self._topics.get(topic)
            if t is None:
                return ReplayAnswer(first_held=NOTHING_HELD, bodies=[], first_ts_event=0)
            if not t.bodies:  # every message of the topic was evicted
                return ReplayAnswer(
                    t.last_seq + 1, [], t.first_ts_event, t.last_seq, t.last_ts_event, t.ended
                )
            start = max(first, t.first_seq)
            stop = min(last, t.first_seq + len(t.bodies) - 1)
            bodies: list[bytes] = []
            size = 0
            for seq in range(start, stop + 1):
                body = t.bodies[seq - t.first_seq]
                if bodies and (
                    len(bodies) >= self.max_answer_messages
                    or size + len(body) > self.max_answer_bytes
                ):
                    break
                bodies.append(body)
                size += len(body)
            return ReplayAnswer(
                t.first_seq, bodies, t.first_ts_event, t.last_seq, t.last_ts_event, t.ended
            )

    def fill(self) -> ReplayFill:
        """A snapshot of what is held: bytes of the bound, messages, the oldest held (the
        next to go) and per topic."""
        with self._lock:
            topics = {
                name: TopicFill(len(t.bodies), t.bytes, t.first_seq if t.bodies else 0, t.last_seq)
                for name, t in self._topics.items()
            }
            oldest = self._order[0][0] if self._order else None
            return ReplayFill(
                bytes=self._bytes, max_bytes=self.max_bytes, messages=len(self._order),
                evicted=self.evicted, oldest_topic=oldest.name if oldest else "",
                oldest_seq=oldest.first_seq if oldest else 0, topics=topics,
            )  # fmt: skip

    def end(self, topic: str) -> None:
        """The publisher ended ``topic``: answers say its last seq is final."""
        with self._lock:
            t = self._topics.get(topic)
            if t is not None:
                t.ended = True

    @property
    def bytes(self) -> int:
        return self._bytes
