"""``tickvault proxy`` (issue 18 part 5): a real publisher, the proxy as a real process,
and subscribers through it; gaps between the proxy and a subscriber are filled by the
publisher's replay service, reached through the proxy's replay endpoint. The
publishers run without a journal, so nothing can come from disk."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.integration.test_live import GUARD_S, wait_for
from tickvault import Vault
from tickvault.config import Settings
from tickvault.errors import ConfigError
from tickvault.records.events import Gap
from tickvault.records.trades import TRADE_DTYPE
from tickvault.transport import security
from tickvault.transport.endpoints import Endpoints
from tickvault.transport.proxy import Proxy, downstream_endpoints
from tickvault.transport.publisher import Publisher
from tickvault.transport.subscriber import Subscriber
from tickvault.transport.wire import Kind, Message, WireError

T0 = 1_764_000_000 * 1_000_000_000
SYMBOL = "WINZ25"
TOPIC = f"trade.{SYMBOL}"
PER_MESSAGE = 2048


class Seen:
    """A subscriber's handler: the seqs and trade ids given to it, in order. With
    ``hold`` set, the first message blocks it until ``release`` is set (a slow
    subscriber, whose socket fills up and drops at the proxy)."""

    def __init__(self, *, hold: bool = False, resume: int | None = None) -> None:
        self.seqs: list[int] = []
        self.ids: list[int] = []
        self.gaps: list[Gap] = []
        self.lock = threading.Lock()
        self.release = threading.Event()
        if not hold:
            self.release.set()
        self.resume = resume

    def resume_seq(self, publisher: int, topic: str) -> int | None:
        return self.resume

    def on_message(self, msg: Message) -> None:
        if msg.kind is not Kind.TRADE:
            return
        self.release.wait(GUARD_S)
        with self.lock:
            self.seqs.append(msg.seq)
            self.ids += msg.records()["trade_id"].tolist()

    def on_gap(self, gap: Gap) -> None:
        self.gaps.append(gap)

    def on_invalid(self, frames: list[bytes], error: WireError) -> None:
        raise AssertionError(f"invalid message: {error}")

    def count(self) -> int:
        with self.lock:
            return len(self.ids)


def trades(first: int, n: int) -> np.ndarray:
    arr = np.zeros(n, dtype=TRADE_DTYPE)
    ids = np.arange(first, first + n, dtype=np.int64)
    arr["ts_event"] = T0 + ids * 1000
    arr["ts_recv"] = T0 + ids * 1000
    arr["trade_id"] = ids
    arr["price"] = 120_000.0 + ids % 7
    arr["qty"] = 1 + ids % 3
    return arr


def publish(pub: Publisher, first: int, messages: int) -> int:
    """``messages`` messages of PER_MESSAGE trades each, ids from ``first``; the next id."""
    for m in range(messages):
        pub.publish_records(Kind.TRADE, SYMBOL, trades(first + m * PER_MESSAGE, PER_MESSAGE))
        if m % 16 == 15:
            pub.flush()  # one message per publish, not one joined burst
    pub.flush()
    return first + messages * PER_MESSAGE


def joined(eps: Endpoints) -> str:
    return ",".join((eps.ticks, eps.book, eps.history, eps.signals, eps.replay))


@pytest.fixture
def proxy_process(tmp_path: Path) -> Iterator[Any]:
    """Starts ``tickvault proxy`` between ``up`` and ``down`` with ``env``; stops it with
    SIGTERM after the test (its exit status is checked by the test that asks)."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(up: Endpoints, down: Endpoints, **env: str) -> subprocess.Popen[bytes]:
        full = {**os.environ, "TICKVAULT_DATA_DIR": str(tmp_path / "proxy-data"),
                "TICKVAULT_JOURNAL": "false", **env}  # fmt: skip
        proc = subprocess.Popen(
            [sys.executable, "-m", "tickvault.cli.main", "proxy",
             "--upstream-endpoints", joined(up), "--endpoints", joined(down)],
            env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(GUARD_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def test_two_subscribers_through_the_proxy_get_each_message_once_a_slow_ones_drops_replayed(
    tmp_path: Path, proxy_process: Any, vault: Vault
) -> None:
    up, down = Endpoints.ipc(str(tmp_path / "pub")), Endpoints.ipc(str(tmp_path / "px"))
    for d in ("pub", "px"):
        (tmp_path / d).mkdir()
    settings = Settings(data_dir=tmp_path / "data", journal=False)
    # the proxy holds at most 4 messages for a subscriber that does not read: the rest of
    # a burst is dropped there for the slow one
    proc = proxy_process(up, down, TICKVAULT_ZMQ_HWM="4", TICKVAULT_VALKEY_URL=vault.url)
    fast, slow = Seen(), Seen(hold=True)
    slow_settings = Settings(data_dir=tmp_path / "data", journal=False, zmq_hwm=1)
    with Publisher(settings, endpoints=up) as pub, \
            Subscriber(settings, handler=fast, endpoints=[down]).start() as a, \
            Subscriber(slow_settings, handler=slow, endpoints=[down]).start() as b:  # fmt: skip
        # both are heard through the proxy: each is a peer of its own upstream
        wait_for(lambda: pub.subscribers() >= 2, "both subscribers, through the proxy")
        n_messages = 300
        end = publish(pub, 0, n_messages)
        wait_for(lambda: fast.count() >= end, "every trade at the fast subscriber")
        slow.release.set()
        wait_for(lambda: slow.count() >= end, "every trade at the slow subscriber")
        pub_stats = pub.stats()
        a_stats, b_stats = a.stats, b.stats

        # the proxy reports its figures to the store
        def reported() -> bool:
            rows = vault.statuses("proxy:")
            return any(int(r.get("messages", 0)) >= n_messages
                           and int(r.get("subscribers", 0)) >= 2
                           and int(r.get("replay_requests", 0)) >= 1
                           for r in rows.values())  # fmt: skip

        try:
            wait_for(reported, "the proxy's status hash")
        except AssertionError:
            proc.send_signal(signal.SIGTERM)
            proc.wait(GUARD_S)
            assert proc.stderr is not None
            shown = f"{vault.statuses('proxy:')} {proc.stderr.read().decode()}"
            raise AssertionError(shown) from None
    for seen in (fast, slow):
        assert seen.seqs == list(range(1, n_messages + 1))  # every message once, in order
        assert seen.ids == list(range(end))
        assert seen.gaps == []
    assert b_stats.gaps_detected >= 1 and b_stats.recovered_messages >= 1
    assert b_stats.lost_messages == 0 and a_stats.lost_messages == 0
    assert pub_stats.replay_requests >= 1 and pub_stats.replayed_messages >= 1
    assert pub_stats.journal_answers == 0
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(GUARD_S) == 0
    assert proc.stderr is not None
    err = proc.stderr.read().decode()
    assert "proxy stopped" in err and "replay requests relayed" in err


def test_a_subscriber_that_reconnects_through_the_proxy_resumes_from_its_last_seq_by_replay(
    tmp_path: Path, proxy_process: Any
) -> None:
    up, down = Endpoints.ipc(str(tmp_path / "pub")), Endpoints.ipc(str(tmp_path / "px"))
    for d in ("pub", "px"):
        (tmp_path / d).mkdir()
    settings = Settings(data_dir=tmp_path / "data", journal=False)
    proxy_process(up, down)
    first, steady = Seen(), Seen()
    with Publisher(settings, endpoints=up) as pub, \
            Subscriber(settings, handler=steady, endpoints=[down]).start():  # fmt: skip
        with Subscriber(settings, handler=first, endpoints=[down]).start():
            wait_for(lambda: pub.subscribers() >= 2, "both subscribers, through the proxy")
            end = publish(pub, 0, 20)
            wait_for(lambda: first.count() >= end, "the first part")
        end = publish(pub, end, 20)  # while it is away
        # through the proxy to every subscriber it has now (the steady one), so none of
        # these can reach the returning subscriber live: they must come by replay
        wait_for(lambda: steady.count() >= end, "the part sent while it is away")
        again = Seen(resume=first.seqs[-1])
        with Subscriber(settings, handler=again, endpoints=[down]).start() as sub:
            end = publish(pub, end, 20)
            wait_for(lambda: again.count() >= end - first.count(), "the rest, by replay")
            wait_for(lambda: steady.count() >= end, "every trade at the steady subscriber")
            recovered = sub.stats.recovered_messages
        replayed = pub.stats().replayed_messages
    assert first.seqs + again.seqs == list(range(1, 61))  # each message exactly once
    assert first.ids + again.ids == list(range(end))
    assert steady.seqs == list(range(1, 61))
    # the part sent while away came by replay, through the proxy (no journal)
    assert recovered >= 1 and replayed >= 20


def test_under_curve_the_proxy_is_a_client_upstream_and_a_server_downstream(
    tmp_path: Path,
) -> None:
    keys = security.generate_keys(tmp_path / "keys")
    settings = Settings(data_dir=tmp_path / "data", journal=False, zmq_curve=True,
                        **{k: str(v) for k, v in keys.items()})  # fmt: skip
    up, down = Endpoints.ipc(str(tmp_path / "pub")), Endpoints.ipc(str(tmp_path / "px"))
    for d in ("pub", "px"):
        (tmp_path / d).mkdir()
    seen, plain = Seen(), Seen()
    plain_settings = Settings(data_dir=tmp_path / "data", journal=False)
    with Publisher(settings, endpoints=up) as pub, \
            Proxy(settings, upstream=up, downstream=down) as px:  # fmt: skip
        end = publish(pub, 0, 10)  # before anyone subscribed: reachable by replay only
        with Subscriber(settings, handler=seen, endpoints=[down]).start(), \
                Subscriber(plain_settings, handler=plain, endpoints=[down]).start():  # fmt: skip
            wait_for(lambda: seen.count() >= end, "the trades sent before the subscription")
            end = publish(pub, end, 10)
            wait_for(lambda: seen.count() >= end, "the live trades")
            stats = px.stats()
    assert seen.seqs == list(range(1, 21)) and seen.ids == list(range(end))
    assert plain.ids == []  # a client without CURVE gets nothing from the proxy
    assert stats.replay_requests >= 1 and stats.replayed_messages >= 10
    assert stats.messages["ticks"] >= 10


def test_a_proxy_on_the_publishers_own_endpoints_is_refused_and_offsets_add_to_the_ports() -> None:
    settings = Settings()
    with pytest.raises(ConfigError, match="proxy_port_offset"):
        Proxy(settings, upstream=Endpoints.from_settings(settings),
              downstream=downstream_endpoints(settings, "127.0.0.1", 0))  # fmt: skip
    down = downstream_endpoints(settings, "0.0.0.0", 1000)
    assert down.ticks == "tcp://0.0.0.0:6555" and down.replay == "tcp://0.0.0.0:6559"
    with pytest.raises(ConfigError, match="65535"):
        downstream_endpoints(settings, "0.0.0.0", 60_000)


def test_the_proxys_report_reaches_metrics_with_its_forwarded_messages_and_subscribers(
    tmp_path: Path, vault: Vault
) -> None:
    from fastapi.testclient import TestClient
    from prometheus_client.parser import text_string_to_metric_families

    from tickvault.live.proxystatus import ProxyStatus
    from tickvault.web.app import create_app

    up, down = Endpoints.ipc(str(tmp_path / "pub")), Endpoints.ipc(str(tmp_path / "px"))
    for d in ("pub", "px"):
        (tmp_path / d).mkdir()
    settings = Settings(data_dir=tmp_path / "data", journal=False)
    seen = Seen()
    with Publisher(settings, endpoints=up) as pub, \
            Proxy(settings, upstream=up, downstream=down) as px, \
            Subscriber(settings, handler=seen, endpoints=[down]).start():  # fmt: skip
        wait_for(lambda: px.subscribers() >= 1, "the subscriber, at the proxy")
        end = publish(pub, 0, 12)
        wait_for(lambda: seen.count() >= end, "the trades")
        reporter = ProxyStatus(px, settings, vault=vault)
        reporter.report()
    with TestClient(create_app(vault, data_dir=tmp_path)) as c:
        text = c.get("/metrics").text
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(text) for s in f.samples}  # fmt: skip
    me = (("proxy", reporter.name),)
    assert reporter.reports == 1
    assert samples[("tickvault_proxy_up", me)] == 1
    assert samples[("tickvault_proxy_subscribers", me)] == 1
    # 12 messages, plus the heartbeats the idle publisher sent through
    ticks = (("proxy", reporter.name), ("socket", "ticks"))
    assert samples[("tickvault_proxy_forwarded_messages_total", ticks)] >= 12
    assert (
        samples[("tickvault_proxy_forwarded_bytes_total", me)]
        >= 12 * PER_MESSAGE * TRADE_DTYPE.itemsize
    )


def test_a_publisher_that_ends_waits_for_the_end_acks_of_the_subscribers_behind_the_proxy(
    tmp_path: Path,
) -> None:
    up, down = Endpoints.ipc(str(tmp_path / "pub")), Endpoints.ipc(str(tmp_path / "px"))
    for d in ("pub", "px"):
        (tmp_path / d).mkdir()
    settings = Settings(data_dir=tmp_path / "data", journal=False)
    one, two = Seen(), Seen()
    with Proxy(settings, upstream=up, downstream=down) as px, \
            Subscriber(settings, handler=one, endpoints=[down]).start() as a, \
            Subscriber(settings, handler=two, endpoints=[down]).start() as b:  # fmt: skip
        pub = Publisher(settings, endpoints=up)
        try:
            wait_for(lambda: pub.subscribers() >= 2, "both subscribers, through the proxy")
            end = publish(pub, 0, 8)
            wait_for(lambda: one.count() >= end and two.count() >= end, "every trade")
        finally:
            pub.close()  # announces the end; waits for each subscriber's acknowledgement
        acks = pub.stats().end_acks
        wait_for(lambda: a.stats.ends >= 1 and b.stats.ends >= 1, "the END at both")
        notices = px.stats().end_notices
    assert acks == 2  # one per subscriber behind the proxy, each its own peer upstream
    assert notices >= 2
