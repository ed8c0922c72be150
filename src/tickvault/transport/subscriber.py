"""``Subscriber``: SUB sockets with in-order delivery, gap repair and clean shutdown.

One thread runs ``run()``: a ``zmq.Poller`` blocks on the SUB sockets, the
replay DEALER sockets and an inproc control socket (``stop()`` writes to it),
with a timeout only when a replay answer or a paced request is due. Per
(publisher, topic) the subscriber delivers messages in sequence order: a
duplicate is dropped, a message after a gap is held while the missing range is
asked of the publisher's replay service, and a range that cannot be recovered
(evicted, or no answer in ``zmq_replay_timeout_s`` and not in the publisher's
journal on this host) is reported as a ``Gap`` before delivery moves on.

Messages that break the wire format (a failed checksum included) go to
``on_invalid`` and leave their sequence number missing, so the original is
fetched again. A message the handler's ``check`` rejects for its values is
asked for again too; if the publisher's own copy is rejected as well, its
sequence number becomes a one-message ``Gap``.

Sequence numbers are trusted only as far as the publisher confirms them: a
replay answer states the topic's last published seq, so a held message beyond
it that arrived before the request was sent cannot be the publisher's and is
dropped (never delivered, so the cursor never jumps). Without any answer, a
message further than ``zmq_max_seq_jump`` beyond what was confirmed is dropped
the same way. Requests are paced: one outstanding per topic, a repeated range
waits with exponential backoff.

End of stream: a publisher that ends sends an END per topic (its final seq),
also as a notice on the replay channel; the subscriber fetches what it misses
up to it (creating the track of a topic it never heard from) and acknowledges
once it holds everything, so the publisher can exit.

A subscriber that does not recover from the start (a live viewer such as
``tickvault tail``) can still ask for what a publisher sent since a given time:
PUB/SUB drops what is sent before a new subscription reaches the publisher (the
"slow joiner"), so the first trades of a feed that starts after the viewer are
lost without it. On its first message from a publisher it looks back through the
replay buffer, a few messages first and more each step, until it meets one sent
before that time, and delivers the rest in order.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import zmq

from tickvault.config import Settings
from tickvault.errors import TickvaultError
from tickvault.logutil import RateLimitedLog
from tickvault.transport import wire
from tickvault.transport.endpoints import Endpoints, endpoint_name
from tickvault.transport.journal import JournalReader
from tickvault.transport.wire import Kind, Message, WireError

log = logging.getLogger(__name__)


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
        earlier life (a restarted bridge reads it from the store), or None. May raise a
        TickvaultError (the store is unreachable): the message is dropped untracked and
        fetched again once the position can be read."""

    def on_message(self, msg: Message) -> None: ...

    def on_gap(self, gap: Gap) -> None: ...

    def on_invalid(self, frames: list[bytes], error: WireError) -> None: ...


CheckFn = Callable[[Message], WireError | None]
"""A handler may also have ``check(msg)``: a reason to reject a well-formed message for
its values (called on arrival, before sequencing), or None."""


@dataclass(slots=True)
class _Track:
    publisher: int
    topic: str
    link: int
    next: int
    held: dict[int, Message] = field(default_factory=dict)
    arrived: dict[int, int] = field(default_factory=dict)
    """Held seq -> when it arrived (monotonic ns)."""
    bad: dict[int, tuple[WireError, int, int]] = field(default_factory=dict)
    """Seqs whose publisher's own copy was rejected: error, first and last ts_event."""
    asked_last: int = 0
    """Last seq of the outstanding replay request (0: none)."""
    asked_tag: int = 0
    """When the outstanding request was sent (monotonic ns), echoed by the answer."""
    deadline: float = 0.0
    last_range: tuple[int, int] = (0, 0)
    retry_at: float = 0.0
    backoff: float = 0.0
    last_ts: int = 0
    known_last: int = 0
    """Highest seq announced by a heartbeat or END (within reach), or by the publisher."""
    known_last_ts: int = 0
    known_at: int = 0
    claim: int = 0
    """An announced seq too far beyond what was confirmed: asked about, not trusted."""
    claim_at: int = 0
    confirmed: int = 0
    """Highest seq the publisher itself stated it published (replay answer, END notice)."""
    end_seq: int = 0
    """The topic's final seq (0: not ended)."""
    journal: bool = False
    """The publisher does not answer: read its journal on this host instead."""
    heard: float = 0.0
    """When a live message or heartbeat of the topic last arrived (monotonic)."""
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
    journal_messages: int = 0
    """Messages recovered by reading a publisher's journal on this host."""
    bogus_seq: int = 0
    """Messages and announcements dropped for a sequence number the publisher never sent."""
    ends: int = 0
    """Topics whose END was received."""


@dataclass(slots=True)
class _Link:
    """The sockets to one publisher."""

    sub: zmq.Socket[bytes]
    dealer: zmq.Socket[bytes]


_MIN_BACKOFF_S = 0.05
_HELLO_S = 2.0
_IDLE_POLL_MS = 500
"""A poll never waits longer: a signal that lands just before the poll starts only runs
its Python handler (``stop()``) when the poll returns."""
_LOOK_BACK_FIRST = 8
"""Messages asked for in the first look-back step; each further step asks for 4x more."""
_LOOK_BACK_MAX = 512
"""How often the subscriber tells each publisher it is there (see ``wire.HELLO_MAGIC``)."""
_JOURNAL_ROUNDS = 8
"""Journal reads (of up to 512 messages each) per topic before the loop polls again."""


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
        # Explicit settings only: None means the defaults, never a file found in the
        # working directory (pass ``load_settings()`` for the configured ones).
        self.settings = settings if settings is not None else Settings.model_validate({})
        if (handler is None) == (sink is None):
            raise TypeError("give exactly one of handler= or sink=")
        self.handler: Handler = handler if handler is not None else SinkHandler(sink)
        self._check: CheckFn | None = getattr(self.handler, "check", None)
        self._ctx = context or zmq.Context.instance()
        self._recover_from_start = recover_from_start
        self._since = None if recover_from_start else recover_since_ns
        self._max_bytes = self.settings.zmq_max_message_bytes
        self._timeout_s = self.settings.zmq_replay_timeout_s
        self._max_jump = self.settings.zmq_max_seq_jump
        self._journal_dir = self.settings.journal_path
        self._readers: dict[int, JournalReader] = {}
        self._rate_log = RateLimitedLog(log)
        self.stats = SubscriberStats()
        kinds = tuple(kinds)
        self._prefixes = tuple(wire.topic_for(k, s) for k in kinds for s in (symbols or [""]))
        self._links: list[_Link] = []
        for eps in endpoints or [Endpoints.from_settings(self.settings)]:
            sub = self._ctx.socket(zmq.SUB)
            sub.setsockopt(zmq.RCVHWM, self.settings.zmq_hwm)
            sub.setsockopt(zmq.LINGER, 0)
            for name in sorted({endpoint_name(k) for k in kinds}):
                sub.connect(eps.data()[name])
            for prefix in self._prefixes:
                sub.setsockopt(zmq.SUBSCRIBE, prefix.encode("ascii"))
            dealer = self._ctx.socket(zmq.DEALER)
            dealer.setsockopt(zmq.LINGER, 0)
            dealer.connect(eps.replay)
            self._links.append(_Link(sub, dealer))
        self._tracks: dict[tuple[int, str], _Track] = {}
        self._by_publisher: dict[int, list[_Track]] = {}
        self._due: set[tuple[int, str]] = set()
        """Tracks with a paced request or a journal read to do."""
        self._silent: set[int] = set()
        """Publishers whose replay service let a request time out (and has not answered
        since): their later requests wait a tenth of the timeout, so a dead publisher's
        many holes are settled quickly instead of one timeout each."""
        self._ending: dict[int, int] = {}
        """Publishers that announced their end -> link, until acknowledged."""
        self._ctrl_addr = f"inproc://tickvault-sub-{id(self)}"
        self._ctrl = self._ctx.socket(zmq.PAIR)
        self._ctrl.bind(self._ctrl_addr)
        self._ctrl_out = self._ctx.socket(zmq.PAIR)
        self._ctrl_out.connect(self._ctrl_addr)
        self._wake_addr = f"inproc://tickvault-sub-wake-{id(self)}"
        self._wake = self._ctx.socket(zmq.PAIR)
        self._wake.bind(self._wake_addr)
        self._wake_out = self._ctx.socket(zmq.PAIR)
        self._wake_out.connect(self._wake_addr)
        self._wake_lock = threading.Lock()
        self._resyncs: list[threading.Event] = []
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
            with contextlib.suppress(zmq.ZMQError):  # so an ending publisher does not wait
                link.dealer.send(wire.BYE_MAGIC, zmq.NOBLOCK)
            link.dealer.close(linger=100)
        self._ctrl.close(linger=0)
        self._ctrl_out.close(linger=0)
        self._wake.close(linger=0)
        self._wake_out.close(linger=0)
        for reader in self._readers.values():
            reader.close()

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def adopt(self, publisher: int, topic: str, done: int) -> bool:
        """Resume ``topic`` of an earlier ``publisher`` session from its journal on this
        host, after ``done`` (a cursor found at start, say): a publisher that has exited
        sends nothing to start the track. True if the journal holds more."""
        if not topic.startswith(self._prefixes) or (publisher, topic) in self._tracks:
            return False
        reader = self._reader(publisher)
        if reader is None or reader.topics().get(topic, 0) <= done:
            return False
        track = self._tracks[(publisher, topic)] = _Track(publisher, topic, link=0, next=done + 1)
        track.confirmed, track.journal = done, True
        track.known_last = reader.topics()[topic]
        self._by_publisher.setdefault(publisher, []).append(track)
        self._due.add((publisher, topic))
        return True

    def resync(self, timeout_s: float) -> bool:
        """From any thread: restart every topic from the handler's ``resume_seq`` (the
        store lost writes it had acknowledged), asking the publishers for what follows;
        the handler's ``on_resync()`` (if any) drops what it holds. Waits for it."""
        done = threading.Event()
        with self._wake_lock:
            self._resyncs.append(done)
            self._wake_out.send(b"resync")
        return done.wait(timeout_s)

    def _do_resync(self) -> None:
        positions: dict[tuple[int, str], int] = {}
        for key, track in self._tracks.items():
            try:
                done = self.handler.resume_seq(track.publisher, track.topic)
            except TickvaultError:
                return  # the store is gone again: the next loop tries again
            positions[key] = (done or 0) + 1 if done is not None or self._recover_from_start else 0
        on_resync = getattr(self.handler, "on_resync", None)
        if on_resync is not None:
            on_resync()
        for key, first in positions.items():
            track = self._tracks[key]
            if first and first < track.next:
                track.known_last = max(track.known_last, track.next - 1)
                track.next = first
                track.asked_last = 0
                track.bad = {s: b for s, b in track.bad.items() if s >= first}
            self._ask(track)
        with self._wake_lock:
            events, self._resyncs = self._resyncs, []
        for event in events:
            event.set()

    # ------------------------------------------------------------------ loop
    def run(self) -> None:
        """Receive and deliver until ``stop()``."""
        poller = zmq.Poller()
        poller.register(self._ctrl, zmq.POLLIN)
        poller.register(self._wake, zmq.POLLIN)
        by_socket: dict[Any, tuple[int, bool]] = {}
        for i, link in enumerate(self._links):
            poller.register(link.sub, zmq.POLLIN)
            poller.register(link.dealer, zmq.POLLIN)
            by_socket[link.sub] = (i, False)
            by_socket[link.dealer] = (i, True)
        hello_at = 0.0
        while True:
            now = time.monotonic()
            if now >= hello_at:
                hello_at = now + _HELLO_S
                self._check_silent(now)
                for link in self._links:
                    with contextlib.suppress(zmq.Again):
                        link.dealer.send(wire.HELLO_MAGIC, zmq.NOBLOCK)
            timeout = self._poll_timeout_ms()
            wait = max(0, int((hello_at - now) * 1000) + 1)
            wait = min(wait, _IDLE_POLL_MS)
            events = dict(poller.poll(wait if timeout is None else min(timeout, wait)))
            if self._ctrl in events:
                return
            if self._wake in events:
                with contextlib.suppress(zmq.Again):
                    while True:
                        self._wake.recv(zmq.NOBLOCK)
            if self._resyncs:
                self._do_resync()
            for sock in events:
                if sock is self._wake:
                    continue
                link_no, is_replay = by_socket[sock]
                # Take what is waiting (bounded) before polling again.
                for _ in range(256):
                    try:
                        frames = sock.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    if is_replay:
                        self._on_dealer(link_no, frames)
                    else:
                        self._on_frames(link_no, frames)
            self._expire(time.monotonic())
            self._service_due()

    def _poll_timeout_ms(self) -> int | None:
        times = [t.deadline for t in self._tracks.values() if t.asked_last]
        for key in self._due:
            track = self._tracks.get(key)
            if track is not None:
                times.append(0.0 if track.journal else track.retry_at)
        if not times:
            return None
        return max(0, int((min(times) - time.monotonic()) * 1000) + 1)

    # ------------------------------------------------------------------ sequencing
    def _on_frames(self, link: int, frames: list[bytes]) -> None:
        try:
            msg = wire.decode(frames, max_bytes=self._max_bytes)
        except WireError as exc:
            self._invalid(frames, exc)
            return
        self._accept(link, msg, replayed=False)

    def _invalid(self, frames: list[bytes], error: WireError) -> None:
        self.stats.invalid += 1
        self.handler.on_invalid(frames, error)

    def _track(self, link: int, msg: Message) -> _Track | None:
        key = (msg.publisher, msg.topic)
        track = self._tracks.get(key)
        if track is None:
            try:
                done = self.handler.resume_seq(msg.publisher, msg.topic)
            except TickvaultError as exc:
                self._rate_log.warning(
                    "resume", "subscriber: cannot read the position of %s (%s); its messages "
                    "wait for the replay buffer or journal", msg.topic, exc,
                )  # fmt: skip
                return None
            if done is not None:
                first = done + 1
            elif self._recover_from_start:
                first = 1
            else:
                first = msg.seq + (1 if msg.kind in (Kind.HEARTBEAT, Kind.END) else 0)
            track = self._tracks[key] = _Track(msg.publisher, msg.topic, link=link, next=first)
            track.confirmed = first - 1
            self._by_publisher.setdefault(msg.publisher, []).append(track)
            if done is None and self._since is not None and first > 1:
                self._look_back(track, first - 1, _LOOK_BACK_FIRST)
        return track

    def _look_back(self, track: _Track, last: int, count: int) -> None:
        """Ask for the ``count`` messages up to ``last``: were they sent since ``_since``?
        Delivery waits (``asked_last`` blocks other requests) until the answer says."""
        track.probe_lo = max(1, last - count + 1)
        tag = time.monotonic_ns()
        track.asked_last, track.asked_tag = last, tag
        track.deadline = time.monotonic() + self._timeout_s
        self.stats.replay_requests += 1
        with contextlib.suppress(zmq.Again):
            self._links[track.link].dealer.send_multipart([
                wire.REPLAY_MAGIC, track.topic.encode("ascii"),
                track.publisher.to_bytes(8, "little"),
                wire.REPLAY_RANGE.pack(track.probe_lo, last, tag),
            ], zmq.NOBLOCK)  # fmt: skip

    def _on_look_back(self, track: _Track, first_held: int, tag: int, msgs: list[Message]) -> None:
        """A look-back answer: keep what was sent since ``_since``; stop at the first
        message sent before it, or where the publisher's buffer ends; else look further."""
        assert self._since is not None
        if tag != track.asked_tag:
            return  # a stale answer
        lo, last = track.probe_lo, track.asked_last
        older = [m.seq for m in msgs if m.ts_send < self._since]
        now = time.monotonic_ns()
        for m in msgs:
            if m.ts_send >= self._since and m.seq < track.next and m.seq not in track.held:
                track.held[m.seq] = m
                track.arrived[m.seq] = now
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

    def _decode_replayed(self, topic_raw: bytes, bodies: list[bytes]) -> list[Message]:
        out = []
        for body in bodies:
            try:
                out.append(wire.decode([topic_raw, body], max_bytes=self._max_bytes))
            except WireError as exc:
                self._invalid([topic_raw, body], exc)
        return out

    def _bound(self, track: _Track) -> int:
        """The highest seq believed without the publisher's confirmation."""
        return max(track.confirmed, track.next - 1) + self._max_jump

    def _accept(
        self, link: int, msg: Message, *, replayed: bool, authoritative: bool = False
    ) -> None:
        track = self._track(link, msg)
        if track is None:
            return
        if not replayed:
            track.heard = time.monotonic()
        if msg.kind in (Kind.HEARTBEAT, Kind.END):
            self._announced(track, msg, authoritative=authoritative)
            self._ask(track)
            return
        if not replayed:
            track.journal = False  # the publisher is alive
        if msg.seq < track.next or msg.seq in track.held or msg.seq in track.bad:
            self.stats.duplicates += 1
            return
        error = self._check(msg) if self._check is not None else None
        if error is not None:
            self._invalid([msg.topic.encode("ascii"), msg.body], error)
            if replayed:  # the publisher's own copy: it cannot be had
                track.bad[msg.seq] = (error, msg.first_ts, msg.last_ts)
                self._release(track)
            else:  # leave it missing: the original is asked for again
                if msg.seq > track.known_last and msg.seq <= self._bound(track):
                    track.known_last, track.known_last_ts = msg.seq, msg.last_ts
                    track.known_at = time.monotonic_ns()
                self._ask(track)
            return
        if replayed:
            self.stats.recovered_messages += 1
        if msg.seq > track.next or track.probe_lo:
            track.held[msg.seq] = msg
            track.arrived[msg.seq] = time.monotonic_ns()
            self._ask(track)
            return
        self._deliver(track, msg)
        self._release(track)

    def _announced(self, track: _Track, msg: Message, *, authoritative: bool) -> None:
        """A heartbeat or END: the topic's last seq, as far as the publisher says."""
        if msg.kind is Kind.END and (authoritative or msg.seq <= self._bound(track)):
            if not track.end_seq:
                self.stats.ends += 1
            track.end_seq = max(track.end_seq, msg.seq)
        if authoritative:
            self._confirm(track, msg.seq, final=msg.kind is Kind.END, tag=time.monotonic_ns(),
                          last_ts=msg.last_ts)  # fmt: skip
        elif msg.seq <= self._bound(track):
            if msg.seq >= track.known_last:
                track.known_last, track.known_last_ts = msg.seq, msg.last_ts
                track.known_at = time.monotonic_ns()
        elif msg.seq > track.claim:
            track.claim, track.claim_at = msg.seq, time.monotonic_ns()

    def _confirm(
        self, track: _Track, last_seq: int, *, final: bool, tag: int, last_ts: int
    ) -> None:
        """The publisher says ``last_seq`` is the last seq it had published when it read
        a request sent at ``tag``: anything claimed beyond it before then is bogus."""
        track.confirmed = max(track.confirmed, last_seq)
        for seq in [s for s in track.held if s > last_seq and track.arrived[s] < tag]:
            self._drop_bogus(track, seq, f"was never published (the publisher's last is "
                                         f"{last_seq})")  # fmt: skip
        if track.claim and track.claim > last_seq and track.claim_at < tag:
            self.stats.bogus_seq += 1
            track.claim = 0
        if (track.known_last > last_seq and track.known_at < tag) or last_seq >= track.known_last:
            track.known_last, track.known_last_ts, track.known_at = last_seq, last_ts, tag
        if final:
            track.end_seq = max(track.end_seq, last_seq)

    def _drop_bogus(self, track: _Track, seq: int, why: str) -> None:
        """A held message whose seq the publisher cannot have sent: quarantined, never
        delivered (so the cursor never jumps)."""
        msg = track.held.pop(seq)
        track.arrived.pop(seq)
        self.stats.bogus_seq += 1
        self._invalid([msg.topic.encode("ascii"), msg.body],
                      WireError("seq", f"seq {seq} of {msg.topic} {why}"))  # fmt: skip

    def _deliver(self, track: _Track, msg: Message) -> None:
        track.next = msg.seq + 1
        track.last_ts = msg.last_ts
        if self._since is not None and msg.ts_send < self._since:
            return  # sent before this subscriber wanted anything
        self.stats.messages += 1
        self.stats.records += msg.count
        self.handler.on_message(msg)

    def _release(self, track: _Track) -> None:
        """Deliver held messages that are now in order (and report rejected ones); ask for
        the next gap, if any."""
        while True:
            seq = track.next
            if seq in track.held:
                track.arrived.pop(seq, None)
                self._deliver(track, track.held.pop(seq))
            elif seq in track.bad:
                error, first_ts, last_ts = track.bad.pop(seq)
                self._report(track, seq, seq, f"rejected ({error.reason}): {error.detail}",
                             first_ts, last_ts)  # fmt: skip
            else:
                break
        if track.asked_last and track.next > track.asked_last:
            track.asked_last = 0  # the request is satisfied
        self._ask(track)
        if track.publisher in self._ending:
            self._maybe_ack(track.publisher)

    def _wanted_last(self, track: _Track) -> int:
        return (min(track.held) - 1) if track.held else max(track.known_last, track.claim)

    def _ask(self, track: _Track) -> None:
        """Ask for everything missing before the first held message (or up to the last
        announced), unless a request is outstanding; a repeated range waits (backoff)."""
        if track.asked_last:
            return
        last = self._wanted_last(track)
        if last < track.next:
            return
        key = (track.publisher, track.topic)
        if track.journal:
            self._due.add(key)
            return
        now = time.monotonic()
        wanted = (track.next, last)
        if wanted == track.last_range:
            if now < track.retry_at:
                self._due.add(key)
                return
            track.backoff = min(max(track.backoff * 2, _MIN_BACKOFF_S), self._timeout_s)
        else:
            track.backoff = 0.0
            if track.next != track.last_range[0]:
                self.stats.gaps_detected += 1
        track.last_range = wanted
        track.retry_at = now + track.backoff
        tag = time.monotonic_ns()
        self.stats.replay_requests += 1
        track.asked_last, track.asked_tag = last, tag
        silent = track.publisher in self._silent
        track.deadline = now + (self._timeout_s / 10 if silent else self._timeout_s)
        request = wire.REPLAY_RANGE.pack(track.next, last, tag)
        with contextlib.suppress(zmq.Again):  # not reading: the deadline decides
            self._links[track.link].dealer.send_multipart([
                wire.REPLAY_MAGIC, track.topic.encode("ascii"),
                track.publisher.to_bytes(8, "little"), request,
            ], zmq.NOBLOCK)  # fmt: skip

    # ------------------------------------------------------------------ replay channel
    def _on_dealer(self, link: int, frames: list[bytes]) -> None:
        if frames and frames[0] == wire.END_MAGIC:
            self._on_end_notice(link, frames)
        else:
            self._on_replay(link, frames)

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
        self._silent.discard(track.publisher)
        first_held, _, first_ts, last_seq, last_ts, ended, tag = wire.REPLAY_STATUS.unpack(status)
        if track.probe_lo:
            self._on_look_back(track, first_held, tag, self._decode_replayed(topic_raw, frames[4:]))
            return
        self._answered(track, link, first_held, first_ts, (last_seq, last_ts), bool(ended), tag,
                       [[topic_raw, body] for body in frames[4:]])  # fmt: skip

    def _answered(
        self,
        track: _Track,
        link: int,
        first_held: int,
        first_ts: int,
        last: tuple[int, int],
        ended: bool,
        tag: int,
        messages: list[list[bytes]],
        *,
        source: str = "replay",
    ) -> None:
        """Process a replay answer (or a journal read); ``last`` is the topic's last seq
        and the ts_event of its last record."""
        current = tag == track.asked_tag
        asked = track.asked_last
        before = track.next
        if first_held != wire.NOTHING_HELD:
            self._confirm(track, last[0], final=ended, tag=tag, last_ts=last[1])
        for frames in messages:
            try:
                msg = wire.decode(frames, max_bytes=self._max_bytes)
            except WireError as exc:
                self._invalid(frames, exc)
                continue
            if source == "journal":
                self.stats.journal_messages += 1
            self._accept(link, msg, replayed=True)
        if source == "replay" and (not current or not asked or track.asked_last != asked):
            return  # a stale answer, or satisfied (and the next gap asked for)
        track.asked_last = 0
        if first_held > track.next:
            # Gone from the publisher's buffer and journal (or unknown to it).
            if source == "replay" and self._reader(track.publisher) is not None:
                track.journal = True
                self._due.add((track.publisher, track.topic))
                return
            what = "evicted" if first_held != wire.NOTHING_HELD else "unknown to the publisher"
            if source == "journal":
                what = "no replay answer; not in the journal"
            self._unanswered(track, what, first_held - 1, first_ts)
        elif track.next > before:
            self._ask(track)  # progress: ask for the rest at once
        elif source == "journal":
            self._unanswered(track, "no replay answer; not in the journal")
        else:
            self._ask(track)  # nothing new now (paced: a repeated range backs off)

    def _on_end_notice(self, link: int, frames: list[bytes]) -> None:
        """``END_MAGIC | topic | END body | ...``: the publisher's final seq per topic."""
        publishers: set[int] = set()
        for i in range(1, len(frames) - 1, 2):
            if not frames[i].decode("ascii", "replace").startswith(self._prefixes):
                continue
            try:
                msg = wire.decode(frames[i : i + 2], max_bytes=self._max_bytes)
            except WireError as exc:
                self._invalid(frames[i : i + 2], exc)
                continue
            if msg.kind is not Kind.END:
                continue
            publishers.add(msg.publisher)
            self._accept(link, msg, replayed=True, authoritative=True)
        if not publishers and len(frames) >= 3:
            try:  # nothing of interest to us: we are done with this publisher
                publishers.add(wire.decode(frames[1:3], max_bytes=self._max_bytes).publisher)
            except WireError:
                return
        for publisher in publishers:
            self._ending[publisher] = link
            self._maybe_ack(publisher)

    def _maybe_ack(self, publisher: int) -> None:
        """Tell an ending publisher once every topic is held up to its final seq."""
        for track in self._by_publisher.get(publisher, []):
            if track.end_seq and (track.next <= track.end_seq or track.asked_last):
                return
        link = self._ending.pop(publisher)
        with contextlib.suppress(zmq.Again):  # it repeats its notice
            self._links[link].dealer.send_multipart(
                [wire.ACK_MAGIC, publisher.to_bytes(8, "little")], zmq.NOBLOCK
            )

    # ------------------------------------------------------------------ giving up
    def _reader(self, publisher: int) -> JournalReader | None:
        """The journal of ``publisher`` on this host, if there is one."""
        reader = self._readers.get(publisher)
        if reader is None:
            candidate = JournalReader(self._journal_dir, publisher)
            if not candidate.exists():
                return None
            reader = self._readers[publisher] = candidate
        return reader

    def _check_silent(self, now: float) -> None:
        """A publisher silent for long without an END (killed, say) may have published
        more than arrived: its journal on this host, if any, tells and supplies it."""
        silent_s = max(10 * self.settings.zmq_heartbeat_s, 2 * self._timeout_s)
        for track in list(self._tracks.values()):
            if (
                track.asked_last
                or track.journal
                or track.end_seq
                or not track.heard
                or now - track.heard < silent_s
            ):
                continue
            reader = self._reader(track.publisher)
            if reader is None:
                continue
            last = reader.topics().get(track.topic, 0)
            if last >= track.next:
                log.warning("subscriber: %s silent since seq %d; its journal has up to %d",
                            track.topic, track.next - 1, last)  # fmt: skip
                track.known_last, track.journal = max(track.known_last, last), True
                self._due.add((track.publisher, track.topic))

    def _service_due(self) -> None:
        now = time.monotonic()
        for key in list(self._due):
            track = self._tracks.get(key)
            if track is None:
                self._due.discard(key)
                continue
            if track.journal:
                self._due.discard(key)
                self._read_journal(track)
            elif now >= track.retry_at:
                self._due.discard(key)
                self._ask(track)

    def _read_journal(self, track: _Track) -> None:
        """Take what is missing from the publisher's journal on this host."""
        reader = self._reader(track.publisher)
        if reader is None:
            track.journal = False
            self._unanswered(track, "no replay answer")
            return
        for _ in range(_JOURNAL_ROUNDS):
            last = self._wanted_last(track)
            if last < track.next:
                return
            tag = time.monotonic_ns()
            answer = reader.get(track.topic, track.next, max(last, track.next))
            track.asked_last, track.asked_tag = last, tag
            before = track.next
            self._answered(track, track.link, answer.first_held, answer.first_ts_event,
                           (answer.last_seq, answer.last_ts_event), answer.ended, tag,
                           [[track.topic.encode("ascii"), b] for b in answer.bodies],
                           source="journal")  # fmt: skip
            if track.next == before or not track.journal:
                return
        self._due.add((track.publisher, track.topic))

    def _unanswered(
        self, track: _Track, reason: str, last: int | None = None, first_ts: int = 0
    ) -> None:
        """Nobody can supply ``track.next..``: drop claims beyond reach, report the rest."""
        bound = self._bound(track)
        for seq in [s for s in track.held if s > bound]:
            self._drop_bogus(track, seq, f"is more than zmq_max_seq_jump beyond the last "
                                         f"confirmed ({bound - self._max_jump})")  # fmt: skip
        if track.claim:
            self.stats.bogus_seq += 1
            track.claim = 0
        wanted = self._wanted_last(track)
        self._lose(track, wanted if last is None else min(last, wanted), reason, first_ts)

    def _lose(self, track: _Track, last: int, reason: str, first_ts: int = 0) -> None:
        """Declare ``track.next..last`` lost and move delivery past it."""
        first = track.next
        if last >= first:
            after = track.held.get(last + 1)
            end = after.first_ts if after is not None else (track.known_last_ts or track.last_ts)
            self._report(track, first, last, reason, track.last_ts or first_ts or end, end)
        self._release(track)

    def _report(
        self, track: _Track, first: int, last: int, reason: str, start_ns: int, end_ns: int
    ) -> None:
        self.stats.lost_messages += last - first + 1
        log.warning("subscriber: messages %d..%d of %s lost (%s)", first, last, track.topic, reason)
        track.next = last + 1
        gap = Gap(track.publisher, track.topic, first, last, start_ns, end_ns, reason)
        self.handler.on_gap(gap)

    def _expire(self, now: float) -> None:
        for track in list(self._tracks.values()):
            if track.asked_last and now >= track.deadline and track.probe_lo:
                # No answer to a look-back: deliver from where it had got to.
                track.probe_lo = track.asked_last = 0
                self._release(track)
            elif track.asked_last and now >= track.deadline:
                self._drain_answers(track.link)  # the handler may have kept us from them
                if not track.asked_last or now < track.deadline:
                    continue
                track.asked_last = 0
                self._silent.add(track.publisher)
                if self._reader(track.publisher) is not None:
                    track.journal = True
                    self._due.add((track.publisher, track.topic))
                else:
                    self._unanswered(track, "no replay answer")

    def _drain_answers(self, link: int) -> None:
        dealer = self._links[link].dealer
        for _ in range(256):
            try:
                frames = dealer.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            self._on_dealer(link, frames)


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
