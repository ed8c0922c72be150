"""Properties of the wire format and the bridge's checks under hostile input (issue 17
item 3): decoding anything raises nothing but ``WireError``, and a message that decodes
is either accepted by the bridge's ``check`` or rejected with a ``WireError``; never an
exception of another kind (which would end the subscriber's thread)."""

from __future__ import annotations

import random

import numpy as np

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tickvault import Vault
from tickvault.bench.fuzz import HOSTILE_KINDS, hostile_message, valid_messages
from tickvault.live.bridge import Bridge
from tickvault.records.events import GAP_DTYPE
from tickvault.transport import wire
from tickvault.transport.wire import Kind, WireError

MAX_BYTES = 1 << 20
PROPERTY = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
VALID, _ = valid_messages("TVBENCH_FUZZ", 7, 12)
TOPICS = [wire.topic_for(k, s).encode() for k in wire.TOPIC_PREFIX for s in ("WINZ25", "x")]


def _decode_or_wire_error(frames: list[bytes]) -> wire.Message | None:
    try:
        return wire.decode(frames, max_bytes=MAX_BYTES)
    except WireError:
        return None


@PROPERTY
@given(st.lists(st.binary(max_size=300), min_size=0, max_size=4))
def test_decoding_arbitrary_frames_raises_only_wire_error(frames: list[bytes]) -> None:
    _decode_or_wire_error(frames)


@PROPERTY
@given(
    st.sampled_from(TOPICS),
    st.integers(0, 255),
    st.integers(0, 255),
    st.integers(0, 2**16 - 1),
    st.integers(0, 2**16 - 1),
    st.integers(0, 2**64 - 1),
    st.integers(0, 2**32 - 1),
    st.binary(max_size=600),
)
def test_a_sealed_header_with_any_fields_decodes_or_raises_wire_error(
    topic: bytes, version: int, kind: int, header_size: int, record_size: int, seq: int,
    count: int, payload: bytes,
) -> None:  # fmt: skip
    head = wire.HEADER.pack(wire.MAGIC, version, kind, header_size, record_size, 9, seq, 0,
                            count, 0)  # fmt: skip
    msg = _decode_or_wire_error([topic, wire.seal(topic, head + payload)])
    if msg is not None:  # what decodes is self-consistent
        assert msg.seq >= 1 and msg.kind.value == kind
        if msg.kind not in (Kind.HEARTBEAT, Kind.END):
            assert len(msg.payload) == msg.count * msg.record_size
            assert len(msg.records()) == msg.count


@PROPERTY
@given(st.integers(0, 2**32 - 1), st.sampled_from(sorted(set(HOSTILE_KINDS))))
def test_every_hostile_message_is_rejected_by_decode_or_by_the_bridges_check(
    session_vault: Vault, seed: int, kind: str
) -> None:
    bridge = Bridge(session_vault, report_status=False)
    try:
        _, frames = hostile_message(random.Random(seed), VALID, kind)
        msg = _decode_or_wire_error(frames)
        if msg is not None:
            assert kind.startswith("values-"), kind  # only those are well-formed
            error = bridge.check(msg)
            assert isinstance(error, WireError), (kind, msg)
    finally:
        bridge.subscriber.close()


@PROPERTY
@given(st.binary(min_size=GAP_DTYPE.itemsize, max_size=GAP_DTYPE.itemsize * 8))
def test_the_bridge_checks_any_gap_records_without_raising(
    session_vault: Vault, raw: bytes
) -> None:
    """Regression: a feeder's GAP message was checked for its symbol only, so garbage
    records became gap markers with impossible spans."""
    n = len(raw) // GAP_DTYPE.itemsize
    topic = b"gap.WINZ25"
    body = wire.encode_body(topic, Kind.GAP, 5, 1, 0, raw[: n * GAP_DTYPE.itemsize], n)
    msg = wire.decode([topic, body], max_bytes=MAX_BYTES)
    bridge = Bridge(session_vault, report_status=False)
    try:
        error = bridge.check(msg)
    finally:
        bridge.subscriber.close()
    records = np.frombuffer(raw[: n * GAP_DTYPE.itemsize], dtype=GAP_DTYPE)
    sane = (records["start_ns"] >= 631_152_000 * 10**9) & (records["end_ns"] >= records["start_ns"])
    if not sane.all():
        assert error is not None
