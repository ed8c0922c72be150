"""``Subscriber``: SUB sockets with in-order delivery, gap repair and clean shutdown.

The I/O shell over ``sequencer.Sequencer``, which holds the sequencing rules per
(publisher, topic) as a pure state machine (in-order delivery, duplicates, gaps
asked of the publisher's replay service and reported when nobody can fill them,
seqs the publisher never confirmed, END of stream, the look-back of
``recover_since_ns``; its docstring tells them). This module owns what it cannot:
the sockets, the clock, the publishers' journals on this host and the handler.

One thread runs ``run()``: a ``zmq.Poller`` blocks on the SUB sockets, the replay
DEALER sockets and an inproc control socket (``stop()`` writes to it), with a
timeout only when a replay answer or a paced request is due. What arrives is
decoded and handed to the sequencer with the time; its actions are executed in
order: messages to the handler's ``on_message``, lost ranges to ``on_gap``
(``records.events.Gap``), rejected messages to ``on_invalid`` (a failed checksum,
or the handler's ``check``), replay requests and END acknowledgements to the
publisher's replay service. A publisher silent for long without an END, or one
whose replay service does not answer, is read from its journal on this host, if
there is one.

A subscriber that does not recover from the start (a live viewer such as ``tickvault
tail``) can still ask for what a publisher sent since a given time: PUB/SUB drops
what is sent before a new subscription reaches the publisher (the "slow joiner"),
so the first trades of a feed that starts after the viewer are lost without it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import zmq

from tickvault.config import Settings
from tickvault.errors import TickvaultError
from tickvault.records.events import Gap
from tickvault.transport import wire
from tickvault.transport.endpoints import Endpoints, endpoint_name, inproc_address
from tickvault.transport.handlers import Handler, SinkHandler
from tickvault.transport.journal import JournalReader
from tickvault.transport.security import curve_keys, secure_client
from tickvault.transport.sequencer import (
    Ack,
    Action,
    CheckFn,
    Deliver,
    Lost,
    Reject,
    Request,
    Sequencer,
    SubscriberStats,
    Track,
)
from tickvault.transport.wire import Kind, WireError

__all__ = ["CheckFn", "Gap", "Handler", "SinkHandler", "Subscriber", "SubscriberStats"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Link:
    """The sockets to one publisher."""

    sub: zmq.Socket[bytes]
    dealer: zmq.Socket[bytes]


_HELLO_S = 2.0
"""How often the subscriber tells each publisher it is there (see ``wire.HELLO_MAGIC``)."""
_IDLE_POLL_MS = 500
"""A poll never waits longer: a signal that lands just before the poll starts only runs
its Python handler (``stop()``) when the poll returns."""
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
        self._ctx = context or zmq.Context.instance()
        self._recover_from_start = recover_from_start
        self._max_bytes = self.settings.zmq_max_message_bytes
        self._timeout_s = self.settings.zmq_replay_timeout_s
        self._journal_dir = self.settings.journal_path
        self._readers: dict[int, JournalReader] = {}
        kinds = tuple(kinds)
        self._prefixes = tuple(wire.topic_for(k, s) for k in kinds for s in (symbols or [""]))
        self._seq = Sequencer(
            max_jump=self.settings.zmq_max_seq_jump,
            timeout_s=self._timeout_s,
            max_bytes=self._max_bytes,
            prefixes=self._prefixes,
            recover_from_start=recover_from_start,
            since_ns=recover_since_ns,
            check=getattr(self.handler, "check", None),
            resume=self.handler.resume_seq,
            has_journal=lambda publisher: self._reader(publisher) is not None,
        )
        self.stats: SubscriberStats = self._seq.stats
        self._links: list[_Link] = []
        curve_keys(self.settings, server=False)  # a bad key: a ConfigError before any socket
        for eps in endpoints or [Endpoints.from_settings(self.settings)]:
            sub = self._ctx.socket(zmq.SUB)
            sub.setsockopt(zmq.RCVHWM, self.settings.zmq_hwm)
            sub.setsockopt(zmq.LINGER, 0)
            secure_client(sub, self.settings)
            for name in sorted({endpoint_name(k) for k in kinds}):
                sub.connect(eps.data()[name])
            for prefix in self._prefixes:
                sub.setsockopt(zmq.SUBSCRIBE, prefix.encode("ascii"))
            dealer = self._ctx.socket(zmq.DEALER)
            dealer.setsockopt(zmq.LINGER, 0)
            secure_client(dealer, self.settings)
            dealer.connect(eps.replay)
            self._links.append(_Link(sub, dealer))
        self._ctrl_addr = inproc_address("sub")
        self._ctrl = self._ctx.socket(zmq.PAIR)
        self._ctrl.bind(self._ctrl_addr)
        self._ctrl_out = self._ctx.socket(zmq.PAIR)
        self._ctrl_out.connect(self._ctrl_addr)
        self._wake_addr = inproc_address("sub-wake")
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
        if not topic.startswith(self._prefixes) or self._seq.track(publisher, topic):
            return False
        reader = self._reader(publisher)
        if reader is None:
            return False
        return self._seq.adopt(publisher, topic, done, reader.topics().get(topic, 0))

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
        positions: dict[tuple[int, str], int | None] = {}
        for track in self._seq.tracks():
            try:
                positions[track.publisher, track.topic] = self.handler.resume_seq(
                    track.publisher, track.topic
                )
            except TickvaultError:
                return  # the store is gone again: the next loop tries again
        on_resync = getattr(self.handler, "on_resync", None)
        if on_resync is not None:
            on_resync()
        self._run(self._seq.resync(positions, time.monotonic_ns()))
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
                self._check_silent(time.monotonic_ns())
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
            self._expire()
            self._service_due()

    def _poll_timeout_ms(self) -> int | None:
        at = self._seq.next_wakeup()
        if at is None:
            return None
        return max(0, int((at - time.monotonic_ns()) / 1e6) + 1)

    # ------------------------------------------------------------------ actions
    def _run(self, actions: list[Action]) -> None:
        """Execute the sequencer's actions, in order."""
        for action in actions:
            if isinstance(action, Deliver):
                self.handler.on_message(action.msg)
            elif isinstance(action, Request):
                request = wire.REPLAY_RANGE.pack(action.first, action.last, action.tag)
                with contextlib.suppress(zmq.Again):  # not reading: the deadline decides
                    self._links[action.link].dealer.send_multipart([
                        wire.REPLAY_MAGIC, action.topic.encode("ascii"),
                        action.publisher.to_bytes(8, "little"), request,
                    ], zmq.NOBLOCK)  # fmt: skip
            elif isinstance(action, Lost):
                gap = action.gap
                log.warning("subscriber: messages %d..%d of %s lost (%s)",
                            gap.seq_first, gap.seq_last, gap.topic, gap.reason)  # fmt: skip
                self.handler.on_gap(gap)
            elif isinstance(action, Reject):
                self.handler.on_invalid(action.frames, action.error)
            elif isinstance(action, Ack):
                with contextlib.suppress(zmq.Again):  # it repeats its notice
                    self._links[action.link].dealer.send_multipart(
                        [wire.ACK_MAGIC, action.publisher.to_bytes(8, "little")], zmq.NOBLOCK
                    )

    def _on_frames(self, link: int, frames: list[bytes]) -> None:
        try:
            msg = wire.decode(frames, max_bytes=self._max_bytes)
        except WireError as exc:
            self._run(self._seq.reject(frames, exc))
            return
        if self._seq.track(msg.publisher, msg.topic) is None:
            self._take_predecessor_tail(link, msg)
        self._run(self._seq.accept(link, msg, time.monotonic_ns()))

    def _take_predecessor_tail(self, link: int, msg: wire.Message) -> None:
        """A new publisher on a link where another one's topic has no END: the other one
        is gone (the new one binds its endpoint), maybe killed with messages this side
        never received. Its journal on this host supplies them now, before the new
        publisher's first message, so a reader that moves forward only (the feature
        worker) is not handed the old tail after the newer trades."""
        for track in self._seq.tracks():
            if (track.link != link or track.topic != msg.topic or track.end_seq
                    or track.publisher == msg.publisher):  # fmt: skip
                continue
            reader = self._reader(track.publisher)
            if reader is None:
                continue
            last = reader.topics().get(track.topic, 0)
            if last < track.next:
                continue
            log.warning("subscriber: %s of publisher %016x ended without END at seq %d and a "
                        "new publisher took its place; its journal has up to %d: taken first",
                        track.topic, track.publisher, track.next - 1, last)  # fmt: skip
            self._seq.journal_has(track, last)
            while track.next <= last:  # each read takes a bounded part; stop when stuck
                before = track.next
                self._read_journal(track)
                if track.next <= before:
                    break

    def _on_dealer(self, link: int, frames: list[bytes]) -> None:
        now = time.monotonic_ns()
        if frames and frames[0] == wire.END_MAGIC:
            self._run(self._seq.end_notice(link, frames, now))
        else:
            self._run(self._seq.replay_answer(link, frames, now))

    def _expire(self) -> None:
        # Read the answers to overdue requests first: the handler may have kept us from them.
        for link in self._seq.overdue_links(time.monotonic_ns()):
            self._drain_answers(link)
        self._run(self._seq.expire(time.monotonic_ns()))

    def _drain_answers(self, link: int) -> None:
        dealer = self._links[link].dealer
        for _ in range(256):
            try:
                frames = dealer.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            self._on_dealer(link, frames)

    # ------------------------------------------------------------------ journals
    def _reader(self, publisher: int) -> JournalReader | None:
        """The journal of ``publisher`` on this host, if there is one."""
        reader = self._readers.get(publisher)
        if reader is None:
            candidate = JournalReader(self._journal_dir, publisher)
            if not candidate.exists():
                return None
            reader = self._readers[publisher] = candidate
        return reader

    def _check_silent(self, now: int) -> None:
        """A publisher silent for long without an END (killed, say) may have published
        more than arrived: its journal on this host, if any, tells and supplies it."""
        silent_s = max(10 * self.settings.zmq_heartbeat_s, 2 * self._timeout_s)
        for track in self._seq.silent(now, int(silent_s * 1e9)):
            reader = self._reader(track.publisher)
            if reader is None:
                continue
            last = reader.topics().get(track.topic, 0)
            if last >= track.next:
                log.warning("subscriber: %s silent since seq %d; its journal has up to %d",
                            track.topic, track.next - 1, last)  # fmt: skip
                self._seq.journal_has(track, last)

    def _service_due(self) -> None:
        actions, journals = self._seq.due(time.monotonic_ns())
        self._run(actions)
        for track in journals:
            self._read_journal(track)

    def _read_journal(self, track: Track) -> None:
        """Take what is missing from the publisher's journal on this host."""
        reader = self._reader(track.publisher)
        if reader is None:
            self._run(self._seq.journal_missing(track, time.monotonic_ns()))
            return
        for _ in range(_JOURNAL_ROUNDS):
            wanted = self._seq.journal_request(track, time.monotonic_ns())
            if wanted is None:
                return
            first, last, tag = wanted
            answer = reader.get(track.topic, first, last)
            actions, more = self._seq.journal_answer(
                track, answer.first_held, answer.first_ts_event,
                (answer.last_seq, answer.last_ts_event), answer.ended, tag, answer.bodies,
                time.monotonic_ns(),
            )  # fmt: skip
            self._run(actions)
            if not more:
                return
        self._seq.mark_due(track)
