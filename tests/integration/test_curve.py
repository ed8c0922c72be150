"""ZeroMQ CURVE over real sockets: an allowed subscriber gets every trade (and the replay
service answers it), one whose key is not allowed and one without CURVE get nothing,
and the publisher logs the refusal naming the public key, never a secret.

Waits poll a condition under a guard; nothing asserts on elapsed time.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zmq
from pydantic import SecretStr

from tests.integration.test_live import GUARD_S, wait_for
from tickvault.config import Settings
from tickvault.errors import ConfigError
from tickvault.live.features import FeaturePublisher, decode_feature_message
from tickvault.records.events import Gap
from tickvault.transport import security
from tickvault.transport.endpoints import Endpoints
from tickvault.transport.publisher import Publisher
from tickvault.transport.subscriber import Subscriber
from tickvault.transport.wire import Kind, Message, WireError

T0 = 1_764_000_000 * 1_000_000_000
SYMBOL = "WINZ25"


class Trades:
    """A subscriber's handler: the trade ids it was given, in order."""

    def __init__(self) -> None:
        self.ids: list[int] = []
        self.gaps: list[Gap] = []
        self.lock = threading.Lock()

    def resume_seq(self, publisher: int, topic: str) -> int | None:
        return None

    def on_message(self, msg: Message) -> None:
        if msg.kind is Kind.TRADE:
            with self.lock:
                self.ids += msg.records()["trade_id"].tolist()

    def on_gap(self, gap: Gap) -> None:
        self.gaps.append(gap)

    def on_invalid(self, frames: list[bytes], error: WireError) -> None:
        raise AssertionError(f"invalid message: {error}")

    def count(self) -> int:
        with self.lock:
            return len(self.ids)


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    return security.generate_keys(tmp_path / "keys")


def curve_settings(tmp_path: Path, keys: dict[str, Path], **extra: Any) -> Settings:
    """CURVE on with the generated pairs; no journal, so what a subscriber missed can only
    come from the replay service, over CURVE."""
    return Settings(data_dir=tmp_path / "data", journal=False, zmq_curve=True,
                    **{k: str(v) for k, v in keys.items()}, **extra)  # fmt: skip


def publish(pub: Publisher, first: int, n: int) -> None:
    for i in range(first, first + n):
        pub.publish_trade(SYMBOL, T0 + i * 1_000_000, i, 120_000.0 + i % 7, 1 + i % 3)
    pub.flush()


def test_an_allowed_subscriber_receives_every_trade_and_replay_works_under_curve(
    tmp_path: Path, keys: dict[str, Path], endpoints: Endpoints
) -> None:
    settings = curve_settings(tmp_path, keys)
    handler = Trades()
    with Publisher(settings, endpoints=endpoints) as pub:
        publish(pub, 1, 500)  # before anyone subscribed: reachable by replay only
        with Subscriber(settings, handler=handler, endpoints=[endpoints]).start():
            wait_for(lambda: handler.count() >= 500, "the trades sent before the subscription")
            publish(pub, 501, 500)
            wait_for(lambda: handler.count() >= 1000, "the live trades")
        stats = pub.stats()
    assert handler.ids == list(range(1, 1001))  # each once, in order
    assert handler.gaps == []
    assert stats.replay_requests >= 1 and stats.replayed_messages >= 1
    assert stats.journal_answers == 0  # the replay came over the ROUTER, not from disk


def test_a_subscriber_whose_key_is_not_allowed_receives_nothing_and_the_refusal_is_logged(
    tmp_path: Path, keys: dict[str, Path], endpoints: Endpoints, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="tickvault.transport.security")
    settings = curve_settings(tmp_path, keys)
    public, secret = zmq.curve_keypair()  # a pair of its own, on no allow-list
    stranger = settings.model_copy(update={
        "zmq_curve_client_public_key": public.decode(),
        "zmq_curve_client_secret_key": SecretStr(secret.decode()),
    })  # fmt: skip
    allowed, refused = Trades(), Trades()
    with Publisher(settings, endpoints=endpoints) as pub, \
            Subscriber(stranger, handler=refused, endpoints=[endpoints]).start(), \
            Subscriber(settings, handler=allowed, endpoints=[endpoints]).start():  # fmt: skip
        wait_for(lambda: "refused a ZeroMQ client" in caplog.text, "the refusal to be logged")
        publish(pub, 1, 300)
        wait_for(lambda: allowed.count() >= 300, "the allowed subscriber's trades")
        publish(pub, 301, 1)  # the last one: the stranger had every chance to see the rest
        wait_for(lambda: allowed.count() >= 301, "the last trade")
    assert refused.ids == [] and refused.gaps == []
    lines = [r.getMessage() for r in caplog.records if "refused a ZeroMQ client" in r.getMessage()]
    assert public.decode() in lines[0]  # names the public key of the refused client
    secrets = [secret.decode(), *(security.load_key("k", str(p), secret=True)
                                  for n, p in keys.items() if "secret" in n)]  # fmt: skip
    for text in (caplog.text, *lines):
        for s in secrets:
            assert (s if isinstance(s, str) else s.decode()) not in text


def test_a_plain_subscriber_gets_nothing_from_a_curve_publisher(
    tmp_path: Path, keys: dict[str, Path], endpoints: Endpoints
) -> None:
    settings = curve_settings(tmp_path, keys)
    plain = Settings(data_dir=tmp_path / "data", journal=False)
    allowed, outsider = Trades(), Trades()
    raw: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.SUB)  # no tickvault at all
    raw.setsockopt(zmq.LINGER, 0)
    raw.setsockopt(zmq.SUBSCRIBE, b"")
    raw.connect(endpoints.ticks)
    try:
        with Publisher(settings, endpoints=endpoints) as pub, \
                Subscriber(plain, handler=outsider, endpoints=[endpoints]).start(), \
                Subscriber(settings, handler=allowed, endpoints=[endpoints]).start():  # fmt: skip
            publish(pub, 1, 200)
            wait_for(lambda: allowed.count() >= 200, "the allowed subscriber's trades")
            publish(pub, 201, 1)
            wait_for(lambda: allowed.count() >= 201, "the last trade")
            assert raw.poll(0) == 0  # nothing waiting on the raw socket either
        assert outsider.ids == []
    finally:
        raw.close()


def test_feature_rows_under_curve_reach_an_allowed_subscriber_and_no_plain_one(
    tmp_path: Path, keys: dict[str, Path]
) -> None:
    settings = curve_settings(tmp_path, keys)
    endpoint = f"ipc://{tmp_path}/features.sock"
    ctx = zmq.Context.instance()
    pub = FeaturePublisher(endpoint, ctx, settings)
    secured, plain = ctx.socket(zmq.SUB), ctx.socket(zmq.SUB)
    security.secure_client(secured, settings)  # what the model worker does
    try:
        for sock in (secured, plain):
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.SUBSCRIBE, b"feature.")
            sock.connect(endpoint)
        values = {"T": np.array([T0, T0 + 1], dtype=np.int64)}
        got: list[bytes] = []

        def arrived() -> bool:
            pub.publish(SYMBOL, "schema", [("T", "int64")], values)  # PUB/SUB joins late
            if secured.poll(10):
                got.extend(secured.recv_multipart())
            return bool(got)

        wait_for(arrived, "a feature row on the CURVE subscriber")
        symbol, _header, cols = decode_feature_message(got[:3])
        assert symbol == SYMBOL and cols["T"].tolist() == values["T"].tolist()
        pub.publish(SYMBOL, "schema", [("T", "int64")], values)
        assert secured.poll(int(GUARD_S * 1000))  # the secured one gets it ...
        assert plain.poll(0) == 0  # ... and the plain one gets nothing
    finally:
        secured.close()
        plain.close()
        pub.close()


def test_a_publisher_with_bad_key_settings_is_a_config_error_and_binds_nothing(
    tmp_path: Path, keys: dict[str, Path], endpoints: Endpoints
) -> None:
    keys["zmq_curve_server_secret_key"].chmod(0o644)
    settings = curve_settings(tmp_path, keys)
    with pytest.raises(ConfigError, match=r"zmq_curve_server_secret_key.*chmod 600"):
        Publisher(settings, endpoints=endpoints)
    keys["zmq_curve_server_secret_key"].chmod(0o600)
    with Publisher(settings, endpoints=endpoints):  # the ports were left free
        pass


def test_tickvault_tail_under_curve_prints_the_trades_of_a_curve_publisher(
    tmp_path: Path, keys: dict[str, Path]
) -> None:
    import os

    from tests.integration.test_live import free_ports, port_env
    from tests.integration.test_tail import read_until, stop, tail_process

    ports = free_ports()
    settings = curve_settings(tmp_path, keys, **{f"zmq_{n}_port": p for n, p in ports.items()})
    env = {**os.environ, **port_env(ports), "TICKVAULT_DATA_DIR": str(tmp_path / "data"),
           "TICKVAULT_ZMQ_CURVE": "true",
           **{f"TICKVAULT_{k.upper()}": str(v) for k, v in keys.items()}}  # fmt: skip
    with Publisher(settings) as pub:
        proc = tail_process(env, SYMBOL)
        try:
            assert proc.stdout is not None and proc.stderr is not None
            read_until(proc.stderr, "waiting for", [])
            lines: list[str] = []
            publish(pub, 1, 3)
            read_until(proc.stdout, f"{SYMBOL}  #3", lines)  # the trade lines, over CURVE
        finally:
            assert stop(proc) == 0
    assert any(f"{SYMBOL}  #1" in line for line in lines)
