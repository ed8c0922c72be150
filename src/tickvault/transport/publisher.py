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

Every message body is kept in a byte-bounded replay buffer; a ROUTER socket
answers ``REPLAY topic first last`` requests from subscribers that saw a gap.
When idle the sender repeats each topic's last sequence number (a heartbeat)
so that a loss at the end of a burst is noticed too.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import zmq

from tickvault.config import Settings, load_settings
from tickvault.errors import ConfigError
from tickvault.model.trades import TRADE_DTYPE, TradeBatch, TradeFlag, TradeType
from tickvault.transport import wire
from tickvault.transport.endpoints import Endpoints, endpoint_name
from tickvault.transport.replay import ReplayBuffer
from tickvault.transport.wire import Kind

log = logging.getLogger(__name__)

_pack_trade = wire.TRADE_RECORD.pack


@dataclass(slots=True)
class _TopicState:
    topic: bytes
    kind: Kind
    socket: zmq.Socket[bytes]
    seq: int = 0
    first_ts: int = 0
    last_ts: int = 0


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


class Publisher:
    """Publishes trades, history, book updates, states and signals. Thread-safe."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        endpoints: Endpoints | None = None,
        publisher_id: int | None = None,
        context: zmq.Context[Any] | None = None,
    ):
        self.settings = settings or load_settings()
        self.endpoints = endpoints or Endpoints.from_settings(self.settings)
        self.id = (
            publisher_id
            if publisher_id is not None
            else int.from_bytes(os.urandom(8), "little") or 1
        )
        self._ctx = context or zmq.Context.instance()
        self._max_batch = self.settings.zmq_max_batch
        self._sockets: dict[str, zmq.Socket[bytes]] = {}
        try:
            for name, ep in self.endpoints.data().items():
                sock = self._ctx.socket(zmq.PUB)
                sock.setsockopt(zmq.SNDHWM, self.settings.zmq_hwm)
                sock.setsockopt(zmq.LINGER, 2000)
                sock.bind(ep)
                self._sockets[name] = sock
            self._router = self._ctx.socket(zmq.ROUTER)
            self._router.setsockopt(zmq.LINGER, 0)
            self._router.bind(self.endpoints.replay)
        except zmq.ZMQError as exc:
            self._close_sockets()
            raise ConfigError(
                f"cannot bind the publisher's sockets ({exc}); is another publisher running "
                "on these ports? Change zmq_*_port or zmq_host in the config"
            ) from exc
        self._topics: dict[str, _TopicState] = {}
        self._topic_names: dict[Kind, dict[str, str]] = {k: {} for k in wire.TOPIC_PREFIX}
        self._queue: deque[Any] = deque()
        self._wake = threading.Event()
        self._idle = False
        self._stopping = False
        self._by_kind: dict[str, int] = {}
        self._replay = ReplayBuffer(int(self.settings.zmq_replay_buffer_mb * 2**20))
        self._counts = {
            "messages": 0,
            "records": 0,
            "heartbeats": 0,
            "replay_requests": 0,
            "replayed_messages": 0,
        }
        self._ctrl_addr = f"inproc://tickvault-replay-{id(self)}"
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
    def _topic(self, kind: Kind, symbol: str) -> str:
        names = self._topic_names[kind]
        topic = names.get(symbol)
        if topic is None:
            topic = names[symbol] = wire.topic_for(kind, symbol)
        return topic

    def _put(self, item: tuple[str, Kind, bytes, int]) -> None:
        self._queue.append(item)
        if self._idle:
            self._wake.set()

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
        """Publish one trade (the per-callback path). ``ts_recv`` 0 means now."""
        kind = Kind.HISTORY if history else Kind.TRADE
        if history:
            flags |= TradeFlag.HISTORY
        record = _pack_trade(
            ts_event, ts_recv or time.time_ns(), trade_id, price, qty, volume,
            buy_agent, sell_agent, trade_type, flags,
        )  # fmt: skip
        self._put((self._topic(kind, symbol), kind, record, 1))

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
            arr["flags"] |= TradeFlag.HISTORY
        self.publish_records(kind, symbol, arr)

    def publish_records(self, kind: Kind, symbol: str, records: npt.NDArray[np.void]) -> None:
        """Publish records of ``kind``'s layout (``wire.RECORD_DTYPE``), in chunks."""
        dtype = wire.RECORD_DTYPE[kind]
        if records.dtype != dtype:
            raise TypeError(f"{kind.name} records must have dtype {dtype}, got {records.dtype}")
        topic = self._topic(kind, symbol)
        step = self._max_batch
        for i in range(0, len(records), step):
            chunk = records[i : i + step]
            self._put((topic, kind, chunk.tobytes(), len(chunk)))

    def publish_state(self, conn_type: int, result: int, *, source: str = "feed") -> None:
        rec = np.array([(time.time_ns(), conn_type, result)], dtype=wire.STATE_DTYPE)
        self.publish_records(Kind.STATE, source, rec)

    def publish_progress(self, symbol: str, percent: int) -> None:
        rec = np.array([(time.time_ns(), percent)], dtype=wire.PROGRESS_DTYPE)
        self.publish_records(Kind.PROGRESS, symbol, rec)

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until everything published so far has been handed to ZeroMQ."""
        done = threading.Event()
        self._queue.append(done)
        self._wake.set()
        return done.wait(timeout_s)

    # ------------------------------------------------------------------ sender
    def _state(self, topic: str, kind: Kind) -> _TopicState:
        st = self._topics.get(topic)
        if st is None:
            sock = self._sockets[endpoint_name(kind)]
            st = self._topics[topic] = _TopicState(topic.encode("ascii"), kind, sock)
        return st

    def _emit(self, topic: str, kind: Kind, parts: list[bytes], count: int) -> None:
        st = self._state(topic, kind)
        payload = b"".join(parts)
        st.seq += 1
        body = wire.encode_body(kind, self.id, st.seq, time.time_ns(), payload, count)
        first_ts = int.from_bytes(payload[:8], "little", signed=True)
        if st.first_ts == 0:
            st.first_ts = first_ts
        size = wire.RECORD_DTYPE[kind].itemsize
        st.last_ts = int.from_bytes(
            payload[(count - 1) * size : (count - 1) * size + 8], "little", signed=True
        )
        self._replay.add(topic, st.seq, body, st.first_ts)
        st.socket.send_multipart([st.topic, body])
        self._counts["messages"] += 1
        self._counts["records"] += count
        self._by_kind[kind.name] = self._by_kind.get(kind.name, 0) + 1

    def _drain(self) -> None:
        pending: dict[str, tuple[Kind, list[bytes], list[int]]] = {}
        flushed: list[threading.Event] = []
        queue, max_batch = self._queue, self._max_batch
        for _ in range(min(len(queue), 1 << 16)):
            item = queue.popleft()
            if isinstance(item, threading.Event):
                flushed.append(item)
                continue
            topic, kind, record, n = item
            entry = pending.get(topic)
            if entry is not None and entry[2][0] + n > max_batch:
                self._emit(topic, kind, entry[1], entry[2][0])
                entry = None
            if entry is None:
                entry = pending[topic] = (kind, [], [0])
            entry[1].append(record)
            entry[2][0] += n
        for topic, (kind, parts, count) in pending.items():
            self._emit(topic, kind, parts, count[0])
        for event in flushed:
            event.set()

    def _heartbeat(self) -> None:
        now = time.time_ns()
        for st in self._topics.values():
            if st.seq:
                st.socket.send_multipart(
                    [st.topic, wire.encode_heartbeat(self.id, st.seq, now, st.last_ts)]
                )
                self._counts["heartbeats"] += 1

    def _send_loop(self) -> None:
        queue, wake = self._queue, self._wake
        heartbeat_s = self.settings.zmq_heartbeat_s
        while True:
            if not queue:
                self._idle = True
                woke = True
                if not queue:
                    woke = wake.wait(heartbeat_s)
                    wake.clear()
                self._idle = False
                if not queue:
                    if self._stopping:
                        return
                    if not woke:
                        self._heartbeat()
                    continue
            try:
                self._drain()
            except Exception:  # the sender must survive anything and keep the socket
                log.exception("publisher: send failed")

    # ------------------------------------------------------------------ replay service
    def _replay_loop(self) -> None:
        ctrl = self._ctx.socket(zmq.PAIR)
        ctrl.connect(self._ctrl_addr)
        poller = zmq.Poller()
        poller.register(self._router, zmq.POLLIN)
        poller.register(ctrl, zmq.POLLIN)
        try:
            while True:
                events = dict(poller.poll())
                if ctrl in events:
                    return
                if self._router in events:
                    self._answer(self._router.recv_multipart())
        finally:
            ctrl.close(linger=0)

    def _answer(self, frames: list[bytes]) -> None:
        self._counts["replay_requests"] += 1
        # [identity, magic, topic, publisher(8), range(16)]
        if len(frames) != 5 or frames[1] != wire.REPLAY_MAGIC or len(frames[4]) != 16:
            log.warning("publisher: malformed replay request ignored (%d frames)", len(frames))
            return
        identity, _, topic_raw, pub_raw, range_raw = frames
        first, last = wire.REPLAY_RANGE.unpack(range_raw)
        if int.from_bytes(pub_raw, "little") != self.id:
            answer_first, bodies, first_ts = 2**63, [], 0
        else:
            answer = self._replay.get(topic_raw.decode("ascii", "replace"), first, last)
            answer_first, bodies, first_ts = answer.first_held, answer.bodies, answer.first_ts_event
        status = wire.REPLAY_STATUS.pack(answer_first, len(bodies), first_ts)
        self._router.send_multipart(
            [identity, wire.REPLAY_MAGIC, topic_raw, pub_raw, status, *bodies]
        )
        self._counts["replayed_messages"] += len(bodies)

    # ------------------------------------------------------------------ lifecycle
    def stats(self) -> PublisherStats:
        return PublisherStats(
            **self._counts,
            replay_evicted=self._replay.evicted,
            queued=len(self._queue),
            messages_by_kind=dict(self._by_kind),
        )

    def close(self, timeout_s: float = 10.0) -> None:
        """Send what is queued, stop the threads, close the sockets."""
        if self._closed:
            return
        self._closed = True
        self._stopping = True
        self._wake.set()
        self._sender.join(timeout_s)
        self._ctrl.send(b"stop")
        self._server.join(timeout_s)
        self._ctrl.close(linger=0)
        self._close_sockets()

    def _close_sockets(self) -> None:
        for sock in self._sockets.values():
            sock.close()
        router = getattr(self, "_router", None)
        if router is not None:
            router.close()

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
