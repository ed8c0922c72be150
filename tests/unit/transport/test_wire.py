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


def _body(
    records: np.ndarray, seq: int = 1, kind: Kind = Kind.TRADE, topic: bytes = b"trade.WINZ25"
) -> bytes:
    return wire.encode_body(topic, kind, 0xABCDEF, seq, 123, records.tobytes(), len(records))


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
    assert wire.HEADER_SIZE == 40 and wire.CHECKSUM_AT == 36


def test_heartbeat_and_end_carry_the_last_event_time() -> None:
    body = wire.encode_heartbeat(b"trade.WDOZ25", 7, 41, 99, 1_700_000_000_000_000_000)
    msg = wire.decode([b"trade.WDOZ25", body], max_bytes=4096)
    assert msg.kind is Kind.HEARTBEAT and msg.seq == 41 and msg.count == 0
    assert msg.last_ts == 1_700_000_000_000_000_000
    end = wire.decode(
        [b"trade.WDOZ25", wire.encode_end(b"trade.WDOZ25", 7, 42, 99, 5)], max_bytes=99
    )
    assert (end.kind, end.seq, end.last_ts) == (Kind.END, 42, 5)


def test_the_checksum_is_crc32c_over_the_topic_and_the_body_without_its_field() -> None:
    from crc32c import crc32c

    records = sim_trades(2, days=1).to_structured()
    body = _body(records)
    stored = int.from_bytes(body[wire.CHECKSUM_AT : wire.CHECKSUM_AT + 4], "little")
    assert stored == crc32c(b"trade.WINZ25" + body[: wire.CHECKSUM_AT] + body[wire.HEADER_SIZE :])
    assert wire.seal(b"trade.WINZ25", body) == body


@given(n=st.integers(1, 20), data=st.data())
def test_every_single_bit_flip_of_topic_or_body_is_rejected(n: int, data: st.DataObject) -> None:
    records = sim_trades(n, days=1).to_structured()
    topic, body = b"trade.WINZ25", _body(records, seq=77)
    frames = [bytearray(topic), bytearray(body)]
    which = data.draw(st.sampled_from([0, 1]))
    bit = data.draw(st.integers(0, len(frames[which]) * 8 - 1))
    frames[which][bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(WireError) as info:
        wire.decode([bytes(f) for f in frames], max_bytes=2**20)
    # whatever the flip hit, the message is refused (most by its checksum)
    assert info.value.reason in {"checksum", "topic", "magic", "version", "truncated"}


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
    bad_version[2] = 1  # the previous version, which had no checksum
    bad_kind = bytearray(good)
    bad_kind[3] = 77
    topic = b"trade.WINZ25"
    cases = {
        "version": bytes(bad_version),
        "kind": wire.seal(topic, bad_kind),
        "truncated": wire.seal(topic, good[:-1]),
        "checksum": good[:-1],
        "seq": _body(records, seq=0),
    }
    for reason, body in cases.items():
        with pytest.raises(WireError) as info:
            wire.decode([b"trade.WINZ25", body], max_bytes=4096)
        assert info.value.reason == reason
    with pytest.raises(WireError, match="BOOK message on topic"):
        wire.decode([b"trade.WINZ25", _body(np.zeros(1, wire.BOOK_DTYPE), kind=Kind.BOOK)],
                    max_bytes=4096)  # fmt: skip


def test_a_replay_answer_states_the_last_seq_even_when_everything_was_evicted() -> None:
    buf = ReplayBuffer(max_bytes=150)
    buf.add("trade.A", 1, b"a" * 100, first_ts_event=1)
    buf.add("trade.B", 1, b"b" * 100, first_ts_event=2)  # evicts trade.A seq 1
    answer = buf.get("trade.A", 1, 5)
    assert (answer.first_held, answer.bodies, answer.last_seq, answer.ended) == (2, [], 1, False)
    buf.end("trade.B")
    assert buf.get("trade.B", 1, 1).ended and buf.get("trade.B", 1, 1).last_seq == 1


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


def test_the_wire_format_doc_gives_the_header_and_status_layouts() -> None:
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[3] / "docs" / "wire-format.md").read_text()
    assert f"version {wire.VERSION}" in doc and f"{wire.HEADER_SIZE}-byte header" in doc
    assert f"`{wire.HEADER.format}`" in doc
    for magic in (wire.REPLAY_MAGIC, wire.END_MAGIC, wire.ACK_MAGIC, wire.HELLO_MAGIC):
        assert f'"{magic.decode()}"' in doc
