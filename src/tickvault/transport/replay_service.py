"""The publisher's replay service (mixed into ``Publisher``): a ROUTER socket that
answers ``REPLAY topic first last`` requests from memory, else from the journal (also
for the ids of earlier sessions found there), the journal writes, and the end of
stream: END per topic on the PUB sockets and as a notice to every subscriber heard
from, repeated until each acknowledges or ``zmq_linger_s`` has passed.

Its own thread runs ``_replay_loop``; the publisher's sender thread only calls the
journal writes, and uses the PUB sockets until ``close()`` has stopped it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq

from tickvault.config import Settings
from tickvault.transport import wire
from tickvault.transport.journal import JournalReader, JournalWriter
from tickvault.transport.replay import ReplayAnswer, ReplayBuffer
from tickvault.transport.wire import Kind

log = logging.getLogger("tickvault.transport.publisher")

_PEER_FORGET_S = 60.0
"""A subscriber not heard from for this long (it says hello every few seconds) is not
waited for at the end of stream."""


@dataclass(slots=True)
class TopicState:
    """One topic of a publisher: its socket, queue and last sequence number."""

    topic: bytes
    kind: Kind
    socket: zmq.Socket[bytes]
    record_size: int
    name: str
    queue: deque[bytes] = field(default_factory=deque)
    """Packed records waiting for the sender (appended by any thread)."""
    seq: int = 0
    first_ts: int = 0
    last_ts: int = 0


class ReplayService:
    """The replay service, journal and end of stream of a ``Publisher``."""

    settings: Settings
    id: int
    _ctx: zmq.Context[Any]
    _ctrl_addr: str
    _router: zmq.Socket[bytes]
    _topics: dict[str, TopicState]
    _replay: ReplayBuffer
    _counts: dict[str, int]
    _journal: JournalWriter | None
    _journal_dir: Path
    _readers: dict[int, JournalReader | None]
    _peers: dict[bytes, list[float | bool]]
    _ended: threading.Event
    _ending: bool

    def _journal_write(self, topic: bytes, body: bytes) -> None:
        assert self._journal is not None
        try:
            self._journal.append(topic, body)
            self._counts["journal_messages"] += 1
        except OSError as exc:  # a full disk must not stop the feed
            log.error("publisher: journal write failed (%s); journal off from here", exc)
            self._journal = None

    def _journal_flush(self) -> None:
        if self._journal is not None:
            try:
                self._journal.flush()
            except OSError as exc:
                log.error("publisher: journal write failed (%s); journal off from here", exc)
                self._journal = None

    # ------------------------------------------------------------------ replay service
    def _replay_loop(self) -> None:
        ctrl = self._ctx.socket(zmq.PAIR)
        ctrl.connect(self._ctrl_addr)
        poller = zmq.Poller()
        poller.register(self._router, zmq.POLLIN)
        poller.register(ctrl, zmq.POLLIN)
        ending_until = 0.0
        try:
            while True:
                timeout = None
                if ending_until:
                    timeout = max(0, int(self.settings.zmq_heartbeat_s * 1000))
                events = dict(poller.poll(timeout))
                if ctrl in events:
                    if ctrl.recv() == b"stop":
                        return
                    ending_until = time.monotonic() + self.settings.zmq_linger_s
                    self._announce_end(first=True)
                if self._router in events:
                    for _ in range(256):
                        try:
                            frames = self._router.recv_multipart(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                        try:
                            self._on_router(frames)
                        except Exception:  # the replay service must survive any request
                            log.exception("publisher: replay request failed")
                if ending_until:
                    waiting = self._waiting_peers()
                    if not waiting or time.monotonic() >= ending_until:
                        if waiting:
                            log.warning(
                                "publisher: %d subscriber(s) did not confirm the end of stream "
                                "within zmq_linger_s=%gs; what they miss is in the journal",
                                len(waiting), self.settings.zmq_linger_s,
                            )  # fmt: skip
                        ending_until = 0.0
                        self._ended.set()
                    elif not events or self._router not in events:
                        self._announce_end(first=False)
        finally:
            ctrl.close(linger=0)

    def subscribers(self) -> int:
        """Subscribers heard from recently on the replay socket (each says hello every
        few seconds once running): a test or a tool can wait for its subscribers before
        it publishes a short burst, which a subscriber still connecting would otherwise
        only know of from the replay buffer."""
        since = time.monotonic() - _PEER_FORGET_S
        return sum(1 for heard, _ in list(self._peers.values()) if heard >= since)

    def _waiting_peers(self) -> list[bytes]:
        """Subscribers heard from recently that have not confirmed the end of stream."""
        since = time.monotonic() - _PEER_FORGET_S
        return [p for p, (heard, acked) in self._peers.items() if not acked and heard >= since]

    def _on_router(self, frames: list[bytes]) -> None:
        peer = frames[0]
        if len(frames) == 2 and frames[1] == wire.BYE_MAGIC:
            self._peers.pop(peer, None)
            return
        state = self._peers.get(peer)
        if state is None:
            state = self._peers[peer] = [0.0, False]
            if self._ending:
                self._send_end_notice(peer)
        state[0] = time.monotonic()
        if len(frames) == 2 and frames[1] == wire.HELLO_MAGIC:
            return
        if len(frames) == 3 and frames[1] == wire.ACK_MAGIC:
            if int.from_bytes(frames[2], "little") == self.id and not state[1]:
                self._counts["end_acks"] += 1
                state[1] = True
            return
        self._answer(frames)

    def _answer(self, frames: list[bytes]) -> None:
        self._counts["replay_requests"] += 1
        # [identity, magic, topic, publisher(8), range(16)]
        if (
            len(frames) != 5
            or frames[1] != wire.REPLAY_MAGIC
            or len(frames[4]) != wire.REPLAY_RANGE.size
        ):
            log.warning("publisher: malformed replay request ignored (%d frames)", len(frames))
            return
        identity, _, topic_raw, pub_raw, range_raw = frames
        first, last, tag = wire.REPLAY_RANGE.unpack(range_raw)
        publisher = int.from_bytes(pub_raw, "little")
        topic = topic_raw.decode("ascii", "replace")
        if publisher == self.id:
            answer = self._replay.get(topic, first, last)
            if answer.first_held > first and answer.first_held != wire.NOTHING_HELD:
                answer = self._from_journal(publisher, topic, first, answer)
        else:  # an earlier session: its journal, if it is on this host
            answer = self._from_journal(publisher, topic, first, None)
        status = wire.REPLAY_STATUS.pack(
            answer.first_held, len(answer.bodies), answer.first_ts_event, answer.last_seq,
            answer.last_ts_event, int(answer.ended), tag,
        )  # fmt: skip
        try:
            self._router.send_multipart(
                [identity, wire.REPLAY_MAGIC, topic_raw, pub_raw, status, *answer.bodies],
                zmq.NOBLOCK,
            )
        except zmq.ZMQError:  # gone, or not reading: it asks again or gives up
            return
        self._counts["replayed_messages"] += len(answer.bodies)

    def _from_journal(
        self, publisher: int, topic: str, first: int, memory: ReplayAnswer | None
    ) -> ReplayAnswer:
        """What the journal of ``publisher`` holds from ``first`` on, up to what memory
        still holds (the subscriber asks again for the rest)."""
        nothing = memory or ReplayAnswer(wire.NOTHING_HELD, [], 0)
        if publisher not in self._readers:
            candidate = JournalReader(self._journal_dir, publisher)
            self._readers[publisher] = candidate if candidate.exists() else None
        reader = self._readers[publisher]
        if reader is None:
            return nothing
        last = memory.first_held - 1 if memory is not None else 2**63
        found = reader.get(topic, first, last)
        if found.first_held == wire.NOTHING_HELD or found.first_held > (
            memory.first_held if memory is not None else found.first_held
        ):
            return nothing
        self._counts["journal_answers"] += len(found.bodies)
        if memory is None:
            return found
        return ReplayAnswer(
            found.first_held, found.bodies, memory.first_ts_event or found.first_ts_event,
            memory.last_seq, memory.last_ts_event, memory.ended,
        )  # fmt: skip

    # ------------------------------------------------------------------ end of stream
    def _end_bodies(self) -> list[bytes]:
        now = time.time_ns()
        frames: list[bytes] = []
        for st in list(self._topics.values()):
            if st.seq:
                frames += [st.topic, wire.encode_end(st.topic, self.id, st.seq, now, st.last_ts)]
        return frames

    def _send_end_notice(self, peer: bytes) -> None:
        frames = self._end_bodies()
        if not frames:
            return
        try:
            self._router.send_multipart([peer, wire.END_MAGIC, *frames], zmq.NOBLOCK)
        except zmq.ZMQError as exc:
            if exc.errno == zmq.EHOSTUNREACH:  # its connection is gone: do not wait for it
                self._peers.pop(peer, None)
            # else not reading (stopped?): the notice is repeated

    def _announce_end(self, *, first: bool) -> None:
        """END on every topic's PUB socket and a notice to each subscriber not yet done
        (the sender thread has stopped, so this thread may use the PUB sockets)."""
        frames = self._end_bodies()
        for i in range(0, len(frames), 2):
            st = self._topics[frames[i].decode("ascii")]
            st.socket.send_multipart([frames[i], frames[i + 1]])
            if first:
                self._replay.end(st.name)
                if self._journal is not None:
                    self._journal_write(frames[i], frames[i + 1])
        if first:
            self._journal_flush()
        for peer in self._waiting_peers():
            self._send_end_notice(peer)
