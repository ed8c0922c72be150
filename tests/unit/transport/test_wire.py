"""The wire format and the replay buffer (pure logic, no sockets)."""

from __future__ import annotations

import numpy as np
import pytest

from hypothesis import given
from hypothesis import strategies as st
from tests.conftest import sim_trades
from tickvault.records.trades import TRADE_DTYPE
from tickvault.transport import wire
from tickvault.transport.replay import ReplayBuffer
from tickvault.transport.wire import Kind, WireError


def _body(records: np.ndarray, seq: int = 1, kind: Kind = Kind.TRADE) -> bytes:
    return wire.encode_body(kind, 0xABCDEF, seq, 123, records.tobytes(), len(records))


@given(n=st.integers(1, 300), seq=st.integers(1, 2**63 - 1))
def test_trade_messages_round_trip(n: int, seq: int) -> None:
    records = sim_trades(n, days=1).to_structured()
    msg = wire.decode([b"trade.WINZ25", _body(records, seq)], max_bytes=2**24)
    assert (msg.kind, msg.symbol, msg.publisher, msg.seq, msg.count) == (
        Kind.TRADE, "WINZ25", 0xABCDEF, seq, n,
    )  # fmt: skip
    assert np.array_equal(msg.records(), records)
    assert msg.first_ts == records["ts_event"][0] and msg.last_ts == records["ts_event"][-1]


def test_the_packed_trade_record_matches_the_dtype() -> None:
    values = (1, 2, 3, 4.5, 6, 7.5, 8, 9, 2, 1)
    packed = wire.TRADE_RECORD.pack(*values)
    assert np.frombuffer(packed, TRADE_DTYPE)[0].tolist() == values
    assert wire.HEADER_SIZE == 36


def test_heartbeat_carries_the_last_event_time() -> None:
    body = wire.encode_heartbeat(7, 41, 99, 1_700_000_000_000_000_000)
    msg = wire.decode([b"trade.WDOZ25", body], max_bytes=4096)
    assert msg.kind is Kind.HEARTBEAT and msg.seq == 41 and msg.count == 0
    assert msg.last_ts == 1_700_000_000_000_000_000


@pytest.mark.parametrize(
    ("frames", "reason"),
    [
        ([b"trade.X"], "frames"),
        ([b"trade.X", b"TV"], "truncated"),
        ([b"nope.X", b"x" * 64], "topic"),
        ([b"trade.\xff", b"x" * 64], "topic"),
        ([b"trade.X", b"XX" + b"\x00" * 60], "magic"),
        ([b"trade.X", b"x" * 5000], "oversized"),
    ],
)
def test_malformed_frames_name_their_reason(frames: list[bytes], reason: str) -> None:
    with pytest.raises(WireError) as info:
        wire.decode(frames, max_bytes=4096)
    assert info.value.reason == reason


def test_header_checks() -> None:
    records = sim_trades(3, days=1).to_structured()
    good = _body(records)
    bad_version = bytearray(good)
    bad_version[2] = 2
    bad_kind = bytearray(good)
    bad_kind[3] = 77
    cases = {
        "version": bytes(bad_version),
        "kind": bytes(bad_kind),
        "truncated": good[:-1],
        "seq": _body(records, seq=0),
    }
    for reason, body in cases.items():
        with pytest.raises(WireError) as info:
            wire.decode([b"trade.WINZ25", body], max_bytes=4096)
        assert info.value.reason == reason
    with pytest.raises(WireError, match="BOOK message on topic"):
        wire.decode([b"trade.WINZ25", _body(np.zeros(1, wire.BOOK_DTYPE), kind=Kind.BOOK)],
                    max_bytes=4096)  # fmt: skip


def test_replay_buffer_answers_ranges_and_evicts_oldest_first() -> None:
    buf = ReplayBuffer(max_bytes=1000, max_answer_messages=3)
    for seq in range(1, 11):
        buf.add("trade.A", seq, bytes([seq]) * 100, first_ts_event=555)
    buf.add("trade.B", 1, b"b" * 100, first_ts_event=777)  # evicts trade.A seq 1
    answer = buf.get("trade.A", 1, 10)
    assert answer.first_held == 2 and answer.first_ts_event == 555
    assert answer.bodies == [bytes([s]) * 100 for s in (2, 3, 4)]  # capped at 3
    assert buf.get("trade.A", 9, 20).bodies == [bytes([9]) * 100, bytes([10]) * 100]
    assert buf.get("trade.B", 1, 1).bodies == [b"b" * 100]
    assert buf.get("trade.C", 1, 5).bodies == []
    assert buf.bytes <= 1000 and buf.evicted == 1
