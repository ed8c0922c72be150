"""Signals over ZeroMQ: signal.SYMBOL on the signals endpoint, in sequence, decoded."""

from __future__ import annotations

import threading
import time

import numpy as np

from tickvault import Vault
from tickvault.errors import TickvaultError
from tickvault.records.events import Gap
from tickvault.records.signals import SIGNAL_DTYPE, Mode, Side, Signal
from tickvault.transport.endpoints import Endpoints
from tickvault.transport.publisher import Publisher
from tickvault.transport.subscriber import Subscriber
from tickvault.transport.wire import Kind, Message, WireError

S = 1_000_000_000
T0 = 1_764_000_000 * S
GUARD_S = 60.0


class _Signals:
    def __init__(self) -> None:
        self.got: list[tuple[int, Signal]] = []
        self.gaps: list[Gap] = []
        self.lock = threading.Lock()

    def resume_seq(self, publisher: int, topic: str) -> int | None:
        return None

    def on_message(self, msg: Message) -> None:
        assert msg.kind is Kind.SIGNAL and msg.topic == f"signal.{msg.symbol}"
        recs = np.frombuffer(msg.payload, dtype=SIGNAL_DTYPE, count=msg.count)
        with self.lock:
            self.got += [(msg.seq, Signal.from_record(msg.symbol, r)) for r in recs]

    def on_gap(self, gap: Gap) -> None:
        self.gaps.append(gap)

    def on_invalid(self, frames: list[bytes], error: WireError) -> None:
        raise AssertionError(f"invalid message: {error}")


def test_signals_reach_a_subscriber_in_sequence_and_decode_unchanged(
    vault: Vault, endpoints: Endpoints
) -> None:
    handler = _Signals()
    sigs = [
        Signal(
            "WINZ25",
            T0 + i * S,
            T0 + i * S - 3,
            [Side.LONG, Side.FLAT, Side.SHORT][i % 3],
            0.1 * (i % 3) - 0.1,
            0.5,
            60 * S,
            "m0001",
            Mode(i % 2),
        )
        for i in range(30)
    ]
    with (
        Publisher(vault.settings, endpoints=endpoints) as pub,
        Subscriber(
            vault.settings, handler=handler, endpoints=[endpoints], kinds=(Kind.SIGNAL,)
        ).start(),  # fmt: skip
    ):
        deadline = time.monotonic() + GUARD_S
        while not handler.got and time.monotonic() < deadline:  # the subscription is up
            pub.publish_signals("WINZ25", sigs[:1])
            pub.flush()
            time.sleep(0.05)
        for i in range(1, len(sigs), 7):
            pub.publish_signals("WINZ25", sigs[i : i + 7])
            pub.flush()
        while len({s.ts_event for _, s in handler.got}) < len(sigs):
            assert time.monotonic() < deadline, "signals did not arrive"
            time.sleep(0.01)
    seqs = [seq for seq, _ in handler.got]
    assert seqs == sorted(seqs)  # in sequence, each message once
    first = {}
    for _, s in handler.got:
        first.setdefault(s.ts_event, s)
    assert [first[s.ts_event] for s in sigs] == sigs
    assert handler.gaps == []


def test_publishing_records_of_the_wrong_layout_is_a_clear_error(
    vault: Vault, endpoints: Endpoints
) -> None:
    with Publisher(vault.settings, endpoints=endpoints) as pub:
        try:
            pub.publish_records(Kind.SIGNAL, "WINZ25", np.zeros(3, dtype=np.int64))  # type: ignore[arg-type]
        except TickvaultError as exc:
            assert "SIGNAL records must have dtype" in str(exc)
        else:
            raise AssertionError("no error")
