"""``Subscriber``: SUB sockets with in-order delivery, gap repair and clean shutdown.

One thread runs ``run()``: a ``zmq.Poller`` blocks on the SUB sockets, the
replay DEALER sockets and an inproc control socket (``stop()`` writes to it),
with a timeout only when a replay answer is awaited. Per (publisher, topic) the
subscriber delivers messages in sequence order: a duplicate is dropped, a
message after a gap is held while the missing range is asked of the
publisher's replay service, and a range that cannot be recovered (evicted, or
no answer in ``zmq_replay_timeout_s``) is reported as a ``Gap`` before
delivery moves on. Messages that break the wire format go to ``on_invalid``.

A subscriber that does not recover from the start (a live viewer such as
``tickvault tail``) can still ask for what a publisher sent since a given time:
PUB/SUB drops what is sent before a new subscription reaches the publisher (the
"slow joiner"), so the first trades of a feed that starts after the viewer are
lost without it. On its first message from a publisher it looks back through the
replay buffer, a few messages first and more each step, until it meets one sent
before that time, and delivers the rest in order.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import zmq

from tickvault.config import Settings, load_settings
from tickvault.transport import wire
from tickvault.transport.endpoints import Endpoints, endpoint_name
from tickvault.transport.wire import Kind, Message, WireError

log = logging.getLogger(__name__)

_IDLE_POLL_MS = 500
_LOOK_BACK_FIRST = 8
"""Messages asked for in the first look-back step; each further step asks for 4x more."""
_LOOK_BACK_MAX = 512


@dataclass(frozen=True, slots=True)
class Gap:
    """Messages ``seq_first..seq_last`` of a topic that could not be recovered."""

    publisher: int
    topic: str
    seq_first: int
    seq_last: int
    start_ns: int
    """ts_event of the last record delivered before the gap (or the topic's first ever)."""
    end_ns: int
    """ts_event of the first record delivered after the gap (or the last one known)."""
    reason: str

    @property
    def symbol(self) -> str:
        return self.topic.partition(".")[2]

    @property
    def kind(self) -> Kind:
        return wire.parse_topic(self.topic)[0]


class Handler(Protocol):
    """What a ``Subscriber`` calls, on its own thread, in sequence order per topic."""

    def resume_seq(self, publisher: int, topic: str) -> int | None:
        """The last sequence number already handled for this (publisher, topic) in an
        earlier life (a restarted bridge reads it from the store), or None."""

    def on_message(self, msg: Message) -> None: ...

    def on_gap(self, gap: Gap) -> None: ...

    def on_invalid(self, frames: list[bytes], error: WireError) -> None: ...


@dataclass(slots=True)
class _Track:
    publisher: int
    topic: str
    link: int
    next: int
    held: dict[int, Message] = field(default_factory=dict)
    asked_last: int = 0
    """Last seq of the outstanding replay request (0: none)."""
    deadline: float = 0.0
    last_ts: int = 0
    known_last: int = 0
    """Highest seq announced (by a message or a heartbeat)."""
    known_last_ts: int = 0
    probe_lo: int = 0
    """While looking back for what was sent since ``recover_since_ns``: the first seq of
    the outstanding look-back request (0: not looking back)."""


@dataclass(slots=True)
class SubscriberStats:
    messages: int = 0
    records: int = 0
    duplicates: int = 0
    invalid: int = 0
    gaps_detected: int = 0
    recovered_messages: int = 0
    lost_messages: int = 0
    replay_requests: int = 0


@dataclass(slots=True)
class _Link:
    """The sockets to one publisher."""

    sub: zmq.Socket[bytes]
    dealer: zmq.Socket[bytes]


class Subscriber:
    """Receives from one or more publishers and calls ``handler`` (or feeds ``sink``)."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        handler: Handler | None = None,
        sink: Any = None,
        endpoints: Sequence[Endpoints] | None = None,
        kinds: Iterable[Kind] = (Kind.TRADE, Kind.HISTORY),
        symbols: Iterable[str] | None = None,
        recover_from_start: bool = True,
        recover_since_ns: int | None = None,
        context: zmq.Context[Any] | None = None,
    ):
        """``recover_from_start``: deliver every message of a publisher from its first
        (what the replay buffer still holds), else from the first one received.
        ``recover_since_ns`` (with ``recover_from_start`` False): also deliver what a
        publisher sent at or after this time (its clock) before this subscription took
        effect, and nothing sent before it."""
        self.settings = settings or load_settings()
        if (handler is None) == (sink is None):
            raise TypeError("give exactly one of handler= or sink=")
        self.handler: Handler = handler if handler is not None else SinkHandler(sink)
        self._ctx = context or zmq.Context.instance()
        self._recover_from_start = recover_from_start
        self._since = None if recover_from_start else recover_since_ns
        self._max_bytes = self.settings.zmq_max_message_bytes
        self._timeout_s = self.settings.zmq_replay_timeout_s
        self.stats = SubscriberStats()
        kinds = tuple(kinds)
        prefixes = [wire.topic_for(k, s) for k in kinds for s in (symbols or [""])]
        self._links: list[_Link] = []
        for eps in endpoints or [Endpoints.from_settings(self.settings)]:
            sub = self._ctx.socket(zmq.SUB)
            sub.setsockopt(zmq.RCVHWM, self.settings.zmq_hwm)
            sub.setsockopt(zmq.LINGER, 0)
            for name in sorted({endpoint_name(k) for k in kinds}):
                sub.connect(eps.data()[name])
            for prefix in prefixes:
                sub.setsockopt(zmq.SUBSCRIBE, prefix.encode("ascii"))
            dealer = self._ctx.socket(zmq.DEALER)
            dealer.setsockopt(zmq.LINGER, 0)
            dealer.connect(eps.replay)
            self._links.append(_Link(sub, dealer))
        self._tracks: dict[tuple[int, str], _Track] = {}
        self._ctrl_addr = f"inproc://tickvault-sub-{id(self)}"
        self._ctrl = self._ctx.socket(zmq.PAIR)
        self._ctrl.bind(self._ctrl_addr)
        self._ctrl_out = self._ctx.socket(zmq.PAIR)
        self._ctrl_out.connect(self._ctrl_addr)
        self._stop_lock = threading.Lock()
        self._stopped = False
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> Subscriber:
        """Run in a background thread."""
        self._thread = threading.Thread(target=self.run, name="tickvault-sub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Make ``run()`` return (from any thread or a signal handler)."""
        with self._stop_lock:
            if not self._stopped:
                self._stopped = True
                self._ctrl_out.send(b"stop")

    def join(self, timeout_s: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout_s)

    def close(self) -> None:
        self.stop()
        self.join(10)
        for link in self._links:
            link.sub.close()
            link.dealer.close()
        self._ctrl.close(linger=0)
        self._ctrl_out.close(linger=0)

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ loop
    def run(self) -> None:
        """Receive and deliver until ``stop()``."""
        poller = zmq.Poller()
        poller.register(self._ctrl, zmq.POLLIN)
        by_socket: dict[Any, tuple[int, bool]] = {}
        for i, link in enumerate(self._links):
            poller.register(link.sub, zmq.POLLIN)
            poller.register(link.dealer, zmq.POLLIN)
            by_socket[link.sub] = (i, False)
            by_socket[link.dealer] = (i, True)
        while True:
            events = dict(poller.poll(self._poll_timeout_ms()))
            if self._ctrl in events:
                return
            for sock in events:
                link_no, is_replay = by_socket[sock]
                # Take what is waiting (bounded) before polling again.
                for _ in range(256):
                    try:
                        frames = sock.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    if is_replay:
                        self._on_replay(link_no, frames)
                    else:
                        self._on_frames(link_no, frames)
            self._expire(time.monotonic())

    def _poll_timeout_ms(self) -> int:
        """Until the next replay deadline, and never more than ``_IDLE_POLL_MS``: a
        signal that lands just before the poll starts only runs its Python handler
        (``stop()``) when the poll returns, so an idle poll must return now and then."""
        deadlines = [t.deadline for t in self._tracks.values() if t.asked_last]
        if not deadlines:
            return _IDLE_POLL_MS
        return min(_IDLE_POLL_MS, max(0, int((min(deadlines) - time.monotonic()) * 1000) + 1))

    # ------------------------------------------------------------------ sequencing
    def _on_frames(self, link: int, frames: list[bytes]) -> None:
        try:
            msg = wire.decode(frames, max_bytes=self._max_bytes)
        except WireError as exc:
            self.stats.invalid += 1
            self.handler.on_invalid(frames, exc)
            return
        self._accept(link, msg, replayed=False)

    def _track(self, link: int, msg: Message) -> _Track:
        key = (msg.publisher, msg.topic)
        track = self._tracks.get(key)
        if track is None:
            done = self.handler.resume_seq(msg.publisher, msg.topic)
            if done is not None:
                first = done + 1
            elif self._recover_from_start:
                first = 1
            else:
                first = msg.seq + (1 if msg.kind is Kind.HEARTBEAT else 0)
            track = self._tracks[key] = _Track(msg.publisher, msg.topic, link=link, next=first)
            if done is None and self._since is not None and first > 1:
                self._look_back(track, first - 1, _LOOK_BACK_FIRST)
        return track

    def _look_back(self, track: _Track, last: int, count: int) -> None:
        """Ask for the ``count`` messages up to ``last``: were they sent since ``_since``?
        Delivery waits (``asked_last`` blocks other requests) until the answer says."""
        track.probe_lo = max(1, last - count + 1)
        track.asked_last = last
        track.deadline = time.monotonic() + self._timeout_s
        self.stats.replay_requests += 1
        self._links[track.link].dealer.send_multipart([
            wire.REPLAY_MAGIC, track.topic.encode("ascii"), track.publisher.to_bytes(8, "little"),
            wire.REPLAY_RANGE.pack(track.probe_lo, last),
        ])  # fmt: skip

    def _on_look_back(self, track: _Track, first_held: int, msgs: list[Message]) -> None:
        """A look-back answer: keep what was sent since ``_since``; stop at the first
        message sent before it, or where the publisher's buffer ends; else look further."""
        assert self._since is not None
        lo, last = track.probe_lo, track.asked_last
        older = [m.seq for m in msgs if m.ts_send < self._since]
        for m in msgs:
            if m.ts_send >= self._since and m.seq < track.next:
                track.held.setdefault(m.seq, m)
        if older:
            track.next = max(older) + 1
        elif first_held <= last:
            track.next = max(lo, first_held)  # all of it is wanted
            if first_held <= lo and lo > 1 and msgs:
                count = min((last - lo + 1) * 4, _LOOK_BACK_MAX)
                self._look_back(track, lo - 1, count)
                return
        track.probe_lo = track.asked_last = 0
        self._release(track)

    def _accept(self, link: int, msg: Message, *, replayed: bool) -> None:
        track = self._track(link, msg)
        if msg.seq > track.known_last:
            track.known_last, track.known_last_ts = msg.seq, msg.last_ts
        if msg.kind is Kind.HEARTBEAT:
            self._ask(track)
            return
        if msg.seq < track.next or msg.seq in track.held:
            self.stats.duplicates += 1
            return
        if replayed:
            self.stats.recovered_messages += 1
        if msg.seq > track.next or track.probe_lo:
            track.held[msg.seq] = msg
            self._ask(track)
            return
        self._deliver(track, msg)
        self._release(track)

    def _deliver(self, track: _Track, msg: Message) -> None:
        track.next = msg.seq + 1
        track.last_ts = msg.last_ts
        if self._since is not None and msg.ts_send < self._since:
            return  # sent before this subscriber wanted anything
        self.stats.messages += 1
        self.stats.records += msg.count
        self.handler.on_message(msg)

    def _release(self, track: _Track) -> None:
        """Deliver held messages that are now in order; ask for the next gap, if any."""
        while track.next in track.held:
            self._deliver(track, track.held.pop(track.next))
        if track.asked_last and track.next > track.asked_last:
            track.asked_last = 0  # the request is satisfied
        self._ask(track)

    def _ask(self, track: _Track) -> None:
        """Ask for everything missing before the first held message (or up to the last
        announced), unless a request is outstanding."""
        if track.asked_last:
            return
        last = (min(track.held) - 1) if track.held else track.known_last
        if last < track.next:
            return
        self.stats.gaps_detected += 1
        self.stats.replay_requests += 1
        track.asked_last = last
        track.deadline = time.monotonic() + self._timeout_s
        self._links[track.link].dealer.send_multipart([
            wire.REPLAY_MAGIC, track.topic.encode("ascii"), track.publisher.to_bytes(8, "little"),
            wire.REPLAY_RANGE.pack(track.next, last),
        ])  # fmt: skip

    def _on_replay(self, link: int, frames: list[bytes]) -> None:
        if (
            len(frames) < 4
            or frames[0] != wire.REPLAY_MAGIC
            or len(frames[3]) != wire.REPLAY_STATUS.size
        ):
            log.warning("subscriber: malformed replay answer ignored")
            return
        topic_raw, pub_raw, status = frames[1], frames[2], frames[3]
        track = self._tracks.get(
            (int.from_bytes(pub_raw, "little"), topic_raw.decode("ascii", "replace"))
        )
        if track is None:
            return
        first_held, _, first_ts = wire.REPLAY_STATUS.unpack(status)
        asked = track.asked_last
        if track.probe_lo:
            self._on_look_back(track, first_held, self._decode_replayed(topic_raw, frames[4:]))
            return
        for body in frames[4:]:
            try:
                msg = wire.decode([topic_raw, body], max_bytes=self._max_bytes)
            except WireError as exc:
                self.stats.invalid += 1
                self.handler.on_invalid([topic_raw, body], exc)
                continue
            self._accept(link, msg, replayed=True)
        if not asked or track.next > asked:
            return  # satisfied (or an answer to an expired request)
        if first_held > track.next:
            # Gone from the publisher's buffer (or the publisher restarted).
            track.asked_last = 0
            self._lose(track, min(first_held - 1, asked), "evicted", first_ts)
        elif track.asked_last == asked:
            track.asked_last = 0  # a capped answer: ask for the rest
            self._ask(track)

    def _decode_replayed(self, topic_raw: bytes, bodies: list[bytes]) -> list[Message]:
        out = []
        for body in bodies:
            try:
                out.append(wire.decode([topic_raw, body], max_bytes=self._max_bytes))
            except WireError as exc:
                self.stats.invalid += 1
                self.handler.on_invalid([topic_raw, body], exc)
        return out

    def _lose(self, track: _Track, last: int, reason: str, first_ts: int = 0) -> None:
        """Declare ``track.next..last`` lost and move delivery past it."""
        first = track.next
        if last < first:
            return
        after = track.held.get(last + 1)
        end = after.first_ts if after is not None else (track.known_last_ts or track.last_ts)
        start = track.last_ts or first_ts or end
        self.stats.lost_messages += last - first + 1
        log.warning("subscriber: messages %d..%d of %s lost (%s)", first, last, track.topic, reason)
        track.next = last + 1
        self.handler.on_gap(Gap(track.publisher, track.topic, first, last, start, end, reason))
        self._release(track)

    def _expire(self, now: float) -> None:
        for track in list(self._tracks.values()):
            if track.asked_last and now >= track.deadline and track.probe_lo:
                # No answer to a look-back: deliver from where it had got to.
                track.probe_lo = track.asked_last = 0
                self._release(track)
            elif track.asked_last and now >= track.deadline:
                last = track.asked_last
                track.asked_last = 0
                self._lose(track, last, "no replay answer")
                self._ask(track)


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
