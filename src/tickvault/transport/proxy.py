"""``Proxy``: fan-out of one publisher to many subscribers on other hosts, replay included.

Subscribers on other machines connect to the proxy instead of the publisher, so the
feeder's host serves one connection per socket however many subscribers there are.

Data sockets (ticks, book, history, signals): an XSUB connected to the publisher and an
XPUB bound for the subscribers, joined by ``zmq.proxy_steerable`` (libzmq's own loop,
outside the GIL), one thread per socket. Subscriptions travel up, messages down, byte
for byte: sequence numbers, checksums, heartbeats and END are the publisher's. The
steering socket answers ``STATISTICS`` (messages and bytes each way), which ``stats()``
reads.

Replay (the publisher's ROUTER): a ROUTER bound for the subscribers and, per subscriber
heard from, a DEALER of its own connected to the publisher's replay service. Whatever a
subscriber sends (hello, replay request, END acknowledgement, goodbye) goes up on its
DEALER unchanged, and whatever comes back on that DEALER (replay answers, end-of-stream
notices) goes down to that subscriber only. So the publisher sees each subscriber as a
peer of its own: its end of stream waits for each of them, as it does for direct ones,
and a request's answer can only reach the one who asked. A subscriber that says goodbye,
whose connection is gone, or that was not heard from for ``PEER_FORGET_S`` is dropped
and its DEALER closed (after a goodbye upstream).

CURVE (``zmq_curve``): the proxy is a CURVE client of the publisher (the client key
pair; its public key must be allowed there) and a CURVE server for its subscribers (the
server key pair and ``zmq_curve_allowed_clients``), like a publisher.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import zmq

from tickvault.config import Settings
from tickvault.errors import ConfigError
from tickvault.transport import wire
from tickvault.transport.endpoints import Endpoints, inproc_address
from tickvault.transport.security import ZapLease, curve_keys, secure_client, secure_server

log = logging.getLogger(__name__)

DATA_SOCKETS = ("ticks", "book", "history", "signals")
PEER_FORGET_S = 90.0
"""A subscriber not heard from for this long is dropped (each says hello every 2 s;
the publisher itself forgets one after 60 s)."""
_SWEEP_MS = 1000


def upstream_endpoints(settings: Settings, host: str | None = None) -> Endpoints:
    """The publisher the proxy forwards: ``host``, else ``proxy_upstream_host``, else
    ``zmq_host``, at the ``zmq_*_port`` ports."""
    return Endpoints.from_settings(settings, host or settings.proxy_upstream_host)


def downstream_endpoints(
    settings: Settings, host: str | None = None, offset: int | None = None
) -> Endpoints:
    """Where the proxy binds for its subscribers: ``proxy_host`` at the publisher's
    ports plus ``proxy_port_offset``."""
    h = host or settings.proxy_host
    off = settings.proxy_port_offset if offset is None else offset
    ports = (settings.zmq_ticks_port, settings.zmq_book_port, settings.zmq_history_port,
             settings.zmq_signals_port, settings.zmq_replay_port)  # fmt: skip
    if max(ports) + off > 65535:
        raise ConfigError(
            f"proxy_port_offset={off} puts a proxy port past 65535 (zmq_*_port up to "
            f"{max(ports)}); use a smaller offset"
        )
    return Endpoints(*(f"tcp://{h}:{p + off}" for p in ports))


@dataclass(frozen=True, slots=True)
class ProxyStats:
    """What the proxy has forwarded since its start."""

    messages: dict[str, int]
    """Data socket -> messages forwarded from the publisher to the subscribers (one
    per message, whatever the number of subscribers)."""
    bytes: dict[str, int]
    subscriptions: dict[str, int]
    """Data socket -> subscription changes forwarded up to the publisher."""
    subscribers: int
    """Subscribers heard from on the replay socket within ``PEER_FORGET_S``."""
    replay_requests: int
    replay_answers: int
    replayed_messages: int
    """Messages in the replay answers relayed down."""
    end_notices: int
    dropped: int
    """Replies not delivered because their subscriber was gone."""


@dataclass(slots=True)
class _Peer:
    dealer: zmq.Socket[bytes]
    heard: float


class _DataLink:
    """One data socket's XSUB/XPUB pair and the thread running libzmq's proxy."""

    def __init__(self, ctx: zmq.Context[Any], name: str, settings: Settings,
                 up: str, down: str, leases: list[ZapLease]) -> None:  # fmt: skip
        self.name = name
        self.xsub = ctx.socket(zmq.XSUB)
        self.xpub = ctx.socket(zmq.XPUB)
        self.xsub.setsockopt(zmq.RCVHWM, settings.zmq_hwm)
        self.xsub.setsockopt(zmq.LINGER, 0)
        self.xpub.setsockopt(zmq.SNDHWM, settings.zmq_hwm)
        self.xpub.setsockopt(zmq.LINGER, 0)
        lease = secure_server(self.xpub, settings)
        if lease is not None:
            leases.append(lease)
        secure_client(self.xsub, settings)
        addr = inproc_address(f"proxy-{name}")
        self.control = ctx.socket(zmq.PAIR)
        self.control.bind(addr)
        self._steer = ctx.socket(zmq.PAIR)
        self._steer.connect(addr)
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, name=f"tickvault-proxy-{name}",
                                       daemon=True)  # fmt: skip
        self.xpub.bind(down)
        self.xsub.connect(up)

    def _run(self) -> None:
        try:
            zmq.proxy_steerable(self.xsub, self.xpub, None, self._steer)
        except zmq.ZMQError as exc:  # the context was terminated under it
            if exc.errno != zmq.ETERM:
                log.error("proxy: the %s forwarding stopped: %s", self.name, exc)

    def statistics(self) -> list[int]:
        """libzmq's eight counters: frontend (publisher side) messages in, bytes in,
        messages out, bytes out, then the same for the backend (subscriber side)."""
        if not self.thread.is_alive():
            return [0] * 8
        with self.lock:
            self.control.send(b"STATISTICS")
            if not self.control.poll(5000):
                return [0] * 8
            return [int.from_bytes(f, "little") for f in self.control.recv_multipart()]

    def close(self) -> None:
        with self.lock:
            if self.thread.is_alive():
                self.control.send(b"TERMINATE")
                self.thread.join(10)
        for sock in (self.xsub, self.xpub, self.control, self._steer):
            sock.close(linger=0)


class Proxy:
    """Forwards one publisher's sockets to many subscribers (module docstring)."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        upstream: Endpoints | None = None,
        downstream: Endpoints | None = None,
        context: zmq.Context[Any] | None = None,
    ) -> None:
        self.settings = settings if settings is not None else Settings.model_validate({})
        self.upstream = upstream or upstream_endpoints(self.settings)
        self.downstream = downstream or downstream_endpoints(self.settings)
        same = [n for n in (*DATA_SOCKETS, "replay")
                if getattr(self.upstream, n) == getattr(self.downstream, n)]  # fmt: skip
        if same:
            raise ConfigError(
                f"the proxy would bind the publisher's own endpoint for {', '.join(same)} "
                f"({getattr(self.upstream, same[0])}); on the publisher's host set "
                "proxy_port_offset (e.g. 1000) or proxy_host to another address"
            )
        curve_keys(self.settings, server=True)  # a bad key: a ConfigError before any socket
        curve_keys(self.settings, server=False)
        self._ctx = context or zmq.Context.instance()
        self._leases: list[ZapLease] = []
        self._links: list[_DataLink] = []
        self._peers: dict[bytes, _Peer] = {}
        self._by_dealer: dict[zmq.Socket[bytes], bytes] = {}
        self._counts = {"replay_requests": 0, "replay_answers": 0, "replayed_messages": 0,
                        "end_notices": 0, "dropped": 0}  # fmt: skip
        self._router: zmq.Socket[bytes] | None = None
        try:
            for name in DATA_SOCKETS:
                self._links.append(_DataLink(
                    self._ctx, name, self.settings, getattr(self.upstream, name),
                    getattr(self.downstream, name), self._leases,
                ))  # fmt: skip
            self._router = self._ctx.socket(zmq.ROUTER)
            self._router.setsockopt(zmq.LINGER, 0)
            self._router.setsockopt(zmq.ROUTER_MANDATORY, 1)
            lease = secure_server(self._router, self.settings)
            if lease is not None:
                self._leases.append(lease)
            self._router.bind(self.downstream.replay)
        except ConfigError:
            self._close_sockets()
            raise
        except zmq.ZMQError as exc:
            self._close_sockets()
            raise ConfigError(
                f"cannot bind the proxy's sockets on {self.downstream.ticks} ... "
                f"{self.downstream.replay} ({exc}); is another proxy or publisher using these "
                "ports? Change proxy_port_offset or proxy_host"
            ) from exc
        self._ctrl_addr = inproc_address("proxy-replay")
        self._ctrl = self._ctx.socket(zmq.PAIR)
        self._ctrl.bind(self._ctrl_addr)
        self._relay = threading.Thread(target=self._relay_loop, name="tickvault-proxy-replay",
                                       daemon=True)  # fmt: skip
        self._started = False
        self._closed = False

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> Proxy:
        """Start forwarding (threads of this process); ``close()`` stops."""
        if not self._started:
            self._started = True
            for link in self._links:
                link.thread.start()
            self._relay.start()
        return self

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._relay.is_alive():
            self._ctrl.send(b"stop")
            self._relay.join(10)
        self._ctrl.close(linger=0)
        self._close_sockets()

    def _close_sockets(self) -> None:
        for link in self._links:
            link.close()
        for peer in list(self._peers.values()):
            with contextlib.suppress(zmq.ZMQError):
                peer.dealer.send(wire.BYE_MAGIC, zmq.NOBLOCK)
            peer.dealer.close(linger=100)
        self._peers.clear()
        self._by_dealer.clear()
        if self._router is not None:
            self._router.close(linger=0)
        for lease in self._leases:
            lease.release()

    def __enter__(self) -> Proxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ figures
    def subscribers(self) -> int:
        """Subscribers heard from within ``PEER_FORGET_S`` (each says hello every 2 s)."""
        since = time.monotonic() - PEER_FORGET_S
        return sum(1 for p in list(self._peers.values()) if p.heard >= since)

    def stats(self) -> ProxyStats:
        """The figures so far (thread-safe)."""
        messages: dict[str, int] = {}
        nbytes: dict[str, int] = {}
        subs: dict[str, int] = {}
        for link in self._links:
            s = link.statistics()
            messages[link.name], nbytes[link.name], subs[link.name] = s[0], s[1], s[4]
        return ProxyStats(messages=messages, bytes=nbytes, subscriptions=subs,
                          subscribers=self.subscribers(), **self._counts)  # fmt: skip

    # ------------------------------------------------------------------ replay relay
    def _relay_loop(self) -> None:
        assert self._router is not None
        router = self._router
        ctrl = self._ctx.socket(zmq.PAIR)
        ctrl.connect(self._ctrl_addr)
        poller = zmq.Poller()
        poller.register(ctrl, zmq.POLLIN)
        poller.register(router, zmq.POLLIN)
        sweep_at = time.monotonic() + _SWEEP_MS / 1000
        try:
            while True:
                events = dict(poller.poll(_SWEEP_MS))
                if ctrl in events:
                    return
                for sock in events:
                    for _ in range(256):
                        try:
                            frames = sock.recv_multipart(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                        if sock is router:
                            self._from_subscriber(frames, poller)
                        else:
                            self._from_publisher(sock, frames, poller)
                now = time.monotonic()
                if now >= sweep_at:
                    sweep_at = now + _SWEEP_MS / 1000
                    for identity, peer in list(self._peers.items()):
                        if now - peer.heard > PEER_FORGET_S:
                            self._drop(identity, poller, say_bye=True)
        finally:
            ctrl.close(linger=0)

    def _from_subscriber(self, frames: list[bytes], poller: zmq.Poller) -> None:
        if len(frames) < 2:
            return
        identity, rest = frames[0], frames[1:]
        peer = self._peers.get(identity)
        if peer is None:
            if rest == [wire.BYE_MAGIC]:
                return
            dealer = self._ctx.socket(zmq.DEALER)
            dealer.setsockopt(zmq.LINGER, 0)
            secure_client(dealer, self.settings)
            dealer.connect(self.upstream.replay)
            peer = self._peers[identity] = _Peer(dealer, 0.0)
            self._by_dealer[dealer] = identity
            poller.register(dealer, zmq.POLLIN)
        peer.heard = time.monotonic()
        if rest[0] == wire.REPLAY_MAGIC:
            self._counts["replay_requests"] += 1
        with contextlib.suppress(zmq.Again):  # the publisher is not reading: it is asked again
            peer.dealer.send_multipart(rest, zmq.NOBLOCK)
        if rest == [wire.BYE_MAGIC]:
            self._drop(identity, poller, say_bye=False)

    def _from_publisher(
        self, dealer: zmq.Socket[bytes], frames: list[bytes], poller: zmq.Poller
    ) -> None:
        identity = self._by_dealer.get(dealer)
        if identity is None or self._router is None:
            return
        try:
            self._router.send_multipart([identity, *frames], zmq.NOBLOCK)
        except zmq.ZMQError as exc:
            self._counts["dropped"] += 1
            if exc.errno == zmq.EHOSTUNREACH:  # its connection is gone
                self._drop(identity, poller, say_bye=True)
            return
        if frames and frames[0] == wire.REPLAY_MAGIC:
            self._counts["replay_answers"] += 1
            self._counts["replayed_messages"] += max(0, len(frames) - 4)
        elif frames and frames[0] == wire.END_MAGIC:
            self._counts["end_notices"] += 1

    def _drop(self, identity: bytes, poller: zmq.Poller, *, say_bye: bool) -> None:
        peer = self._peers.pop(identity, None)
        if peer is None:
            return
        if say_bye:  # so an ending publisher does not wait for it
            with contextlib.suppress(zmq.ZMQError):
                peer.dealer.send(wire.BYE_MAGIC, zmq.NOBLOCK)
        poller.unregister(peer.dealer)
        self._by_dealer.pop(peer.dealer, None)
        peer.dealer.close(linger=100)


__all__ = ["DATA_SOCKETS", "Proxy", "ProxyStats", "downstream_endpoints", "upstream_endpoints"]
