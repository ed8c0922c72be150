"""``Publisher``: PUB sockets with per-topic sequence numbers, adaptive batching and a
replay service (the ZeroMQ "clone" pattern).

Publishing never does socket I/O on the caller's thread (a ProfitDLL callback
must return at once): a record is packed and appended to a queue, and one
sender thread owns the PUB sockets. The sender takes everything queued when it
wakes and sends it as one message per topic (at most ``zmq_max_batch``
records): at a low rate each event goes out alone the moment it arrives; under
load, what arrived while the previous send was in progress goes out together,
so the delay batching adds is bounded by one send of at most
``zmq_max_batch`` records.

Every message body is kept in a byte-bounded replay buffer and written to the
journal on disk (``transport/journal.py``); a ROUTER socket answers ``REPLAY
topic first last`` requests from subscribers that saw a gap, from memory, else
from the journal (also for the ids of earlier sessions found there). When idle
the sender repeats each topic's last sequence number (a heartbeat) so that a
loss at the end of a burst is noticed too.

End of stream: ``close()`` sends an END message per topic (its final sequence
number) on the PUB sockets and, as a notice, to every subscriber connected to
the ROUTER, repeated every ``zmq_heartbeat_s``; it keeps answering replay
requests until every connected subscriber has acknowledged that it holds
everything up to the final sequence numbers, or ``zmq_linger_s`` has passed.

This module is the publishing side (queues, the sender thread, lifecycle); the
replay service, the journal writes and the end of stream are in
``replay_service`` (mixed into ``Publisher``).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import zmq

from tickvault.config import Settings
from tickvault.errors import ConfigError, ValidationError
from tickvault.records.signals import Signal
from tickvault.records.trades import TRADE_DTYPE, TradeBatch, TradeFlag, TradeType
from tickvault.transport import wire
from tickvault.transport.endpoints import Endpoints, endpoint_name, inproc_address
from tickvault.transport.journal import JournalReader, JournalWriter
from tickvault.transport.replay import ReplayBuffer, ReplayFill
from tickvault.transport.replay_service import ReplayService, TopicState
from tickvault.transport.security import ZapLease, secure_server
from tickvault.transport.wire import Kind

log = logging.getLogger(__name__)

_pack_trade = wire.TRADE_RECORD.pack
_MAX_TAKE = 1 << 16
"""Most queue items one topic sends per pass, so no topic starves the others."""


@dataclass(frozen=True, slots=True)
class PublisherStats:
    messages: int
    records: int
    heartbeats: int
    replay_requests: int
    replayed_messages: int
    replay_evicted: int
    queued: int
    messages_by_kind: dict[str, int]
    journal_messages: int = 0
    journal_answers: int = 0
    """Replayed messages that came from the journal (evicted from memory, or of an
    earlier session)."""
    end_acks: int = 0
    """Subscribers that acknowledged the end of stream before ``close()`` returned."""


class Publisher(ReplayService):
    """Publishes trades, history, book updates, states and signals. Thread-safe."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        endpoints: Endpoints | None = None,
        publisher_id: int | None = None,
        context: zmq.Context[Any] | None = None,
    ):
        # Explicit settings only: None means the defaults, never a file found in the
        # working directory (pass ``load_settings()`` for the configured ones).
        self.settings = settings if settings is not None else Settings.model_validate({})
        self.endpoints = endpoints or Endpoints.from_settings(self.settings)
        self.id = (
            publisher_id
            if publisher_id is not None
            else int.from_bytes(os.urandom(8), "little") or 1
        )
        self._ctx = context or zmq.Context.instance()
        self._max_batch = self.settings.zmq_max_batch
        self._sockets: dict[str, zmq.Socket[bytes]] = {}
        self._leases: list[ZapLease] = []
        try:
            for name, ep in self.endpoints.data().items():
                sock = self._ctx.socket(zmq.PUB)
                self._sockets[name] = sock
                sock.setsockopt(zmq.SNDHWM, self.settings.zmq_hwm)
                sock.setsockopt(zmq.LINGER, 2000)
                self._secure(sock)
                sock.bind(ep)
            self._router = self._ctx.socket(zmq.ROUTER)
            self._router.setsockopt(zmq.LINGER, 0)
            # sending to a subscriber whose connection is gone fails (EHOSTUNREACH)
            self._router.setsockopt(zmq.ROUTER_MANDATORY, 1)
            self._secure(self._router)
            self._router.bind(self.endpoints.replay)
        except ConfigError:
            self._close_sockets()
            raise
        except zmq.ZMQError as exc:
            self._close_sockets()
            raise ConfigError(
                f"cannot bind the publisher's sockets ({exc}); is another publisher running "
                "on these ports? Change zmq_*_port or zmq_host in the config"
            ) from exc
        self._topics: dict[str, TopicState] = {}
        self._topics_lock = threading.Lock()
        self._queues: dict[Kind, dict[str, deque[bytes]]] = {k: {} for k in wire.TOPIC_PREFIX}
        self._flush_waiters: list[threading.Event] = []
        self._wake = threading.Event()
        self._idle = False
        self._stopping = False
        self._by_kind: dict[str, int] = {}
        self._replay = ReplayBuffer(int(self.settings.zmq_replay_buffer_mb * 2**20))
        self._counts = {
            "records": 0,
            "heartbeats": 0,
            "replay_requests": 0,
            "replayed_messages": 0,
            "journal_messages": 0,
            "journal_answers": 0,
            "end_acks": 0,
        }
        self._journal_dir = self.settings.journal_path
        self._journal: JournalWriter | None = None
        self._readers: dict[int, JournalReader | None] = {}
        if self.settings.journal:
            try:
                self._journal = JournalWriter(
                    self._journal_dir, self.id,
                    max_bytes=int(self.settings.journal_max_mb * 2**20),
                    keep_s=self.settings.journal_keep_hours * 3600,
                )  # fmt: skip
            except OSError as exc:
                log.error("publisher: no journal (%s); replay is from memory only", exc)
        self._peers: dict[bytes, list[float | bool]] = {}
        """Subscribers heard from on the ROUTER (hello, request, ack) -> [when last heard,
        acknowledged the end of stream]; a subscriber's close says goodbye."""
        self._ended = threading.Event()
        self._ending = False
        self._ctrl_addr = inproc_address("replay")
        self._ctrl = self._ctx.socket(zmq.PAIR)
        self._ctrl.bind(self._ctrl_addr)
        self._sender = threading.Thread(
            target=self._send_loop, name="tickvault-pub-send", daemon=True
        )
        self._server = threading.Thread(
            target=self._replay_loop, name="tickvault-pub-replay", daemon=True
        )
        self._sender.start()
        self._server.start()
        self._closed = False

    # ------------------------------------------------------------------ publishing
    def _topic_queue(self, kind: Kind, symbol: str) -> deque[bytes]:
        """The queue of a topic, created on first use (the slow path)."""
        with self._topics_lock:
            topic = wire.topic_for(kind, symbol)
            st = self._topics.get(topic)
            if st is None:
                sock = self._sockets[endpoint_name(kind)]
                size = wire.RECORD_DTYPE[kind].itemsize
                st = self._topics[topic] = TopicState(
                    topic.encode("ascii"), kind, sock, size, topic
                )
                self._queues[kind][symbol] = st.queue
            return st.queue

    def publish_trade(
        self,
        symbol: str,
        ts_event: int,
        trade_id: int,
        price: float,
        qty: int,
        volume: float = 0.0,
        buy_agent: int = 0,
        sell_agent: int = 0,
        trade_type: int = TradeType.UNKNOWN,
        flags: int = 0,
        ts_recv: int = 0,
        *,
        history: bool = False,
    ) -> None:
        """Publish one trade (the per-callback path): pack it and queue it; the sender
        thread does the I/O. ``ts_recv`` 0 means now."""
        if history:
            kind, flags = Kind.HISTORY, flags | TradeFlag.HISTORY
        else:
            kind = Kind.TRADE
        queue = self._queues[kind].get(symbol)
        if queue is None:  # (an empty queue is falsy: test for None)
            queue = self._topic_queue(kind, symbol)
        queue.append(
            _pack_trade(ts_event, ts_recv or time.time_ns(), trade_id, price, qty, volume,
                        buy_agent, sell_agent, trade_type, flags)
        )  # fmt: skip
        if self._idle:
            self._wake.set()

    def publish_trades(
        self, symbol: str, trades: TradeBatch | npt.NDArray[np.void], *, history: bool = False
    ) -> None:
        """Publish a batch of trades (a burst, a history answer)."""
        arr = trades.to_structured() if isinstance(trades, TradeBatch) else np.asarray(trades)
        if arr.dtype != TRADE_DTYPE:
            arr = arr.astype(TRADE_DTYPE)
        kind = Kind.HISTORY if history else Kind.TRADE
        if history:
            arr = arr.copy()
            arr["flags"] |= np.uint8(TradeFlag.HISTORY)
        self.publish_records(kind, symbol, arr)

    def publish_records(self, kind: Kind, symbol: str, records: npt.NDArray[np.void]) -> None:
        """Publish records of ``kind``'s layout (``wire.RECORD_DTYPE``)."""
        dtype = wire.RECORD_DTYPE[kind]
        if records.dtype != dtype:
            raise ValidationError(
                f"{kind.name} records must have dtype {dtype}, got {records.dtype}", field="dtype"
            )
        if len(records) == 0:
            return
        queue = self._queues[kind].get(symbol)
        if queue is None:
            queue = self._topic_queue(kind, symbol)
        queue.append(records.tobytes())
        if self._idle:
            self._wake.set()

    def publish_signals(self, symbol: str, signals: Sequence[Signal]) -> None:
        """Publish model signals on ``signal.SYMBOL`` (the signals port), with the same
        sequence numbers, replay buffer and journal as trades."""
        if signals:
            recs = np.array([s.to_record() for s in signals], dtype=wire.SIGNAL_DTYPE)
            self.publish_records(Kind.SIGNAL, symbol, recs)

    def publish_state(self, conn_type: int, result: int, *, source: str = "feed") -> None:
        rec = np.array([(time.time_ns(), conn_type, result)], dtype=wire.STATE_DTYPE)
        self.publish_records(Kind.STATE, source, rec)

    def publish_progress(self, symbol: str, percent: int) -> None:
        rec = np.array([(time.time_ns(), percent)], dtype=wire.PROGRESS_DTYPE)
        self.publish_records(Kind.PROGRESS, symbol, rec)

    def publish_gap(self, symbol: str, start_ns: int, end_ns: int, reason: int) -> None:
        """Tell the bridges that [start_ns, end_ns) of ``symbol`` is missing for good."""
        rec = np.array([(time.time_ns(), start_ns, end_ns, reason)], dtype=wire.GAP_DTYPE)
        self.publish_records(Kind.GAP, symbol, rec)

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until everything published so far has been handed to ZeroMQ."""
        done = threading.Event()
        self._flush_waiters.append(done)
        self._wake.set()
        return done.wait(timeout_s)

    # ------------------------------------------------------------------ sender
    def _emit(self, st: TopicState, payload: bytes | memoryview) -> bytes:
        """Number, seal, keep (replay buffer, journal) and return one message body; the
        caller sends it once the journal is flushed, so whatever a subscriber received
        is already in the journal."""
        count = len(payload) // st.record_size
        st.seq += 1
        body = wire.encode_body(st.topic, st.kind, self.id, st.seq, time.time_ns(), payload, count)
        if st.first_ts == 0:
            st.first_ts = int.from_bytes(payload[:8], "little", signed=True)
        last = (count - 1) * st.record_size
        st.last_ts = int.from_bytes(payload[last : last + 8], "little", signed=True)
        self._replay.add(st.name, st.seq, body, st.first_ts, st.last_ts)
        if self._journal is not None:
            self._journal_write(st.topic, body)
        self._counts["records"] += count
        self._by_kind[st.kind.name] = self._by_kind.get(st.kind.name, 0) + 1
        return body

    def _pending(self) -> bool:
        return any(st.queue for st in list(self._topics.values()))

    def _drain(self) -> None:
        """Send what every topic has queued: one message per topic, split at max_batch."""
        waiters, self._flush_waiters = self._flush_waiters, []
        out: list[tuple[TopicState, list[bytes]]] = []
        for st in list(self._topics.values()):
            queue = st.queue
            n = min(len(queue), _MAX_TAKE)
            if not n:
                continue
            popleft = queue.popleft
            payload = memoryview(b"".join([popleft() for _ in range(n)]))
            step = self._max_batch * st.record_size
            out.append((st, [self._emit(st, payload[i : i + step])
                             for i in range(0, len(payload), step)]))  # fmt: skip
        self._journal_flush()
        for st, bodies in out:
            send, topic = st.socket.send_multipart, st.topic
            for body in bodies:
                send([topic, body])
        for event in waiters:
            event.set()

    def _heartbeat(self) -> None:
        now = time.time_ns()
        for st in list(self._topics.values()):
            if st.seq:
                st.socket.send_multipart(
                    [st.topic, wire.encode_heartbeat(st.topic, self.id, st.seq, now, st.last_ts)]
                )
                self._counts["heartbeats"] += 1

    def _send_loop(self) -> None:
        wake = self._wake
        heartbeat_s = self.settings.zmq_heartbeat_s
        while True:
            if not self._pending() and not self._flush_waiters:
                self._idle = True
                woke = True
                if not self._pending():
                    woke = wake.wait(heartbeat_s)
                    wake.clear()
                self._idle = False
                if not self._pending() and not self._flush_waiters:
                    if self._stopping:
                        return
                    if not woke:
                        self._heartbeat()
                    continue
            try:
                self._drain()
            except Exception:  # the sender must survive anything and keep the socket
                log.exception("publisher: send failed")

    # ------------------------------------------------------------------ lifecycle
    def stats(self) -> PublisherStats:
        return PublisherStats(
            **self._counts,
            messages=sum(self._by_kind.values()),
            replay_evicted=self._replay.evicted,
            queued=sum(len(st.queue) for st in list(self._topics.values())),
            messages_by_kind=dict(self._by_kind),
        )

    def replay_fill(self) -> ReplayFill:
        """How full the replay buffer is (bytes of ``zmq_replay_buffer_mb``, messages, the
        oldest held, per topic); thread-safe."""
        return self._replay.fill()

    def close(self, timeout_s: float = 10.0) -> None:
        """Send what is queued, announce the end of stream (waiting at most
        ``zmq_linger_s`` for subscribers still catching up), stop, close the sockets."""
        if self._closed:
            return
        self._closed = True
        self._stopping = True
        self._wake.set()
        self._sender.join(timeout_s)
        if not self._sender.is_alive() and any(st.seq for st in list(self._topics.values())):
            self._ending = True
            self._ctrl.send(b"end")
            self._ended.wait(self.settings.zmq_linger_s + timeout_s)
        self._ctrl.send(b"stop")
        self._server.join(timeout_s)
        self._ctrl.close(linger=0)
        if self._journal is not None:
            self._journal.close()
        for reader in self._readers.values():
            if reader is not None:
                reader.close()
        self._close_sockets()

    def _secure(self, sock: zmq.Socket[bytes]) -> None:
        """CURVE server (when ``zmq_curve``): before the bind."""
        lease = secure_server(sock, self.settings)
        if lease is not None:
            self._leases.append(lease)

    def _close_sockets(self) -> None:
        for sock in self._sockets.values():
            sock.close()
        router = getattr(self, "_router", None)
        if router is not None:
            router.close()
        for lease in self._leases:
            lease.release()

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
